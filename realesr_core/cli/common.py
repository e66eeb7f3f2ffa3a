"""What every subcommand shares: the model argument's help, input folders, the progress line (the library's)."""

from __future__ import annotations

from pathlib import Path

from ..errors import RealESRError
from ..media import READABLE_SUFFIXES
from ..models import zoo
from ..progress import ProgressBar  # noqa: F401 - the subcommands' progress line, shared with the Ray driver


def model_help(default: bool = True) -> str:
    names = ", ".join(zoo.PRETRAINED)
    described = f"model file (.safetensors/.pth/.param) or bundled name ({names})"
    return f"{described}; default {zoo.DEFAULT_MODEL}" if default else described


def collect_inputs(inputs: list[str], suffixes: tuple[str, ...] = READABLE_SUFFIXES) -> list[Path]:
    """Files as given, and the files with one of `suffixes` directly inside any directory given, sorted."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
        else:
            found.append(path)
    if not found:
        raise RealESRError(f"no images found in {', '.join(inputs)}")
    return found
