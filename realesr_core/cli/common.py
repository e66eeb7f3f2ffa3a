"""What every subcommand shares: the model argument's help, folder arguments, lines on stderr that never run into a
progress bar, and the progress bar."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import RealESRError
from ..models import zoo

# Errors that doom every later file of a run: the disk or quota is full, the output's file system went read-only.
DOOMING_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS})
_bar_line_open = False  # a progress bar is drawn on the last line of stderr, without its newline


def model_help(default: bool = True) -> str:
    names = ", ".join(zoo.PRETRAINED)
    described = f"model file (.safetensors/.pth/.param) or bundled name ({names})"
    return f"{described}; default {zoo.DEFAULT_MODEL}" if default else described


def add_recursion_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-recursive", dest="recursive", action="store_false",
                        help="take only the files directly inside input folders (default: sub-folders too, their tree "
                             "mirrored in the output folder)")


def say(message: str) -> None:
    """`message` on a line of its own on stderr: a progress bar being drawn is ended first."""
    global _bar_line_open
    if _bar_line_open:
        print(file=sys.stderr)
        _bar_line_open = False
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def warnings_on_their_own_lines() -> Iterator[None]:
    """Python warnings (an animated GIF's first frame, a stream a container cannot hold) shown as `say` lines."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_args, **_kwargs: say(f"realesr: warning: {message}")
        yield


class Interrupted(KeyboardInterrupt):
    """Ctrl+C, or a signal that asks the process to end (SIGTERM, SIGHUP), raised where the program is so that every
    clean-up on the way out runs. `left` says what the interrupted command left behind, in words."""

    def __init__(self, signal_number: int | None = None, left: str = "") -> None:
        super().__init__(left)
        self.signal_number = signal_number or signal.SIGINT
        self.left = left


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (`kill`, a closed terminal) raise Interrupted as Ctrl+C does, instead of ending the
    process on the spot with its temporary files left behind. Only the main thread takes signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number: int, _frame: Any) -> None:
        raise Interrupted(number)

    numbers = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def describe_error(exc: BaseException) -> str:
    """An exception as one line for the user: our own errors say everything already; others get their type."""
    if isinstance(exc, RealESRError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def dooming_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (itself, or what it was raised from) when it dooms every later file."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DOOMING_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ProgressBar:
    """A one-line counter on stderr with the rate and the time left, shown for work that takes more than a moment."""

    def __init__(self, label: str, unit: str = "tiles") -> None:
        self.label, self.unit = label, unit
        self.started = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int, note: str = "") -> None:
        global _bar_line_open
        elapsed = time.perf_counter() - self.started
        if elapsed < 1.0 and not self.shown:
            return
        self.shown = _bar_line_open = True
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(elapsed, 1e-9)
        left = (total - done) / rate if rate > 0 else 0.0
        print(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit}, "
              f"{rate:.1f}/s, {_duration(left)} left {note}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        global _bar_line_open
        if _bar_line_open:
            print(file=sys.stderr)
            _bar_line_open = False


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"
