"""One evaluation of road weights on every held-out source (issue #9, "Measure").

For each weights file (``--weights``, repeatable; default the shipped
``weights/d3fnet34.safetensors``) and each source, every scene is run through the Python API
(:class:`roadx.Predictor` / :func:`roadx.predict_roads`, the pipeline of ``roadx predict``:
resampled to the card's GSD, TTA, stitching, vectorizing) and scored with
:func:`roadx.evaluation.evaluate`, the library call behind ``roadx eval``, exactly as::

    roadx eval PROB.tif PIXEL_TRUTH --image SCENE [--ignore IGNORE] [--gsd G] --no-topo --no-apls-tiles
    roadx eval ROADS.gpkg LINE_TRUTH --image SCENE [--ignore IGNORE] [--gsd G] --no-topo --no-apls-tiles

(the first gives pixel IoU / F1 at p >= 0.5, the second CCQ at a 3 m buffer and APLS; every
other setting is ``roadx eval``'s default). Sources (data read in place from ``$ROADX_DATA``,
default ``../shared/data``; nothing derived is written into the repository):

``massachusetts``
    The held-out Massachusetts images of ``--val-list`` (default ``weights/d3fnet34.val.txt``:
    12 whole tiles, 24 images, chosen by ``split_samples(val_fraction=0.1, seed=0)``), placed
    at 1 m (``--gsd 1``). Pixel truth: the mask. Line truth: the same mask, vectorised by
    ``roadx eval`` itself (the masks carry no centrelines). Pure-white survey no-data is
    left out through an ``--ignore`` polygon file.
``vegas_rgb``
    SpaceNet 3 Las Vegas ``RGB-PanSharpen_AOI_2_Vegas_img0`` (0.3 m) against its 38 SpaceNet
    centrelines; the watermark strip (rows 1160+) is ignored.
``paris_osm``
    SpaceNet 3 Paris ``RGB-PanSharpen_img1447`` against its OpenStreetMap lines (ODbL; roughly
    aligned, a few metres off in places).
``vegas_pan``
    SpaceNet 3 Las Vegas panchromatic ``road_mask_input`` (11-bit, 1 band) against its 9
    SpaceNet centrelines.
``synthetic``
    ``roadx.train.synthetic.synthetic_test_set(--synthetic-n, seed=--synthetic-seed)``, 512 px
    at 1 m, landscapes cycling through all 7. Their seeds are ``2**62 + set * 2**20 + k``;
    training (``SyntheticTiles``, ``roadx train --synthetic-share``) draws scene seeds in
    ``[0, 2**62)`` only, so no test scene can occur in training. Each scene is written under
    ``--work`` as a GeoTIFF (placed in UTM 31N, EPSG:32631), its exact road mask (pixel truth)
    and its centrelines (line truth).

Pixel truth from lines is the lines burnt at 4 m (``roadx eval``'s ``--mask-width``; the
training label width). A source is *held out* for a weights file when all of its tile ids are
in the ``training.val_tiles`` of the weights' card (synthetic test scenes: always);
otherwise the table says ``NO`` — for the shipped weights the Paris and Vegas pan tiles are
training scenes, listed because the issue asks for them.

Per source, pixel scores are dataset-level (confusion counts summed over its images), CCQ
sums the matched and total lengths over its scenes (length-weighted), and APLS is the mean of
the per-scene APLS (SpaceNet's per-chip convention). A single-scene source therefore shows
exactly ``roadx eval``'s numbers (tests/test_eval_suite.py checks this).

usage: python benchmarks/eval_suite.py [--weights W.safetensors ...] [--tta none|flip|d4]
       [--sources massachusetts,vegas_rgb,paris_osm,vegas_pan,synthetic] [--max-tiles N]
       [--json OUT.json] [--work DIR] [--reuse] [--overlays DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from eval_default_weights import DATA, FOLDERS
from eval_spacenet_tile import SCENE as VEGAS_RGB
from eval_spacenet_tile import TRUTH as VEGAS_RGB_TRUTH
from eval_spacenet_tile import watermark_polygon

SHIPPED = HERE.parent / "weights" / "d3fnet34.safetensors"
VAL_LIST = HERE.parent / "weights" / "d3fnet34.val.txt"
SOURCES = ("massachusetts", "vegas_rgb", "paris_osm", "vegas_pan", "synthetic")
DEFAULT_TTA = "d4"
"""The TTA of every figure the shipped card and weights/README.md report as the quality bar
(``quality_massachusetts_val_d4``, ``quality_spacenet_val``: d4)."""
SYNTHETIC_CRS = "EPSG:32631"
UNLABELLED = {  # real scenes without road labels: overlays only (SOURCES.md); (path, nodata)
    "atlanta": ("spacenet_solaris/sample_geotiff.tif", None),
    # the Rotterdam tiles declare no nodata but are zero-filled (pan2 32 %, pan3 39 %)
    "rotterdam_pan1": ("spacenet_solaris/preproc_tutorial/pan1.tif", 0),
    "rotterdam_pan2": ("spacenet_solaris/preproc_tutorial/pan2.tif", 0),
    "rotterdam_pan3": ("spacenet_solaris/preproc_tutorial/pan3.tif", 0),
    "naip": ("opengeos_naip/m_4709963_se_14_1_20200831.tif", None),
}


@dataclass(frozen=True)
class Case:
    """One scene of a source with its ground truth.

    Attributes:
        source: one of :data:`SOURCES`.
        name: unique name within the source (used for output file names).
        tile_id: the id compared with the card's ``training.val_tiles``.
        scene: the image ``roadx predict`` reads.
        truth: line truth (vectors, or a mask that ``roadx eval`` vectorises) for CCQ / APLS.
        pixel_truth: mask or lines (burnt at 4 m) for pixel IoU / F1.
        gsd_m: metres per pixel of an image without georeferencing (``--gsd``), else None.
        ignore: polygon file of regions left out of every metric (``--ignore``), or None.
    """

    source: str
    name: str
    tile_id: str
    scene: Path
    truth: Path
    pixel_truth: Path
    gsd_m: float | None = None
    ignore: Path | None = None


def eval_params():
    """The ``roadx eval`` settings of the suite: defaults (p >= 0.5, CCQ buffer 3 m, APLS
    50 m control nodes, 4 m snapping, 4 m mask width) without TOPO and per-tile APLS
    (``--no-topo --no-apls-tiles``; not asked for, and the slowest parts)."""
    from roadx.evaluation import EvalParams

    return EvalParams(topo=False, apls_tiles=False)


def eval_args(case: Case, prediction: Path, truth: Path) -> list[str]:
    """The ``roadx eval`` arguments (after ``eval``) that :func:`score_case` reproduces for
    one prediction file (``prob.tif`` → pixel scores, ``roads.gpkg`` → CCQ / APLS)."""
    args = [str(prediction), str(truth), "--image", str(case.scene), "--no-topo",
            "--no-apls-tiles"]
    if case.ignore is not None:
        args += ["--ignore", str(case.ignore)]
    if case.gsd_m is not None:
        args += ["--gsd", f"{case.gsd_m:g}"]
    return args


# --- sources ---------------------------------------------------------------------------------


def white_nodata_polygons(valid: np.ndarray, gsd_m: float, out: Path) -> Path | None:
    """Write the invalid pixels of an image without georeferencing as polygons in roadx's
    local metric frame (``x = col * gsd_m``, ``y = -row * gsd_m``, no CRS) to ``out`` (GPKG).

    Args:
        valid: (H, W) bool, True where the image has data.
        gsd_m: metres per pixel (> 0).
        out: the GPKG to write.

    Returns:
        ``out``, or None when every pixel is valid (nothing written).
    """
    import warnings

    import geopandas as gpd
    import rasterio.features
    import shapely

    from roadx.io.raster import pixel_space_transform

    if valid.all():
        return None
    invalid = (~valid).astype(np.uint8)
    shapes = rasterio.features.shapes(invalid, mask=invalid.astype(bool),
                                      transform=pixel_space_transform(gsd_m))
    polys = [shapely.geometry.shape(geom) for geom, _ in shapes]
    with warnings.catch_warnings():  # "'crs' was not provided": the local frame has none
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame({"what": ["no-data"] * len(polys)}, geometry=polys, crs=None).to_file(
            out, engine="pyogrio")
    return out


def massachusetts_cases(work: Path, val_list: Path, limit: int = 0) -> list[Case]:
    """The held-out Massachusetts images of ``val_list`` (white no-data as ignore polygons)."""
    from roadx.io.samples import read_labelled_pair
    from roadx.train.datasets import discover_samples, read_val_list, split_samples

    samples = discover_samples([DATA / f for f in FOLDERS])
    _, val = split_samples(samples, val_ids=read_val_list(val_list))
    val = val[:limit] if limit else val
    folder = work / "massachusetts_ignore"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for s in val:
        name = f"{s.source.name}__{s.image.stem}"
        truth = read_labelled_pair(s.image, s.labels[0], source_gsd_m=1.0, target_gsd_m=1.0)
        ignore = white_nodata_polygons(truth.valid, 1.0, folder / f"{name}.gpkg")
        cases.append(Case("massachusetts", name, s.tile_id, s.image, s.labels[0], s.labels[0],
                          gsd_m=1.0, ignore=ignore))
    return cases


def spacenet_case(source: str, work: Path) -> Case:
    """The one labelled SpaceNet scene of ``source`` (vegas_rgb, paris_osm or vegas_pan)."""
    if source == "vegas_rgb":
        ignore = watermark_polygon(work / "vegas_rgb_watermarks.geojson")
        return Case(source, "AOI_2_Vegas_img0", VEGAS_RGB.stem, VEGAS_RGB, VEGAS_RGB_TRUTH,
                    VEGAS_RGB_TRUTH, ignore=ignore)
    if source == "paris_osm":
        scene = DATA / "spacenet_apls" / "RGB-PanSharpen_img1447.tif"
        truth = DATA / "spacenet_apls" / "OSMroads_img1447.geojson"
        return Case(source, "img1447", scene.stem, scene, truth, truth)
    if source == "vegas_pan":
        scene = DATA / "spacenet_solaris" / "road_mask_input.tif"
        truth = DATA / "spacenet_solaris" / "sample_roads_for_masking.geojson"
        return Case(source, "road_mask_input", scene.stem, scene, truth, truth)
    raise ValueError(f"unknown SpaceNet source {source!r}")


def synthetic_cases(work: Path, n: int, seed: int) -> list[Case]:
    """Write ``synthetic_test_set(n, seed)`` (512 px, 1 m) as GeoTIFF scenes, exact masks and
    centreline GPKGs under ``work/synthetic`` (rewritten only when missing)."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import Affine
    from shapely.affinity import affine_transform

    from roadx.train.synthetic import BACKGROUNDS, TEST_SEED_BASE, generate_scene

    folder = work / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for k in range(n):
        scene_seed = TEST_SEED_BASE + seed * 2**20 + k  # synthetic_test_set's seeds, one by one
        name = f"set{seed}_k{k:03d}"
        tif, mask, lines = (folder / f"{name}{ext}" for ext in (".tif", "_mask.tif", ".gpkg"))
        if not (tif.exists() and mask.exists() and lines.exists()):
            sc = generate_scene(scene_seed, 512, 1.0, background=BACKGROUNDS[k % len(BACKGROUNDS)])
            x0, y0 = 500_000.0 + 1_000.0 * k, 5_500_000.0  # scenes side by side, 1 km apart
            transform = Affine(sc.gsd_m, 0, x0, 0, -sc.gsd_m, y0)
            profile = {"driver": "GTiff", "height": 512, "width": 512, "crs": SYNTHETIC_CRS,
                       "transform": transform, "dtype": "uint8"}
            with rasterio.open(tif, "w", count=3, photometric="RGB", **profile) as dst:
                dst.write(np.moveaxis(sc.image, -1, 0))
            with rasterio.open(mask, "w", count=1, **profile) as dst:
                dst.write(sc.road.astype(np.uint8)[None] * 255)
            # pixel (x = column, y = row) -> map: X = x0 + x * gsd, Y = y0 - y * gsd
            world = [affine_transform(g, [sc.gsd_m, 0, 0, -sc.gsd_m, x0, y0])
                     for g in sc.centrelines]
            gpd.GeoDataFrame({"background": sc.background, "surface": list(sc.surfaces),
                              "width_m": list(sc.widths_m)}, geometry=world,
                             crs=SYNTHETIC_CRS).to_file(lines, engine="pyogrio")
        cases.append(Case("synthetic", name, str(scene_seed), tif, lines, mask))
    return cases


