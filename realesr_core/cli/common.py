"""What every subcommand shares: the model argument's help, folder arguments, signals, errors in words, and the
progress bar with `say` (lines on stderr that never run into it; the library's, shared with the Ray driver)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import RealESRError
from ..models import zoo
from ..progress import ProgressBar, say  # noqa: F401 - the subcommands take both from here

# Errors that doom every later file of a run: the disk or quota is full, the output's file system went read-only.
DOOMING_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS})


def model_help(default: bool = True) -> str:
    names = ", ".join(zoo.PRETRAINED)
    described = f"model file (.safetensors/.pth/.param) or bundled name ({names})"
    return f"{described}; default {zoo.DEFAULT_MODEL}" if default else described


def add_recursion_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-recursive", dest="recursive", action="store_false",
                        help="take only the files directly inside input folders (default: sub-folders too, their tree "
                             "mirrored in the output folder)")


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
