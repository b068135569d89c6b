"""``roadx predict``: the main job, GeoTIFF scene(s) → road network layers.

One scene with ``-o FILE`` runs :func:`roadx.pipeline.extract`; several scenes (or a folder,
a glob pattern, a list file, or ``-o`` naming a folder) run :func:`roadx.batch.predict_many`
into a folder, with exit code :data:`EXIT_SOME_FAILED` when some scenes failed.
"""

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

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

if TYPE_CHECKING:
    from roadx.batch import BatchResult, SceneRecord
    from roadx.pipeline import ExtractOptions
    from roadx.ray_backend import RayOptions

EXIT_SOME_FAILED = 3
"""Exit code of a batch in which some scenes failed and others succeeded."""


def predict(
    scenes: Annotated[
        list[str],
        typer.Argument(
            help="Input GeoTIFF scene(s) (any CRS, 1–N bands): files (a GDAL VRT mosaic is "
            "one scene), GDAL /vsi…/ paths or URLs GDAL reads (https://, s3://, gs://); for "
            "many scenes also folders (their .tif/.tiff/.vrt/.jp2/.img files), quoted glob "
            "patterns ('tiles/*.tif') and lists (@list.txt or a .txt file: one path a line, "
            "# comments).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o",
            help="Output vector file: .gpkg (default choice), .shp or .geojson. With many "
            "scenes (or a folder / a name ending in '/'): the output folder, one "
            "<stem>.<format> per scene plus index.json.",
        ),
    ],
    fmt: Annotated[
        Literal["gpkg", "shp", "geojson"] | None,
        typer.Option("--format", help="Vector format of the files of a batch (default gpkg)."),
    ] = None,
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
        typer.Option(help="Source bands in R,G,B order, 1-based (e.g. 1,2,3), or one band; "
                     "R,G,B,NIR (e.g. 1,2,3,4) for a model with a near-infrared input."),
    ] = None,
    aux: Annotated[
        str | None,
        typer.Option(
            "--aux", metavar="PATH",
            help="Separate, co-registered raster (any CRS and GSD; band 1; uint8, uint16 or "
            "float) supplying the near-infrared/auxiliary input of a multimodal model (e.g. "
            "--model d3fnet34-mm); warped onto the scene's grid, the scene gives R,G,B. Where "
            "it has no data (nodata, outside its extent) the model uses RGB alone. One scene "
            "only.",
        ),
    ] = None,
    nodata: Annotated[
        float | None,
        typer.Option(
            "--nodata", metavar="VALUE",
            help="Source value that marks no-data, for scenes that do not declare it (e.g. 0 "
            "for zero-filled edges) or declare another; replaces the file's nodata value, "
            "keeps alpha bands and masks. A pixel is no-data where every band holds it: no "
            "roads are predicted there and it is nodata in the outputs.",
        ),
    ] = None,
    gsd: GsdOpt = None,
    prob: Annotated[
        Path | None,
        typer.Option(help="Also write the stitched probability as a Cloud-Optimized GeoTIFF "
                     "(uint8, p = value / 254). With many scenes: a folder (may be the -o "
                     "folder) for <stem>_prob.tif files."),
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option(help="Also write a quick-look PNG of the roads over the scene "
                     "(at most 2048 px on its longer side). With many scenes: a folder for "
                     "<stem>_preview.png files."),
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
    backend: Annotated[
        Literal["local", "ray"],
        typer.Option(help="local: this process. ray: Ray actors keep the model loaded, "
                     "scenes run in stripes of windows (pip install \"roadx\\[ray]\"); the "
                     "outputs are identical."),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="With --backend ray: 'auto' (the cluster this "
                     "machine joined with `ray start`) or HOST:PORT of the head node; "
                     "default: start a local Ray instance for this run."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="With --backend ray: model copies (Ray actors); default one "
                     "per GPU, or one per CPU without GPUs."),
    ] = None,
    stripe_rows: Annotated[
        int | None,
        typer.Option("--stripe-rows", min=1, help="With --backend ray: window rows per "
                     "stripe (default: about two stripes per worker, at most 256 MiB)."),
    ] = None,
    merge: Annotated[
        Path | None,
        typer.Option(help="With many scenes: also write all scenes' roads into this one "
                     "file, lines that meet at the borders of adjacent scenes joined "
                     "(in the first scene's CRS)."),
    ] = None,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
) -> None:
    """Extract a road network from GeoTIFF scene(s) and write it as vector layers.

    Example: roadx predict scene.tif -o roads.gpkg --prob prob.tif

    Many scenes, one model load: roadx predict tiles/ extra.tif -o out/ --prob out/
    (out/<stem>.gpkg, out/<stem>_prob.tif, out/index.json). Re-running it skips the scenes
    already done (--overwrite redoes all). Exit code 3: some scenes failed (see index.json).

    On a Ray cluster: roadx predict tiles/ -o out/ --backend ray --ray-address auto
    --merge out/all_roads.gpkg

    RGB scene + a separate NIR raster: roadx predict rgb.tif --aux nir.tif --model
    d3fnet34-mm -o roads.gpkg
    """
    setup_logging(verbose, quiet)

    from roadx.batch import is_scene_collection
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
        aux=aux,
        nodata=nodata,
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
    ray_options = None
    if backend == "ray":
        from roadx.ray_backend import RayOptions

        ray_options = RayOptions(address=ray_address, workers=workers, stripe_rows=stripe_rows)
    elif ray_address is not None or workers is not None or stripe_rows is not None:
        raise typer.BadParameter("--ray-address, --workers and --stripe-rows need "
                                 "--backend ray", param_hint="--backend")
    if (len(scenes) > 1 or any(is_scene_collection(s) for s in scenes)
            or output.endswith(("/", os.sep)) or os.path.isdir(output)):
        batch = _predict_many(
            scenes, output, options, fmt=fmt or "gpkg", show=not json_output and quiet == 0,
            backend=backend, ray_options=ray_options, merge=merge,
        )
        _batch_report(batch, json_output=json_output)
        return
    if merge is not None:
        raise typer.BadParameter("--merge joins the scenes of a batch; with one scene -o "
                                 "is already the whole network", param_hint="--merge")
    if fmt is not None and Path(output).suffix.lower() != f".{fmt}":
        raise typer.BadParameter(
            f"--format {fmt} does not match -o {output}; with one scene the extension of -o "
            "sets the format", param_hint="--format")
    scene = scenes[0]
    with area_progress(
        "predict", unit="windows", enabled=not json_output and quiet == 0
    ) as on_progress:
        if ray_options is not None:
            from roadx.ray_backend import RayBackend

            with RayBackend(options, ray_options) as runner:
                result = runner.extract(scene, output, options=options,
                                        on_progress=on_progress)
                err_console.print(runner.progress.line(), soft_wrap=True, markup=False,
                                  highlight=False)
        else:
            result = extract(scene, output, options=options, on_progress=on_progress)
    if json_output:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title="roadx predict", show_header=False, title_justify="left")
    table.add_row("scene", f"{result.scene} ({result.width_px}×{result.height_px} px, "
                  f"{result.gsd_m} m/px{', resampled' if result.resampled else ''})")
    table.add_row("CRS", result.crs or _no_crs(result.georeferenced))
    if result.aux is not None:
        table.add_row("aux", f"{result.aux} (warped onto the scene's grid)")
    table.add_row("model", f"{result.model} ({result.weights}), TTA {result.tta}")
    table.add_row("device", f"{result.device}, {result.precision} ({result.precision_reason})")
    table.add_row("windows", f"{result.windows} of {result.tile_px} px in {result.seconds:.1f} s "
                  f"({result.windows_per_s:.2f} windows/s, {result.km2_per_h:.1f} km²/h)")
    table.add_row("roads", f"{result.roads} lines, {result.total_km:.2f} km, "
                  f"{result.junctions} junctions, {result.dead_ends} dead ends, "
                  f"{result.bridged} gaps bridged")
    table.add_row("outputs", "\n".join(result.outputs + ([result.probability] if result.probability else [])))
    err_console.print(table)


