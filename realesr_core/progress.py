"""The one progress line of the command line and of the Ray driver: done of total, rate and time left, on stderr."""

from __future__ import annotations

import sys
import time

SHOW_AFTER_SECONDS = 1.0  # work that ends sooner shows no bar at all
BAR_WIDTH = 30


class ProgressBar:
    """A one-line counter on stderr with the rate and the time left, shown for work that takes more than a moment.

    Called with (done, total, note); a total of None means "not known yet" (a plan still being made): the line then
    shows the count and the rate without a bar or an estimate. Lines printed while the bar shows go through `print`,
    which clears the bar first, so that no line is glued to it."""

    def __init__(self, label: str, unit: str = "tiles") -> None:
        self.label, self.unit = label, unit
        self.started = time.perf_counter()
        self.shown = False
        self.width = 0  # characters of the line shown last, to clear it

    def __call__(self, done: int, total: int | None, note: str = "") -> None:
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
        print(f"\r{line.ljust(self.width)}", end="", file=sys.stderr, flush=True)
        self.width = len(line)

    def print(self, line: str, file=None) -> None:
        """Prints `line` (on stdout unless told) on a line of its own; the bar comes back with the next update."""
        if self.shown and self.width:
            print(f"\r{' ' * self.width}\r", end="", file=sys.stderr, flush=True)
            self.width = 0
        print(line, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        if self.width:  # the bar is on screen: end its line
            print(file=sys.stderr)
            self.width = 0


def format_duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"
