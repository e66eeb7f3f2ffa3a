"""Atomic writes: the result under its name or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from realesr_core.files import write_atomically


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