def _predict_many(scenes: list[str], output: str, options: "ExtractOptions", *, fmt: str,
                  show: bool, backend: str = "local", ray_options: "RayOptions | None" = None,
                  merge: Path | None = None) -> "BatchResult":
    """Run a batch with one progress display per scene (Ray: one for the whole batch, in
    scenes) and a line per finished scene."""
    import dataclasses

    from roadx.batch import SceneRecord, predict_many

    current: list[Callable[[int, int, float], None]] = []
    stack = contextlib.ExitStack()

    def on_scene(i: int, n: int, record: SceneRecord) -> None:
        if backend == "ray":
            if show and record.status != "running":
                err_console.print(f"{i + 1}/{n} {record.scene}: {_status(record)}",
                                  soft_wrap=True, markup=False, highlight=False)
            return
        if record.status == "running":
            current[:] = [stack.enter_context(
                area_progress(f"{i + 1}/{n} {record.stem}", unit="windows", enabled=show))]
            return
        stack.close()
        current.clear()
        if show:
            err_console.print(f"{i + 1}/{n} {record.scene}: {_status(record)}",
                              soft_wrap=True, markup=False, highlight=False)

    def on_progress(done: int, total: int, km2_done: float) -> None:
        if current:
            current[0](done, total, km2_done)

    prob, preview = options.probability_path, options.preview_path
    options = dataclasses.replace(options, probability_path=None, preview_path=None)
    if backend == "ray":
        current.append(stack.enter_context(area_progress("ray", unit="scenes",
                                                         enabled=show)))
    with stack:
        return predict_many(scenes, output, options=options, fmt=fmt, prob_dir=prob,
                            preview_dir=preview, on_scene=on_scene, on_progress=on_progress,
                            backend=backend, ray=ray_options, merge=merge)


