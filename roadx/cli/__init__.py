"""The ``roadx`` command line: wiring only.

Each command lives in its own module and calls one library function. This module registers
them and converts :class:`roadx.errors.RoadxError` into ``error: ...`` on stderr with exit
code 1 (no traceback unless ``ROADX_DEBUG=1``). Exit codes: 0 success, 1 error, 2 usage
error, 130 interrupted.
"""

import os
import signal

import typer

from roadx import __version__
from roadx.cli import convert_weights, evaluate, models, predict, qgis_plugin, train, vectorize
from rich.markup import escape as markup_escape

from roadx.cli.console import err_console
from roadx.errors import RoadxError, describe_os_error

__all__ = ["app", "describe_os_error", "main"]

app = typer.Typer(
    name="roadx",
    help=(
        "Turn satellite/aerial GeoTIFF scenes into georeferenced road networks.\n\n"
        "Exit codes: 0 success, 1 error (message on stderr), 2 usage error, 130 interrupted. "
        "Set ROADX_DEBUG=1 for tracebacks."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"roadx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Turn satellite/aerial GeoTIFF scenes into georeferenced road networks."""


app.command("predict")(predict.predict)
app.command("vectorize")(vectorize.vectorize)
app.command("models")(models.models)
app.command("convert-weights")(convert_weights.convert_weights)
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.add_typer(qgis_plugin.app, name="qgis-plugin")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fail(message: str) -> None:
    # soft_wrap: one unwrapped line, also when stderr is a file or pipe (paths stay whole)
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    if os.environ.get("ROADX_DEBUG") == "1":
        err_console.print_exception(show_locals=False)
    raise SystemExit(1) from None


def main() -> None:
    """Run the CLI; the single place where errors become exit codes.

    roadx's own errors and operating-system errors (permissions, read-only or full disks, too
    long names) print one ``error:`` line and exit 1; ``ROADX_DEBUG=1`` adds the traceback.
    SIGTERM (``kill``, ``timeout``, schedulers) is handled like Ctrl-C: partial outputs are
    removed and the exit code is 130.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(standalone_mode=True)
    except RoadxError as err:
        _fail(markup_escape(str(err)))
    except OSError as err:
        _fail(markup_escape(describe_os_error(err)))
    except MemoryError:
        _fail("out of memory; use a smaller --tile or --batch-size, or --tta none")
