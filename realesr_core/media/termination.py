"""A stop request (SIGTERM: `kill`, a job scheduler, `timeout`, a container shutdown) during a long write ends the
process through Python's own unwinding, so the temporary files the writers remove in `finally` blocks are removed;
FFmpeg's and tifffile's writers hold a file open for the whole of a video or a huge image."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def terminating_cleanly() -> Iterator[None]:
    """While the block runs, SIGTERM raises SystemExit(143) in the main thread instead of ending the process on the
    spot. Only where nobody else handles SIGTERM (a host's own handler stays) and only in the main thread, where
    Python delivers signals; the previous handler is back afterwards."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
