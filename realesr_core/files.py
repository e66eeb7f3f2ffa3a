"""Writing files so that nothing half-written is ever left under their name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None], suffix: str | None = None) -> Path:
    """Runs `write` on a temporary file beside `path`, then renames it over `path`.

    The temporary file has `path`'s suffix unless another is given (writers that go by it pick the format; a folder
    other programs list may want one they ignore). The result gets the permissions a plain `open` would give it, not
    the temporary file's owner-only ones. An error or an interruption removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
