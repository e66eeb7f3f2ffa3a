"""Atomic writes: the result under its name or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from realesr_core.files import Leftovers, remove_temporaries, write_atomically


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


@pytest.mark.parametrize("remove", [remove_temporaries, lambda path: Leftovers().remove(path)],
                         ids=["one output", "folder listed once"])
def test_temporaries_left_by_a_killed_writer_are_removed_and_nothing_else(tmp_path: Path, remove) -> None:
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
    remove(tmp_path / "a[1].png")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    remove(tmp_path / "missing" / "a.png")  # a folder not made yet: nothing to remove


def test_leftovers_list_each_folder_once_for_many_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(50):
        (tmp_path / f"out{index}.png").write_text("made")
    (tmp_path / ".out7.abcdefgh.png").write_text("half")
    listings = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda folder: listings.append(folder) or scandir(folder))
    leftovers = Leftovers()
    for index in range(50):
        leftovers.remove(tmp_path / f"out{index}.png")
    assert len(listings) == 1 and not (tmp_path / ".out7.abcdefgh.png").exists()
    assert len(list(tmp_path.iterdir())) == 50



def test_unwritable_folders_are_found_by_writing(tmp_path: Path) -> None:
    from realesr_core.files import unwritable_reason

    (tmp_path / "file").write_text("x")
    assert unwritable_reason(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    assert unwritable_reason(tmp_path / "file" / "sub") == f"{tmp_path / 'file'} is a file, not a folder"
    assert unwritable_reason("/sys/out") == "cannot write in /sys (Permission denied)"  # root too: sysfs refuses
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe is gone


def test_what_an_unfinished_output_left_is_cleared_but_finished_parts_kept(tmp_path: Path) -> None:
    import json

    from realesr_core.files import WorkFolder, clear_unfinished

    target = tmp_path / "clip_x4.mkv"
    work = WorkFolder(target, {"job": 1}, resume=False, suffix=".mp4")
    work.part(0).write_bytes(b"segment")
    work.finish(0, 24, 0)
    work.part(1).write_bytes(b"not noted as finished")
    (work.folder / ".part00002.abcdefgh.mp4").write_bytes(b"cut short")
    (tmp_path / ".clip_x4.abcdefgh.mkv").write_bytes(b"cut short")
    assert clear_unfinished(target, keep_parts=True) == 1
    assert sorted(p.name for p in work.folder.iterdir()) == ["manifest.json", "part00000.mp4", "part00001.mp4"]
    assert json.loads((work.folder / "manifest.json").read_text())["done"] == {"0": [24, 0]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clip_x4.mkv.parts"]
    assert clear_unfinished(target, keep_parts=False) == 0
    assert list(tmp_path.iterdir()) == []


def test_a_held_folder_notices_it_is_gone_even_when_made_again(tmp_path: Path) -> None:
    import shutil

    from realesr_core.files import HeldFolder

    held = HeldFolder(tmp_path / "out")
    try:
        assert not held.gone()
        shutil.rmtree(tmp_path / "out")
        assert held.gone()
        (tmp_path / "out").mkdir()  # a new folder of the same name (on some file systems, with the same inode number)
        assert held.gone()
    finally:
        held.close()