def build_cases(sources: list[str], work: Path, *, val_list: Path = VAL_LIST,
                max_tiles: int = 0, synthetic_n: int = 14, synthetic_seed: int = 0
                ) -> list[Case]:
    """Every case of ``sources`` (``max_tiles`` > 0: at most that many scenes per source).

    Raises:
        ValueError: an unknown source name.
    """
    if unknown := sorted(set(sources) - set(SOURCES)):
        raise ValueError(f"unknown source(s) {unknown}; expected some of {SOURCES}")
    work.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for source in sources:
        if source == "massachusetts":
            cases += massachusetts_cases(work, val_list, max_tiles)
        elif source == "synthetic":
            n = min(synthetic_n, max_tiles) if max_tiles else synthetic_n
            cases += synthetic_cases(work, n, synthetic_seed)
        else:
            cases.append(spacenet_case(source, work))
    return cases


# --- predict and score -----------------------------------------------------------------------


def predict_case(predictor: Any, case: Case, out_dir: Path, tta: str, *,
                 reuse: bool = False) -> tuple[Path, Path, float]:
    """Run ``case.scene`` through :meth:`roadx.Predictor.predict_roads` (the ``roadx
    predict`` pipeline) and write ``<name>.gpkg`` and ``<name>_prob.tif`` into ``out_dir``.

    Args:
        predictor: a :class:`roadx.Predictor` holding the weights.
        case: the scene.
        out_dir: folder of the outputs (created).
        tta: ``none``, ``flip`` or ``d4``.
        reuse: keep outputs that exist already (an earlier run of the same weights and TTA).

    Returns:
        (roads GPKG, probability GeoTIFF, seconds spent predicting; 0.0 when reused).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    roads, prob = out_dir / f"{case.name}.gpkg", out_dir / f"{case.name}_prob.tif"
    if reuse and roads.exists() and prob.exists():
        return roads, prob, 0.0
    t0 = time.perf_counter()
    network = predictor.predict_roads(case.scene, probability_path=prob, tta=tta,
                                      gsd_m=case.gsd_m, overwrite=True)
    network.to_file(roads, overwrite=True)
    return roads, prob, time.perf_counter() - t0


def score_case(case: Case, roads: Path, prob: Path) -> dict[str, Any]:
    """Score one prediction as ``roadx eval`` does (see :func:`eval_args`).

    ``roadx eval`` refuses ground truth without any road (it has no network to compare);
    such a case (one held-out Massachusetts crop of forest and marsh) is scored for pixels
    only, with the same reader, valid area and threshold, so that its false positives count
    in the source's pixel scores as in ``compare_weights.py``; its CCQ and APLS are None and
    :func:`aggregate` leaves it out of them.

    Args:
        case: the scene and its truth.
        roads: predicted road lines (GPKG).
        prob: predicted probability GeoTIFF.

    Returns:
        ``{"pixel": {tp, fp, fn, tn, iou, f1, precision, recall}, "ccq": CcqResult dict
        (3 m) or None, "apls": float or None, "pred_km", "truth_km"}``.

    Raises:
        Every error of :func:`roadx.evaluation.evaluate` but the empty-truth one.
    """
    from roadx.evaluation import evaluate
    from roadx.io import reference as ref

    common = {"params": eval_params(), "image": case.scene, "ignore": case.ignore,
              "gsd_m": case.gsd_m}
    truth = ref.read_raster_layer(case.pixel_truth, gsd_m=case.gsd_m) \
        if ref.input_kind(case.pixel_truth) == "raster" else None
    if truth is not None and not (truth.values >= 0.5).any():
        return {"pixel": _pixel_without_roads(case, prob, truth.grid), "ccq": None,
                "apls": None, "pred_km": None, "truth_km": 0.0,
                "note": "no road in the truth: pixel scores only (roadx eval refuses it)"}
    pixel = evaluate(prob, case.pixel_truth, **common).pixel
    network = evaluate(roads, case.truth, **common).network
    assert pixel is not None and network is not None
    ccq = network.ccq.to_dict()
    return {"pixel": pixel.confusion.to_dict(), "ccq": ccq, "apls": network.apls.apls,
            "pred_km": ccq["pred_length_m"] / 1000, "truth_km": ccq["gt_length_m"] / 1000}


def _pixel_without_roads(case: Case, prob: Path, grid: Any) -> dict[str, Any]:
    """Pixel confusion of a prediction against a truth without road (every predicted road
    pixel is a false positive), on the pixels ``roadx eval`` would count."""
    from roadx.io import reference as ref
    from roadx.metrics.pixel import pixel_report

    pred = ref.read_raster_layer(prob, like=grid, gsd_m=case.gsd_m).values
    valid = np.isfinite(pred)
    if case.ignore is not None:
        polys = ref.read_polygons(case.ignore, gsd_m=case.gsd_m)
        valid &= ~ref.rasterize_mask(list(polys.geometry), grid)
    report = pixel_report(pred, np.zeros(pred.shape, bool), valid=valid,
                          threshold=eval_params().threshold)
    return report.confusion.to_dict()


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Source-level scores of per-case rows (:func:`score_case` results).

    Pixel: confusion counts summed (dataset-level IoU / F1 / precision / recall). CCQ:
    lengths summed (completeness = Σ GT matched / Σ GT, correctness = Σ prediction matched /
    Σ prediction, quality = Σ prediction matched / (Σ prediction + Σ GT unmatched)). APLS: the
    mean over cases. Rows without network scores (truth without road) count for pixels only
    (``n_network`` says how many did). One row gives back its own numbers.
    """
    from roadx.metrics import Confusion

    conf = Confusion()
    for r in rows:
        p = r["pixel"]
        conf = conf + Confusion(tp=p["tp"], fp=p["fp"], fn=p["fn"], tn=p["tn"])
    net = [r for r in rows if r["ccq"] is not None]
    gt = sum(r["ccq"]["gt_length_m"] for r in net)
    gt_hit = sum(r["ccq"]["gt_matched_m"] for r in net)
    pred = sum(r["ccq"]["pred_length_m"] for r in net)
    pred_hit = sum(r["ccq"]["pred_matched_m"] for r in net)
    comp = gt_hit / gt if gt > 0 else 0.0
    corr = pred_hit / pred if pred > 0 else 0.0
    denom = pred + (gt - gt_hit)
    return {
        "n": len(rows), "n_network": len(net), "pixel": conf.to_dict(),
        "ccq": {"completeness": comp, "correctness": corr,
                "quality": pred_hit / denom if denom > 0 else 0.0,
                "gt_length_m": gt, "pred_length_m": pred},
        "apls": float(np.mean([r["apls"] for r in net])) if net else 0.0,
    }


