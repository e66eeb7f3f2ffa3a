"""Atomic writes: the result under its name or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from realesr_core.files import remove_temporaries, write_atomically


def test_the_result_gets_ordinary_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_atomically(tmp_path / "sub" / "out.txt", lambda temporary: temporary.write_text("done"))
    finally:
        os.umask(previous)
    assert path.read_text() == "done" and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "out.safetensors", fail, ".tmp")
    assert list(tmp_path.iterdir()) == []


def test_temporaries_left_by_a_killed_writer_are_removed_and_nothing_else(tmp_path: Path) -> None:
    def killed(temporary: Path) -> None:
        temporary.write_text("half")
        os.link(temporary, tmp_path / f"{temporary.name}")  # what a SIGKILL before the clean-up would leave
        raise RuntimeError("killed")

    (tmp_path / "sub").mkdir()
    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "sub" / "a[1].png", lambda temporary: killed(temporary) or None)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".a[1].")]
    assert len(left) == 1
    kept = ["a[1].png", ".a[1].png.parts", ".b.x1abcdef.png", ".a[1].x1abcdef.tif", ".a[1].x.abcdefgh.png", "sub"]
    for name in kept[:-1]:
        (tmp_path / name).write_text("keep")  # the output, its parts, other targets' temporaries
    remove_temporaries(tmp_path / "a[1].png")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)

