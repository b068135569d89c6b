"""Options shared by several commands, as ``Annotated`` aliases (one spelling, one help text)."""

from pathlib import Path
from typing import Annotated

import typer

OutputOpt = Annotated[
    Path,
    typer.Option(
        "--output", "-o", help="Output vector file: .gpkg (default choice), .shp or .geojson."
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing output files.")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else).")
]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output.")]
QuietOpt = Annotated[
    int, typer.Option("--quiet", "-q", count=True, help="Less output (no progress bar).")
]
GsdOpt = Annotated[
    float | None,
    typer.Option(
        "--gsd",
        min=0.0,
        help="Metres per pixel of an image without georeferencing (outputs are then in "
        "pixel coordinates).",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="Road probability threshold (hysteresis high; low = 0.6 × it). Default 0.5.",
    ),
]


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Parse ``--bands 1,2,3`` into ``(1, 2, 3)``; raise ``typer.BadParameter`` otherwise."""
    if text is None:
        return None
    try:
        bands = tuple(int(b) for b in text.replace(" ", "").split(",") if b)
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated band numbers, got {text!r}") from None
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise typer.BadParameter(
            f"give 1 band (panchromatic) or 3 bands in R,G,B order, 1-based; got {text!r}"
        )
    return bands