def held_out(card: Any, source: str, tile_ids: list[str]) -> str:
    """``"yes"``, ``"NO"`` or ``"?"``: whether every tile of a source is in the card's
    held-out list (``training.val_tiles``); synthetic test scenes are held out by their seeds."""
    if source == "synthetic":
        return "yes"
    val_tiles = set((getattr(card, "training", None) or {}).get("val_tiles") or ())
    if not val_tiles:
        return "?"
    return "yes" if set(tile_ids) <= val_tiles else "NO"


def evaluate_weights(weights: Path, cases: list[Case], tta: str, work: Path, *,
                     label: str, reuse: bool = False, threads: int | None = None,
                     log: Any = None) -> dict[str, Any]:
    """Predict and score every case with one weights file.

    Args:
        weights: the checkpoint.
        cases: from :func:`build_cases`.
        tta: ``none``, ``flip`` or ``d4``.
        work: outputs go to ``work/<label>-<sha256[:12]>-<tta>/<source>/``.
        label: short name of the weights in the table.
        reuse: reuse predictions an earlier run left there.
        threads: torch CPU threads (None: one per core).
        log: a writable text stream for per-case progress lines (JSON), or None.

    Returns:
        ``{"label", "weights", "sha256", "tta", "rows": [...], "sources": {source:
        aggregate + held_out + seconds}}``.
    """
    from roadx.pipeline import Predictor

    predictor = Predictor(weights=weights, tta=tta, threads=threads)
    folder = work / f"{label}-{predictor.weights_sha256[:12]}-{tta}"
    rows: list[dict[str, Any]] = []
    for case in cases:
        roads, prob, predict_s = predict_case(predictor, case, folder / case.source, tta,
                                              reuse=reuse)
        t0 = time.perf_counter()
        row = {"source": case.source, "name": case.name, "tile_id": case.tile_id,
               **score_case(case, roads, prob), "roads": str(roads), "prob": str(prob),
               "eval_pixel_args": eval_args(case, prob, case.pixel_truth),
               "eval_lines_args": eval_args(case, roads, case.truth),
               "predict_s": round(predict_s, 2)}
        row["score_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if log is not None:
            print(json.dumps({"weights": label, "source": case.source, "name": case.name,
                              "iou": round(row["pixel"]["iou"], 4), "apls": row["apls"],
                              "predict_s": row["predict_s"], "score_s": row["score_s"]}),
                  file=log, flush=True)
    sources: dict[str, Any] = {}
    for source in dict.fromkeys(c.source for c in cases):
        mine = [r for r in rows if r["source"] == source]
        sources[source] = {**aggregate(mine),
                           "held_out": held_out(predictor.card, source,
                                                [r["tile_id"] for r in mine]),
                           "seconds": round(sum(r["predict_s"] + r["score_s"] for r in mine), 1)}
    return {"label": label, "weights": str(weights), "sha256": predictor.weights_sha256,
            "tta": tta, "precision": predictor.precision.name, "rows": rows,
            "sources": sources}


# --- table -----------------------------------------------------------------------------------

COLUMNS = ("IoU", "F1", "compl.", "corr.", "quality", "APLS")


def table_numbers(entry: dict[str, Any]) -> tuple[float, ...]:
    """The six numbers of a table row (source aggregate): pixel IoU, F1, CCQ (3 m)
    completeness, correctness, quality, APLS."""
    p, c = entry["pixel"], entry["ccq"]
    return (p["iou"], p["f1"], c["completeness"], c["correctness"], c["quality"],
            entry["apls"])


def format_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per source and weights, and a Δ row (last − first) when
    more than one weights file was evaluated."""
    head = ("| source | n | held out | weights | " + " | ".join(COLUMNS) + " |\n"
            + "|---|---|---|---|" + "---|" * len(COLUMNS))
    lines = [head]
    for source in results[0]["sources"]:
        for res in results:
            entry = res["sources"][source]
            nums = " | ".join(f"{v:.3f}" for v in table_numbers(entry))
            lines.append(f"| {source} | {entry['n']} | {entry['held_out']} | {res['label']} | "
                         f"{nums} |")
        if len(results) > 1:
            a = table_numbers(results[0]["sources"][source])
            b = table_numbers(results[-1]["sources"][source])
            nums = " | ".join(f"{y - x:+.3f}" for x, y in zip(a, b))
            lines.append(f"| {source} | | | Δ {results[-1]['label']} − {results[0]['label']} "
                         f"| {nums} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and CPU capability of this machine."""
    import torch

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.is_available()}


