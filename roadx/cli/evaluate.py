"""``roadx eval``: pixel and road-network metrics of a prediction against ground truth."""

from pathlib import Path
from typing import Annotated, Any

import typer

from roadx.cli.console import err_console, print_json, setup_logging
from roadx.cli.options import JsonOpt, OverwriteOpt, QuietOpt, VerboseOpt

_PARAM_OPTIONS = (
    "threshold", "rho_px", "buffer_m", "apls_step_m", "apls_snap_m", "apls_min_path_m",
    "apls_max_nodes", "junction_radius_m", "mask_width_m", "seed", "topo", "topo_radius_m",
    "topo_interval_m", "topo_match_m", "apls_tiles", "apls_tile_m",
)


def evaluate(
    pred: Annotated[
        Path,
        typer.Argument(help="Prediction: road vectors (GPKG/GeoJSON/SHP), a probability/mask "
                       "raster, or a CSV of pixel WKT lines (with --pred-transform-from)."),
    ],
    gt: Annotated[
        Path,
        typer.Argument(help="Ground truth: road centreline vectors (any OGR format) or a mask "
                       "raster / image."),
    ],
    image: Annotated[
        Path | None,
        typer.Option(help="Scene image: underlay of the figure; its footprint is the default AOI."),
    ] = None,
    pred_transform_from: Annotated[
        Path | None,
        typer.Option(help="Raster whose pixel grid a pixel-WKT CSV prediction refers to "
                     "(default: --image)."),
    ] = None,
    aoi: Annotated[
        Path | None,
        typer.Option(help="Polygon file limiting the comparison (default: the image or "
                     "prediction raster footprint)."),
    ] = None,
    ignore: Annotated[
        Path | None,
        typer.Option(help="Polygon file of regions to leave out (watermarks, no-data)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Probability threshold of a raster prediction "
                     "(default 0.5)."),
    ] = None,
    rho_px: Annotated[
        float | None,
        typer.Option(min=0.0, help="Relaxed precision/recall tolerance ρ in pixels (default 3)."),
    ] = None,
    buffer_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="CCQ buffer in metres (default 3)."),
    ] = None,
    apls_step_m: Annotated[
        float | None,
        typer.Option("--apls-step-m", "--apls-step", min=0.0,
                     help="APLS control-node spacing in metres (default 50)."),
    ] = None,
    apls_snap_m: Annotated[
        float | None,
        typer.Option("--apls-snap-m", "--apls-snap", min=0.0,
                     help="APLS node snapping distance in metres (default 4)."),
    ] = None,
    apls_min_path_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="Shortest path APLS scores, metres (default 10)."),
    ] = None,
    apls_max_nodes: Annotated[
        int | None,
        typer.Option(min=2, help="Control nodes per graph before APLS samples (default 1000)."),
    ] = None,
    junction_radius_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="Junction matching radius in metres (default 10)."),
    ] = None,
    mask_width_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="Width at which lines are burnt into masks for pixel "
                     "metrics, metres (default 4)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the APLS node sample and the TOPO seed sample "
                                 "(default 0).")
    ] = None,
    topo: Annotated[
        bool | None,
        typer.Option("--topo/--no-topo", help="Compute TOPO (holes and marbles; default: on)."),
    ] = None,
    topo_radius_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="TOPO propagation distance from each seed, metres (default "
                     "300; Sat2Graph uses 150 on 400 m SpaceNet tiles)."),
    ] = None,
    topo_interval_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="TOPO marble/hole spacing, metres (default 5)."),
    ] = None,
    topo_match_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="TOPO marble-hole matching distance, metres (default 10)."),
    ] = None,
    apls_tiles: Annotated[
        bool | None,
        typer.Option("--apls-tiles/--no-apls-tiles",
                     help="Compute APLS per tile, averaged as SpaceNet scored it (default: on)."),
    ] = None,
    apls_tile_m: Annotated[
        float | None,
        typer.Option(min=0.0, help="Side of the APLS tiles, metres (default 400: SpaceNet 3's "
                     "1300 px at 0.3 m)."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Folder for report.json, diff.gpkg (missed/spurious/matched) and "
                     "comparison.png."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Compare areas larger than 10,000 km² (up to 1,000 km "
                     "across)."),
    ] = False,
    gsd: Annotated[
        float | None,
        typer.Option("--gsd", min=0.0,
                     help="Metres per pixel of rasters without georeferencing (a mask, "
                     "--image): placed at x = col × gsd, y = −row × gsd as roadx predict --gsd "
                     "places its outputs, so those compare with every metric (CCQ, APLS, "
                     "TOPO). Inputs without CRS are compared in metres without CRS."),
    ] = None,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
) -> None:
    """Compare a road prediction with ground truth: pixel IoU/F1, relaxed F1, CCQ, APLS, TOPO,
    junctions.

    Example: roadx eval roads.gpkg gt.geojson --image scene.tif --report eval/

    Without georeferencing (roadx predict tile.png --gsd 1 -o roads.gpkg):
    roadx eval roads.gpkg tile_mask.png --gsd 1
    """
    setup_logging(verbose, quiet)
    from contextlib import nullcontext
    from dataclasses import replace

    from roadx.evaluation import EvalParams
    from roadx.evaluation import evaluate as run_evaluation

    given = locals()
    overrides = {name: given[name] for name in _PARAM_OPTIONS if given[name] is not None}
    params = replace(EvalParams(), **overrides)
    show = not json_output and quiet == 0
    spinner = err_console.status("evaluating", spinner="dots") if show else nullcontext()
    with spinner as status:

        def on_stage(name: str) -> None:
            if status is not None:
                status.update(f"evaluating: {name}")

        result = run_evaluation(
            pred, gt, params=params, image=image, pred_transform_from=pred_transform_from,
            aoi=aoi, ignore=ignore, report_dir=report, overwrite=overwrite, force=force,
            gsd_m=gsd, on_stage=on_stage,
        )
    data = result.to_dict()
    if json_output:
        print_json(data)
        return
    if quiet == 0:
        _print_table(data)


