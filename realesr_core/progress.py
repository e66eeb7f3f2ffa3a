"""The one progress line of the command line and of the Ray driver (done of total, rate and time left, on stderr),
and `say`, which puts a message on a line of its own while a bar is drawn."""

from __future__ import annotations

import sys
import time
from typing import TextIO

SHOW_AFTER_SECONDS = 1.0  # work that ends sooner shows no bar at all
BAR_WIDTH = 30

_bar_width = 0  # characters of the bar drawn on stderr's last line, without its newline (0: none is)


def say(message: str, file: TextIO | None = None) -> None:
    """`message` on a line of its own (on stderr unless told): a bar being drawn is ended first, and comes back on
    the next line with its next update."""
    end_bar_line()
    print(message, file=file or sys.stderr, flush=True)


def end_bar_line() -> None:
    """Ends the line of a bar drawn on stderr, if one is."""
    global _bar_width
    if _bar_width:
        print(file=sys.stderr, flush=True)
        _bar_width = 0


class ProgressBar:
    """A one-line counter on stderr with the rate and the time left, shown for work that takes more than a moment.

    Called with (done, total, note); a total of None means "not known yet" (a plan still being made): the line then
    shows the count and the rate without a bar or an estimate. Lines meant to appear while it shows go through
    `say`."""

    def __init__(self, label: str, unit: str = "tiles") -> None:
        self.label, self.unit = label, unit
        self.started = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int | None, note: str = "") -> None:
        global _bar_width
        elapsed = time.perf_counter() - self.started
        if elapsed < SHOW_AFTER_SECONDS and not self.shown:
            return
        self.shown = True
        rate = done / max(elapsed, 1e-9)
        if total is None:
            line = f"{self.label} {done} {self.unit}, {rate:.1f}/s {note}"
        else:
            filled = BAR_WIDTH * done // max(total, 1)
            left = (total - done) / rate if rate > 0 else 0.0
            line = (f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {self.unit}, "
                    f"{rate:.1f}/s, {format_duration(left)} left {note}")
        print(f"\r{line.ljust(_bar_width)}", end="", file=sys.stderr, flush=True)  # padded over a longer last line
        _bar_width = len(line)

    def close(self) -> None:
        end_bar_line()


def format_duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"