def render_overlays(weights: list[Path], labels: list[str], out: Path, tta: str,
                    threads: int | None = None) -> list[dict[str, Any]]:
    """``roadx predict --preview`` of the unlabelled real scenes (:data:`UNLABELLED`) with
    each weights file: ``out/<label>/<scene>.png`` (+ ``.gpkg``). Returns one summary per run."""
    from roadx.pipeline import Predictor

    runs = []
    for w, label in zip(weights, labels):
        predictor = Predictor(weights=w, tta=tta, threads=threads)
        for name, (rel, nodata) in UNLABELLED.items():
            folder = out / label
            folder.mkdir(parents=True, exist_ok=True)
            res = predictor.extract(DATA / rel, folder / f"{name}.gpkg",
                                    options=replace(predictor.options,
                                                    preview_path=folder / f"{name}.png",
                                                    nodata=nodata, overwrite=True))
            runs.append({"weights": label, "scene": name, "roads": res.roads,
                         "km": round(res.total_km, 2), "seconds": round(res.seconds, 1),
                         "preview": str(folder / f"{name}.png")})
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line; returns the JSON document it prints / writes."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", action="append", type=Path,
                    help="a weights file (repeat for before/after); default: the shipped one")
    ap.add_argument("--label", action="append",
                    help="table name of each --weights (default: the file stem)")
    ap.add_argument("--tta", choices=("none", "flip", "d4"), default=DEFAULT_TTA,
                    help=f"default {DEFAULT_TTA}, as the shipped card's reported figures")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--max-tiles", type=int, default=0,
                    help="at most N scenes per source (quick run; 0: all)")
    ap.add_argument("--val-list", type=Path, default=VAL_LIST)
    ap.add_argument("--synthetic-n", type=int, default=14)
    ap.add_argument("--synthetic-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/roadx-eval-suite"))
    ap.add_argument("--reuse", action="store_true",
                    help="reuse predictions left in --work by an earlier run")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, help="also write the full results here")
    ap.add_argument("--overlays", type=Path,
                    help="also write roadx predict --preview PNGs of the unlabelled scenes here")
    args = ap.parse_args(argv)
    weights = args.weights or [SHIPPED]
    labels = args.label or [w.stem for w in weights]
    if len(labels) != len(weights):
        ap.error("give one --label per --weights")
    started = time.perf_counter()
    cases = build_cases([s for s in args.sources.split(",") if s], args.work,
                        val_list=args.val_list, max_tiles=args.max_tiles,
                        synthetic_n=args.synthetic_n, synthetic_seed=args.synthetic_seed)
    results = [evaluate_weights(w, cases, args.tta, args.work, label=lab, reuse=args.reuse,
                                threads=args.threads, log=sys.stderr)
               for w, lab in zip(weights, labels)]
    doc: dict[str, Any] = {
        "command": "python benchmarks/eval_suite.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
        "tta": args.tta, "machine": machine(), "results": results,
        "synthetic": {"set_seed": args.synthetic_seed, "n": args.synthetic_n,
                      "scene_seeds": "2**62 + set_seed * 2**20 + k"},
    }
    if args.overlays:
        doc["overlays"] = render_overlays(weights, labels, args.overlays, args.tta, args.threads)
    doc["wall_s"] = round(time.perf_counter() - started, 1)
    doc["table"] = format_table(results)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(doc["table"])
    print(f"\nTTA {args.tta}; {doc['machine']['cpu']}, {doc['machine']['cores']} cores; "
          f"wall {doc['wall_s']} s")
    return doc


if __name__ == "__main__":
    main()
