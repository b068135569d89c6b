"""The one stderr console, logging setup and the progress bar used by every command.

Human-readable text goes to stderr; ``--json`` output alone goes to stdout.
"""

import json
import logging
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


@contextmanager
def area_progress(
    description: str, *, unit: str, enabled: bool = True
) -> Iterator[Callable[[int, int, float], None]]:
    """A progress bar fed by the pipeline's ``on_progress(done, total, km2_done)``.

    Shows ``done/total`` units, units per second and the ground area processed per hour.
    """
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
