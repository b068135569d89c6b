"""``roadx vectorize``: an existing probability or mask raster → road network layers."""

from typing import Annotated

import typer

from roadx.cli.console import area_progress, err_console, print_json, setup_logging
from roadx.cli.options import (
    BridgeOpt,
    BridgeProbOpt,
    DuplicateOpt,
    GsdOpt,
    JsonOpt,
    MergeJunctionsOpt,
    MinEdgeProbOpt,
    MinSpurOpt,
    NoRepairOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    SimplifyOpt,
    SnapOpt,
    ThresholdOpt,
    VerboseOpt,
    network_params,
)


def vectorize(
    probability: Annotated[
        str,
        typer.Argument(
            help="Probability GeoTIFF (roadx uint8, float 0–1) or road mask (0/255, 0/1): a "
            "file, a GDAL /vsi…/ path or a URL GDAL reads (https://, s3://, gs://).",
            show_default=False,
        ),
    ],
    output: OutputOpt,
    threshold: ThresholdOpt = None,
    min_spur_m: MinSpurOpt = None,
    simplify_m: SimplifyOpt = None,
    min_edge_prob: MinEdgeProbOpt = None,
    bridge_m: BridgeOpt = None,
    bridge_min_prob: BridgeProbOpt = None,
    snap_m: SnapOpt = None,
    merge_junctions_m: MergeJunctionsOpt = None,
    duplicate_m: DuplicateOpt = None,
    no_repair: NoRepairOpt = False,
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
    from roadx.pipeline import vectorize_raster

    params = network_params(
        threshold=threshold, min_spur_m=min_spur_m, simplify_m=simplify_m,
        min_edge_prob=min_edge_prob, bridge_m=bridge_m, bridge_min_prob=bridge_min_prob,
        snap_m=snap_m, merge_junctions_m=merge_junctions_m, duplicate_m=duplicate_m,
        no_repair=no_repair,
    )
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
        f"{result.junctions} junctions, {result.dead_ends} dead ends, {result.bridged} gaps bridged "
        f"in {result.seconds:.1f} s → {', '.join(result.outputs)}",
        soft_wrap=True,
    )
