"""What every subcommand shares: the model argument's help, input folders, the progress line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import RealESRError
from ..media import READABLE_SUFFIXES
from ..models import zoo


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


class ProgressBar:
    """A one-line counter on stderr with the rate and the time left, shown for work that takes more than a moment."""

    def __init__(self, label: str, unit: str = "tiles") -> None:
        self.label, self.unit = label, unit
        self.started = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int, note: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed < 1.0 and not self.shown:
            return
        self.shown = True
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(elapsed, 1e-9)
        left = (total - done) / rate if rate > 0 else 0.0
        print(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit}, "
              f"{rate:.1f}/s, {_duration(left)} left {note}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"
