"""Writing files so that nothing half-written is ever left under their name, and work folders of resumable parts."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"  # in a work folder: which parts are finished, and the job they belong to


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None], suffix: str | None = None) -> Path:
    """Runs `write` on a temporary file beside `path`, then renames it over `path`.

    The temporary file has `path`'s suffix unless another is given (writers that go by it pick the format; a folder
    other programs list may want one they ignore). The result gets the permissions a plain `open` would give it, not
    the temporary file's owner-only ones. An error or an interruption removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix or path.suffix)
        os.close(fd)
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    return path


def remove_temporaries(path: str | os.PathLike) -> None:
    """Removes the temporary files `write_atomically` left beside `path` when its process was killed before it could
    clean up (a lost node). Only once nothing may still be writing `path`. Lists `path`'s folder: for many outputs
    in one folder, `Leftovers` lists it once."""
    path = Path(path)
    _remove_matching(path, (entry.name for entry in os.scandir(path.parent)) if path.parent.is_dir() else ())


def _remove_matching(path: Path, names: Iterable[str]) -> None:
    # mkstemp's names: the prefix, 8 random characters, the suffix (another target's have more in between)
    temporary = re.compile(rf"\.{re.escape(path.stem)}\..{{8}}{re.escape(path.suffix)}", re.DOTALL)
    for name in names:
        if temporary.fullmatch(name):
            (path.parent / name).unlink(missing_ok=True)


class Leftovers:
    """What killed runs (kill -9, a lost node) left beside outputs, removed output by output as a run makes them,
    each folder's hidden names listed once: a listing per output made a run over one folder of n files cost n² (2,000
    outputs in one folder: 1.7 s of the run). Only temporaries that were there when the folder was first listed are
    seen: one that a worker of this run leaves later is removed with `remove_temporaries`."""

    FOLDERS = 256  # folders whose hidden names are kept (runs go folder by folder; one listed again costs a listing)

    def __init__(self) -> None:
        self._hidden: OrderedDict[Path, list[str]] = OrderedDict()

    def remove(self, path: str | os.PathLike) -> None:
        """Removes the leftovers of `path`'s earlier writes. Only once nothing may still be writing `path`."""
        path = Path(path)
        names = self._hidden.get(path.parent)
        if names is None:
            try:
                names = [entry.name for entry in os.scandir(path.parent) if entry.name.startswith(".")]
            except OSError:  # not made yet, or unreadable: nothing of ours is in it
                names = []
            self._hidden[path.parent] = names
            if len(self._hidden) > self.FOLDERS:
                self._hidden.popitem(last=False)
        else:
            self._hidden.move_to_end(path.parent)
        if names:
            _remove_matching(path, names)


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written in `folder` (made where missing), or None when they can: found by writing a
    probe file into the nearest folder that exists, since permission bits alone do not tell (read-only mounts,
    /sys, network shares, root's rights)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a broken link"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".realesr-probe.")
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def work_folder(target: str | os.PathLike) -> Path:
    """The hidden folder beside `target` that holds its finished parts (`.NAME.parts`)."""
    target = Path(target)
    return target.parent / f".{target.name}.parts"


def clear_unfinished(target: str | os.PathLike, keep_parts: bool) -> int:
    """Removes what an unfinished run left of `target`: the temporaries of its writes (beside it, and in its work
    folder), and the work folder itself unless `keep_parts` and it holds finished parts. Returns how many finished
    parts were kept. Only once nothing writes `target` any more."""
    remove_temporaries(target)
    folder = work_folder(target)
    for temporary in folder.glob(".*"):  # a part's or the manifest's write that was cut short
        temporary.unlink(missing_ok=True)
    finished = 0
    if keep_parts:
        try:
            done = json.loads((folder / MANIFEST).read_text())["done"]
            finished = sum(1 for index in done if next(folder.glob(f"part{int(index):05d}.*"), None) is not None)
        except (OSError, ValueError, KeyError, TypeError):
            finished = 0
    if not finished:
        shutil.rmtree(folder, ignore_errors=True)
    return finished


class HeldFolder:
    """A folder (made if missing) held open for a run, so that its removal, moving or unmounting is noticed: a folder
    made later under its name is another one, even where the file system hands out the same inode number again (it
    cannot while this one is held)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:  # systems that cannot open folders (Windows): the folder's identity alone
            self._fd = None
        made = os.fstat(self._fd) if self._fd is not None else self.path.stat()
        self._identity = (made.st_dev, made.st_ino)

    def gone(self) -> bool:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            return True  # deleted
        try:
            now = self.path.stat()
        except OSError:
            return True
        return (now.st_dev, now.st_ino) != self._identity

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class WorkFolder:
    """Finished parts of one output (a video's segments, a huge image's tile rows) and the manifest that says which
    they are, beside the target (`.NAME.parts`). Each part is noted with counts, the first its size (a part that holds
    nothing is left out of `parts()`). Only one process writes the manifest."""

    def __init__(self, target: Path, key: dict[str, Any], resume: bool, suffix: str) -> None:
        self.suffix = suffix
        self.folder = work_folder(target)
        self.manifest = self.folder / MANIFEST
        state = self._read() if resume else None
        if state is None or state.get("job") != key:
            if resume and state is not None:
                warnings.warn(f"{target.name}: the unfinished run was another job (source, model or settings "
                              f"changed); starting again", stacklevel=3)
            shutil.rmtree(self.folder, ignore_errors=True)
            state = {"job": key, "done": {}}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = state
        self._write()

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None

    def _write(self) -> None:
        write_atomically(self.manifest, lambda temporary: temporary.write_text(json.dumps(self.state, indent=1)))

    def part(self, index: int) -> Path:
        return self.folder / f"part{index:05d}{self.suffix}"

    def finished(self, index: int) -> tuple[int, ...] | None:
        done = self.state["done"].get(str(index))
        return tuple(done) if done and self.part(index).exists() else None

    def finish(self, index: int, *counts: int) -> None:
        self.state["done"][str(index)] = list(counts)
        self._write()

    def totals(self, counts: int) -> tuple[int, ...]:
        """The first `counts` counts, each summed over the finished parts."""
        return tuple(sum(done[i] for done in self.state["done"].values()) for i in range(counts))

    def parts(self) -> list[Path]:
        return [self.part(int(index)) for index in sorted(self.state["done"], key=int)
                if self.state["done"][index][0]]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
