"""Options shared by several commands, as ``Annotated`` aliases (one spelling, one help text)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from roadx.vectorize import VectorizeParams

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
VerboseOpt = Annotated[
    int,
    typer.Option("--verbose", "-v", count=True, metavar="", show_default=False,
                 help="More log output (repeat: -vv for debug)."),
]
QuietOpt = Annotated[
    int,
    typer.Option("--quiet", "-q", count=True, metavar="", show_default=False,
                 help="Less output (no progress bar)."),
]
GsdOpt = Annotated[
    float | None,
    typer.Option(
        "--gsd",
        min=0.0,
        help="Metres per pixel of an image without georeferencing. Outputs then have no CRS "
        "and lie at x = col × gsd, y = −row × gsd (metres): on the image as QGIS shows it "
        "(x = col, y = −row) when gsd is 1. With a world file (.pgw/.jgw/.tfw/.wld) but no "
        "CRS: the metres per pixel (default: its units are metres).",
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
    """Parse ``--bands 1,2,3`` into ``(1, 2, 3)`` (1, 3 or 4 band numbers; whether they suit
    the model is checked with the scene); raise ``typer.BadParameter`` otherwise."""
    if text is None:
        return None
    try:
        bands = tuple(int(b) for b in text.replace(" ", "").split(",") if b)
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated band numbers, got {text!r}") from None
    if len(bands) not in (1, 3, 4) or min(bands) < 1:
        raise typer.BadParameter(
            "give 1 band (panchromatic), 3 bands in R,G,B order, or 4 in R,G,B,NIR order "
            f"(models with a near-infrared input), 1-based; got {text!r}"
        )
    return bands


# Road-network options shared by `roadx predict` and `roadx vectorize` (metres unless named).
_NET = "Road network"
MinSpurOpt = Annotated[
    float | None,
    typer.Option("--min-spur-m", min=0.0, rich_help_panel=_NET,
                 help="Prune dead-end branches shorter than this, m (default 10)."),
]
SimplifyOpt = Annotated[
    float | None,
    typer.Option("--simplify-m", min=0.0, rich_help_panel=_NET,
                 help="Douglas–Peucker tolerance, m (default 1)."),
]
MinEdgeProbOpt = Annotated[
    float | None,
    typer.Option("--min-edge-prob", min=0.0, max=0.99, rich_help_panel=_NET,
                 help="Prune dead-end branches and isolated pieces whose mean road "
                 "probability is below this (default 0: off)."),
]
BridgeOpt = Annotated[
    float | None,
    typer.Option("--bridge-m", min=0.0, rich_help_panel=_NET,
                 help="Bridge gaps (trees, shadows) up to this long ahead of a dead end "
                 "along faint road evidence, m (default 30; 0: off; at most 200)."),
]
BridgeProbOpt = Annotated[
    float | None,
    typer.Option("--bridge-min-prob", min=0.0, max=0.99, rich_help_panel=_NET,
                 help="Lowest geometric-mean probability across a bridged gap (default 0.1)."),
]
SnapOpt = Annotated[
    float | None,
    typer.Option("--snap-m", min=0.0, rich_help_panel=_NET,
                 help="Join a dead end to a road this close ahead of it as a T-junction, m "
                 "(default 3; 0: off)."),
]
MergeJunctionsOpt = Annotated[
    float | None,
    typer.Option("--merge-junctions-m", min=0.0, rich_help_panel=_NET,
                 help="Merge junctions joined by a shorter line, e.g. a shallow crossing, m "
                 "(default 8; 0: off)."),
]
DuplicateOpt = Annotated[
    float | None,
    typer.Option("--duplicate-m", min=0.0, rich_help_panel=_NET,
                 help="Collapse two lines between the same junctions that stay this close "
                 "(both sides of a median) into one, m (default 15; 0: off)."),
]
NoRepairOpt = Annotated[
    bool,
    typer.Option("--no-repair", rich_help_panel=_NET,
                 help="Turn off gap bridging, T-junction snapping, junction merging and "
                 "duplicate collapsing (the raw skeleton network)."),
]


def network_params(
    *,
    threshold: float | None = None,
    min_spur_m: float | None = None,
    simplify_m: float | None = None,
    min_edge_prob: float | None = None,
    bridge_m: float | None = None,
    bridge_min_prob: float | None = None,
    snap_m: float | None = None,
    merge_junctions_m: float | None = None,
    duplicate_m: float | None = None,
    no_repair: bool = False,
) -> "VectorizeParams":
    """The :class:`~roadx.vectorize.VectorizeParams` of the shared road-network options.

    ``no_repair`` turns the repairs off first; an explicit repair option still applies.

    Raises:
        roadx.errors.InputError: on an invalid combination (e.g. a threshold of 0).
    """
    from dataclasses import replace

    from roadx.vectorize import VectorizeParams

    params = VectorizeParams()
    if no_repair:
        params = params.without_repair()
    if threshold is not None:
        params = params.with_threshold(threshold)
    given = {
        "min_spur_m": min_spur_m, "simplify_m": simplify_m, "min_edge_prob": min_edge_prob,
        "bridge_m": bridge_m, "bridge_min_prob": bridge_min_prob, "snap_m": snap_m,
        "merge_junctions_m": merge_junctions_m, "duplicate_m": duplicate_m,
    }
    return replace(params, **{k: v for k, v in given.items() if v is not None})
