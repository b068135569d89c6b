"""Progress output: a bar on a terminal, plain timed lines in logs (stderr not a terminal)."""

import io

from rich.console import Console

from roadx.cli import console


def test_progress_line_gives_share_rate_area_and_time_left() -> None:
    line = console.progress_line("predict", "windows", 3, 12, 1.5, seconds=30.0)
    assert line == ("predict: 3/12 windows (25 %), 0.10 windows/s, 180.0 km²/h, "
                    "0:01:30 left")
    assert "left" not in console.progress_line("predict", "windows", 12, 12, 6.0, 60.0)


def test_progress_in_a_log_is_one_line_per_interval_and_a_final_one(monkeypatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=buffer, force_terminal=False))
    with console.area_progress("predict", unit="windows", log_every_s=3600) as on_progress:
        on_progress(0, 12, 0.0)  # the total is known up front
        for done in range(1, 13):
            on_progress(done, 12, done * 0.5)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("predict: 0/12 windows (0 %)")
    assert lines[1].startswith("predict: 12/12 windows (100 %)")
    assert "━" not in buffer.getvalue()  # no bar characters in a log
