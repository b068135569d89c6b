"""``roadx predict``: the main job, GeoTIFF scene → road network layers."""

from pathlib import Path
from typing import Annotated, Literal

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
    parse_bands,
)
from roadx.runtime import DeviceName, PrecisionName


def predict(
    scene: Annotated[
        str,
        typer.Argument(
            help="Input GeoTIFF scene (any CRS, 1–N bands): a file, a GDAL /vsi…/ path or a "
            "URL GDAL reads (https://, s3://, gs://).",
            show_default=False,
        ),
    ],
    output: OutputOpt,
    weights: Annotated[
        Path | None,
        typer.Option(help="Model weights (.safetensors); default: the shipped weights."),
    ] = None,
    model: Annotated[str, typer.Option(help="Architecture whose default weights to use.")] = (
        "d3fnet34"
    ),
    device: Annotated[DeviceName, typer.Option(help="Compute device.")] = "auto",
    precision: Annotated[
        PrecisionName,
        typer.Option(
            help="auto: bf16 only on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; "
            "bf16 (or fp16) on CUDA. Or force fp32, bf16 or fp16."
        ),
    ] = "auto",
    tta: Annotated[
        Literal["none", "flip", "d4"],
        typer.Option(help="Test-time augmentation: none, flip (4 views) or d4 (8 views)."),
    ] = "d4",
    tile: Annotated[
        int | None, typer.Option(min=64, help="Window size in pixels (default: the model's).")
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(min=0, help="Overlap between windows in pixels (default: tile / 4)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 4,
    blend: Annotated[
        Literal["cosine", "crop"], typer.Option(help="Seam-free stitching mode.")
    ] = "cosine",
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
    bands: Annotated[
        str | None,
        typer.Option(help="Source bands in R,G,B order, 1-based (e.g. 1,2,3), or one band."),
    ] = None,
    gsd: GsdOpt = None,
    prob: Annotated[
        Path | None,
        typer.Option(help="Also write the stitched probability as a Cloud-Optimized GeoTIFF "
                     "(uint8, p = value / 254)."),
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option(help="Also write a quick-look PNG of the roads over the scene "
                     "(at most 2048 px on its longer side)."),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the model (pays on CUDA for large scenes)."
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Torch CPU threads (default: one per core)."),
    ] = None,
    no_resample: Annotated[
        bool,
        typer.Option(
            "--no-resample", help="Do not resample the scene to the model's GSD (not advised)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Run even when the up-front estimate finds an unusually large run "
            "(over 20,000 windows, more memory than available, too little disk space)."
        ),
    ] = False,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
) -> None:
    """Extract a road network from a GeoTIFF scene and write it as vector layers.

    Example: roadx predict scene.tif -o roads.gpkg --prob prob.tif
    """
    setup_logging(verbose, quiet)

    from roadx.pipeline import ExtractOptions, extract
    from roadx.predict import PredictOptions

    params = network_params(
        threshold=threshold, min_spur_m=min_spur_m, simplify_m=simplify_m,
        min_edge_prob=min_edge_prob, bridge_m=bridge_m, bridge_min_prob=bridge_min_prob,
        snap_m=snap_m, merge_junctions_m=merge_junctions_m, duplicate_m=duplicate_m,
        no_repair=no_repair,
    )
    options = ExtractOptions(
        model=model,
        weights=weights,
        tile_px=tile,
        overlap_px=overlap,
        bands=parse_bands(bands),
        gsd_m=gsd,
        resample=not no_resample,
        probability_path=prob,
        preview_path=preview,
        overwrite=overwrite,
        predict=PredictOptions(
            tta=tta, blend=blend, batch_size=batch_size, device=device, precision=precision,
            compile=compile_model,
        ),
        vectorize=params,
        threads=threads,
        force=force,
    )
    with area_progress(
        "predict", unit="windows", enabled=not json_output and quiet == 0
    ) as on_progress:
        result = extract(scene, output, options=options, on_progress=on_progress)
    if json_output:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title="roadx predict", show_header=False, title_justify="left")
    table.add_row("scene", f"{result.scene} ({result.width_px}×{result.height_px} px, "
                  f"{result.gsd_m} m/px{', resampled' if result.resampled else ''})")
    table.add_row("CRS", result.crs or _no_crs(result.georeferenced))
    table.add_row("model", f"{result.model} ({result.weights}), TTA {result.tta}")
    table.add_row("device", f"{result.device}, {result.precision} ({result.precision_reason})")
    table.add_row("windows", f"{result.windows} of {result.tile_px} px in {result.seconds:.1f} s "
                  f"({result.windows_per_s:.2f} windows/s, {result.km2_per_h:.1f} km²/h)")
    table.add_row("roads", f"{result.roads} lines, {result.total_km:.2f} km, "
                  f"{result.junctions} junctions, {result.dead_ends} dead ends, "
                  f"{result.bridged} gaps bridged")
    table.add_row("outputs", "\n".join(result.outputs + ([result.probability] if result.probability else [])))
    err_console.print(table)


def _no_crs(georeferenced: bool) -> str:
    """The CRS row of an output without CRS: pixel space (--gsd) or a world file's frame."""
    if georeferenced:
        return "none (coordinates of the world file / geotransform)"
    return "none (pixel space in metres: x = col × gsd, y = −row × gsd of the image)"
