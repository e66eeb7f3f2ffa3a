"""The one progress line (command line and Ray driver): a bar with the time left, a count while the total is not
known yet, and lines printed while it shows kept off it."""

from __future__ import annotations

import sys

from realesr_core import progress
from realesr_core.progress import ProgressBar, format_duration, say


def test_the_bar_shows_only_after_a_moment_then_counts_and_estimates(capsys, monkeypatch) -> None:
    clock = iter([0.0, 0.5, 2.0, 4.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = ProgressBar("photo.png")
    bar(1, 4)  # half a second in: nothing yet
    assert capsys.readouterr().err == ""
    bar(2, 4)
    err = capsys.readouterr().err
    assert err.startswith("\rphoto.png [###############...............] 2/4 tiles, 1.0/s, 2 s left")
    bar(3, None, "(1 failed)")  # a total not known yet: no bar, no estimate
    assert capsys.readouterr().err.startswith("\rphoto.png 3 tiles, 0.8/s (1 failed)")
    bar.close()


def test_a_line_said_while_the_bar_shows_is_not_glued_to_it(capsys, monkeypatch) -> None:
    clock = iter([0.0, 5.0, 6.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = ProgressBar("ray", "units")
    bar(1, 2)
    shown = capsys.readouterr().err
    say("a.png -> a_x4.png", file=sys.stdout)
    captured = capsys.readouterr()
    assert captured.out == "a.png -> a_x4.png\n"
    assert captured.err == "\n"  # the bar's line ended, the line below it
    bar(2, 2, "")  # drawn again on a line of its own
    assert capsys.readouterr().err.startswith("\rray [" + "#" * 30)
    bar.close()
    assert capsys.readouterr().err == "\n"
    bar.close()  # nothing on screen any more: no empty line
    assert capsys.readouterr().err == ""
    assert shown.startswith("\rray [")


def test_durations_read_as_people_say_them() -> None:
    assert [format_duration(s) for s in (42, 600, 9000)] == ["42 s", "10 min", "2.5 h"]