def _f(value: float) -> str:
    return f"{value:.3f}"


def _print_table(d: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="roadx eval", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("details / parameters")
    pixel = d["pixel"]
    if pixel:
        ds, mean, rel = pixel["dataset"], pixel["per_image_mean"], pixel["relaxed"]
        table.add_row("pixel IoU (dataset)", _f(ds["iou"]), f"threshold {pixel['threshold']}, "
                      f"{pixel['valid_px']} valid px")
        table.add_row("pixel P / R / F1 (dataset)",
                      f"{_f(ds['precision'])} / {_f(ds['recall'])} / {_f(ds['f1'])}", "")
        table.add_row("pixel IoU / F1 (per-image mean)", f"{_f(mean['iou'])} / {_f(mean['f1'])}",
                      f"{mean['n_images']} image(s)")
        table.add_row("relaxed P / R / F1",
                      f"{_f(rel['precision'])} / {_f(rel['recall'])} / {_f(rel['f1'])}",
                      f"ρ = {rel['rho_px']} px (Mnih & Hinton 2010)")
    if d["ccq"]:
        c = d["ccq"]
        table.add_row("CCQ completeness / correctness", f"{_f(c['completeness'])} / "
                      f"{_f(c['correctness'])}", f"buffer {c['buffer_m']} m (Wiedemann 1998)")
        table.add_row("CCQ quality", _f(c["quality"]), "")
    if d["apls"]:
        a, p = d["apls"], d["apls"]["params"]
        table.add_row("APLS", _f(a["apls"]),
                      f"gt→prop {_f(a['gt_to_prop'])}, prop→gt {_f(a['prop_to_gt'])}; step "
                      f"{p['step_m']} m, snap {p['snap_m']} m, min path {p['min_path_m']} m"
                      + (f", sampled {p['max_nodes']} nodes" if a["sampled"] else ""))
    if d.get("apls_tiles"):
        t = d["apls_tiles"]
        empty = t["n_both_empty"] + t["n_gt_empty"] + t["n_prop_empty"]
        table.add_row("APLS per tile (mean)", _f(t["apls"]),
                      f"{t['n_tiles']} tile(s) of {t['tile_m']:g} m, {t['n_scored']} scored"
                      + (f", {empty} with empty GT or prediction (both empty: 1, one: 0); "
                         f"mean over GT tiles {_f(t['apls_gt_tiles'])}" if empty else "")
                      + " (SpaceNet 3)")
    if d.get("topo"):
        t, p = d["topo"], d["topo"]["params"]
        table.add_row("TOPO P / R / F1",
                      f"{_f(t['precision'])} / {_f(t['recall'])} / {_f(t['f1'])}",
                      f"{t['n_seeds_matched']} of {t['n_seeds']} seeds matched; radius "
                      f"{p['radius_m']:g} m, interval {p['interval_m']:g} m, match "
                      f"{p['match_m']:g} m (Biagioni & Eriksson 2012)")
    if d["junctions"]:
        j = d["junctions"]
        table.add_row("junction P / R / F1",
                      f"{_f(j['precision'])} / {_f(j['recall'])} / {_f(j['f1'])}",
                      f"{j['n_matched']} of {j['n_gt']} GT, {j['n_pred']} predicted; "
                      f"radius {j['radius_m']} m")
    if d["summary"]:
        for role in ("prediction", "ground_truth"):
            s = d["summary"][role]
            table.add_row(f"{role.replace('_', ' ')} network", f"{s['length_km']:.2f} km",
                          f"{s['n_edges']} edges, {s['n_components']} components, "
                          f"{s['n_junctions']} junctions")
    for note in d["notes"]:
        table.add_row("note", "", note)
    if d["outputs"]:
        table.add_row("outputs", "", "\n".join(d["outputs"]))
    err_console.print(table)
