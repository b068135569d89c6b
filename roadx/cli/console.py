"""The one stderr console, logging setup and the progress bar used by every command.

Human-readable text goes to stderr; ``--json`` output alone goes to stdout.
"""

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True)


def setup_logging(verbose: int = 0, quiet: int = 0) -> None:
    """Route the ``roadx`` logger to stderr through rich; ``-v``/``-q`` move the level by 10."""
    level = max(logging.DEBUG, min(logging.CRITICAL, logging.WARNING - 10 * (verbose - quiet)))
    logger = logging.getLogger("roadx")
    logger.handlers[:] = [RichHandler(console=err_console, show_path=False, show_time=False)]
    logger.setLevel(level)
    logging.captureWarnings(True)


def print_json(obj: Any) -> None:
    """Write ``obj`` (a dataclass or JSON-able value) as JSON to stdout, and nothing else."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool = True, unit: str = "windows"
) -> Iterator[Callable[..., None]]:
    """Show a rich progress bar on stderr; yield ``advance(n=1, total=None, **fields)``.

    ``total`` (when given) sets the bar's total; extra keyword fields (e.g.
    ``rate="3.1 windows/s"``) are shown after the bar.
    """
    if not enabled:
        yield lambda n=1, total=None, **fields: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, total: int | None = None, **fields: Any) -> None:
            info = "  ".join(str(v) for v in fields.values())
            progress.update(task, advance=n, total=total, info=info)

        yield advance


LOG_EVERY_S = 30.0
"""Seconds between progress lines when stderr is not a terminal (logs, schedulers).

The environment variable ``ROADX_PROGRESS_EVERY_S`` overrides it (the QGIS plugin sets it
low to drive its progress bar)."""


def _log_every_s() -> float:
    """``ROADX_PROGRESS_EVERY_S`` when it holds a number >= 0, else :data:`LOG_EVERY_S`."""
    try:
        value = float(os.environ.get("ROADX_PROGRESS_EVERY_S", ""))
    except ValueError:
        return LOG_EVERY_S
    return value if math.isfinite(value) and value >= 0 else LOG_EVERY_S


@contextmanager
def area_progress(
    description: str, *, unit: str, enabled: bool = True, log_every_s: float | None = None
) -> Iterator[Callable[[int, int, float], None]]:
    """Progress fed by the pipeline's ``on_progress(done, total, km2_done)``.

    On a terminal: a bar with ``done/total`` units, units per second, the ground area
    processed per hour and the time left. When stderr is a file or pipe (a log, a batch
    scheduler): one plain line every ``log_every_s`` seconds (default: ``LOG_EVERY_S``, or
    ``ROADX_PROGRESS_EVERY_S``) and a last one at the end.
    """
    if enabled and not err_console.is_terminal:
        every_s = _log_every_s() if log_every_s is None else log_every_s
        with _line_progress(description, unit=unit, every_s=every_s) as on_progress:
            yield on_progress
        return
    start = time.perf_counter()
    last = 0
    with progress_bar(description, None, enabled=enabled, unit=unit) as advance:

        def on_progress(done: int, total: int, km2_done: float) -> None:
            nonlocal last
            seconds = max(time.perf_counter() - start, 1e-9)
            advance(
                done - last,
                total=total,
                rate=f"{done / seconds:.2f} {unit}/s",
                area=f"{km2_done / seconds * 3600:.1f} km²/h",
            )
            last = done

        yield on_progress


def progress_line(description: str, unit: str, done: int, total: int, km2_done: float,
                  seconds: float) -> str:
    """``predict: 5/12 windows (42 %), 0.12 windows/s, 30.1 km²/h, 1:02 left``."""
    seconds = max(seconds, 1e-9)
    rate = done / seconds
    share = f" ({100 * done / total:.0f} %)" if total else ""
    left = ""
    if total and 0 < done < total:
        remaining = int((total - done) / rate)
        left = f", {remaining // 3600}:{remaining // 60 % 60:02d}:{remaining % 60:02d} left"
    return (f"{description}: {done}/{total} {unit}{share}, {rate:.2f} {unit}/s, "
            f"{km2_done / seconds * 3600:.1f} km²/h{left}")


@contextmanager
def _line_progress(
    description: str, *, unit: str, every_s: float
) -> Iterator[Callable[[int, int, float], None]]:
    start = time.perf_counter()
    last_print = -math.inf
    state, printed = (0, 0, 0.0), None

    def emit() -> None:
        nonlocal printed
        printed = state
        err_console.print(progress_line(description, unit, *state, time.perf_counter() - start),
                          soft_wrap=True, markup=False, highlight=False)

    def on_progress(done: int, total: int, km2_done: float) -> None:
        nonlocal last_print, state
        state = (done, total, km2_done)
        now = time.perf_counter()
        if now - last_print >= every_s:
            last_print = now
            emit()

    yield on_progress
    if state[0] and state != printed:  # the final count
        emit()
