"""``roadx vectorize``: an existing probability or mask raster → road network layers."""

from pathlib import Path
from typing import Annotated

import typer

from roadx.cli.console import area_progress, err_console, print_json, setup_logging
from roadx.cli.options import (
    GsdOpt,
    JsonOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    ThresholdOpt,
    VerboseOpt,
)


def vectorize(
    probability: Annotated[
        Path,
        typer.Argument(
            help="Probability GeoTIFF (roadx uint8, float 0–1) or road mask (0/255, 0/1)."
        ),
    ],
    output: OutputOpt,
    threshold: ThresholdOpt = None,
    min_spur_m: Annotated[
        float | None, typer.Option(min=0.0, help="Prune dead-end branches shorter than this (m).")
    ] = None,
    simplify_m: Annotated[
        float | None, typer.Option(min=0.0, help="Douglas–Peucker tolerance (m).")
    ] = None,
    gsd: GsdOpt = None,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
) -> None:
    """Vectorize a road probability or mask raster (e.g. from another model) into lines.

    Example: roadx vectorize prob.tif -o roads.gpkg --threshold 0.4
    """
    setup_logging(verbose, quiet)
    from dataclasses import replace

    from roadx.pipeline import vectorize_raster
    from roadx.vectorize import VectorizeParams

    params = VectorizeParams()
    if threshold is not None:
        params = params.with_threshold(threshold)
    if min_spur_m is not None:
        params = replace(params, min_spur_m=min_spur_m)
    if simplify_m is not None:
        params = replace(params, simplify_m=simplify_m)
    with area_progress(
        "vectorize", unit="rows", enabled=not json_output and quiet == 0
    ) as on_progress:
        result = vectorize_raster(
            probability, output, params=params, gsd_m=gsd, overwrite=overwrite,
            on_progress=on_progress,
        )
    if json_output:
        print_json(result)
        return
    err_console.print(
        f"[bold]{result.roads}[/bold] roads, {result.total_km:.2f} km, "
        f"{result.junctions} junctions in {result.seconds:.1f} s → {', '.join(result.outputs)}"
    )
