"""The ``roadx`` command line: wiring only.

Each command lives in its own module and calls one library function. This module registers
them and converts :class:`roadx.errors.RoadxError` into ``error: ...`` on stderr with exit
code 1 (no traceback unless ``ROADX_DEBUG=1``). Exit codes: 0 success, 1 error, 2 usage
error, 130 interrupted.
"""

import os

import typer

from roadx import __version__
from roadx.cli import convert_weights, evaluate, models, predict, train, vectorize
from roadx.cli.console import err_console
from roadx.errors import RoadxError

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


def main() -> None:
    """Run the CLI; the single place where library errors become exit codes."""
    try:
        app(standalone_mode=True)
    except RoadxError as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False)
        if os.environ.get("ROADX_DEBUG") == "1":
            err_console.print_exception(show_locals=False)
        raise SystemExit(1) from None