def _status(record: "SceneRecord") -> str:
    """``ok, 12 roads, 3.40 km, 21.5 s`` / ``skipped (done earlier)`` / ``failed: …``."""
    if record.status == "failed":
        return f"failed: {record.error}"
    done = f"{record.roads} roads, {record.km:.2f} km, {record.seconds:.1f} s"
    return f"{done} (done earlier, skipped)" if record.status == "skipped" else f"ok, {done}"


def _batch_report(batch: "BatchResult", *, json_output: bool) -> None:
    """Print a batch's result; exit 0 when all scenes are done, :data:`EXIT_SOME_FAILED`
    when some failed, 1 when all failed."""
    from rich.markup import escape

    if json_output:
        print_json(batch)
    else:
        from rich.table import Table

        table = Table(title="roadx predict (batch)", title_justify="left")
        for column in ("scene", "status", "roads", "km", "s"):
            table.add_column(column, justify="left" if column in ("scene", "status") else "right")
        for r in batch.scenes:
            table.add_row(escape(r.stem), r.status,
                          "" if r.roads is None else str(r.roads),
                          "" if r.km is None else f"{r.km:.2f}",
                          "" if r.seconds is None else f"{r.seconds:.1f}")
        err_console.print(table)
        for r in batch.scenes:
            if r.status == "failed":
                err_console.print(f"failed: {r.scene}: {r.error}", soft_wrap=True, markup=False,
                                  highlight=False)
        err_console.print(
            f"{len(batch.scenes)} scenes: {batch.ok} ok, {batch.skipped} skipped (done "
            f"earlier), {batch.failed} failed in {batch.seconds:.1f} s; index: {batch.index}",
            soft_wrap=True, markup=False, highlight=False)
        for line in (batch.cluster, batch.merged and f"merged network: {batch.merged}"):
            if line:
                err_console.print(line, soft_wrap=True, markup=False, highlight=False)
    if batch.merge_error:
        err_console.print(f"[red]error:[/red] --merge failed: {escape(batch.merge_error)}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if batch.failed == len(batch.scenes):
        err_console.print(f"[red]error:[/red] all scenes failed ({batch.failed} of "
                          f"{batch.failed}); see {escape(batch.index)}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1)
    if batch.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _no_crs(georeferenced: bool) -> str:
    """The CRS row of an output without CRS: pixel space (--gsd) or a world file's frame."""
    if georeferenced:
        return "none (coordinates of the world file / geotransform)"
    return "none (pixel space in metres: x = col × gsd, y = −row × gsd of the image)"
