"""Topology of vectorised road networks, network repair off vs on (issue #10).

Data are read in place from $ROADX_DATA (default ../shared/data); nothing derived is written
into the repository. Two kinds of input, each vectorised with repair off
(``VectorizeParams().without_repair()``) and on (the defaults), and scored against centreline
ground truth with APLS, per-tile APLS, TOPO, centreline CCQ (3 m buffer) and junction F1:

(a) **Ground-truth masks with occlusion gaps** (``roadx.metrics.occlusion``). A road mask is
    turned into a probability map (road 0.95, background 0.02) and ``--gaps-per-km``
    occlusions of length ``L`` (metres along the road, full road width) are painted into it at a "faint road" probability of
    0.2 (below the 0.3 low threshold, as under a tree canopy), at seeded random points of the
    centreline at least 40 m apart, 15 m from a junction and 20 m from the tile edge. ``L``
    is 5, 10 and 20 m. Ground truth:

    * SpaceNet Vegas pan tile (``spacenet_solaris/sample_road_raster_mask.tif``, 0.3 m): the
      SpaceNet centrelines ``sample_roads_for_masking.geojson``;
    * Massachusetts held-out masks (``weights/d3fnet34.val.txt``, 1 m): the masks carry no
      centrelines, so the reference is the mask vectorised *without gaps* by roadx itself
      (hysteresis, Zhang–Suen skeleton, spur pruning, as any skeleton-derived centreline GT)
      with gap bridging and snapping off but crossings merged and doubled lines collapsed
      (:func:`reference_params`: the masks are rasterised OpenStreetMap centrelines, with
      one node per crossing); the gapped runs are compared with it.

(b) **The shipped weights' predictions** (d4 TTA) on the held-out Massachusetts tiles (against
    the mask centrelines as in (a)) and on the held-out SpaceNet Vegas img0 tile (against its
    38 SpaceNet centrelines, watermark rows 1160+ left out). Predictions are cached as
    ``.npy`` under ``--cache`` (outside the repository) so repeated runs only vectorise.

usage: python benchmarks/eval_topology.py [--cache DIR] [--predict-only] [--limit N]
       [--out FILE.json]
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("ROADX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ROOT = Path(__file__).resolve().parents[1]
VAL_LIST = ROOT / "weights" / "d3fnet34.val.txt"
WEIGHTS = ROOT / "weights" / "d3fnet34.safetensors"
MASS_FOLDERS = [
    "massachusetts_cskanani", "massachusetts_riya_l209", "massachusetts_parth1620",
    "massachusetts_lorudarku",
]
VEGAS = DATA / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
VEGAS_GT = DATA / "spacenet_apls" / "AOI_2_Vegas_img0_roads_gt.geojson"
VEGAS_WATERMARK_ROW = 1160


def held_out_massachusetts(limit: int = 0) -> list:
    """The held-out Massachusetts samples of the shipped weights (image + mask paths)."""
    from roadx.train.datasets import discover_samples, read_val_list, split_samples

    samples = discover_samples([DATA / f for f in MASS_FOLDERS])
    _, val = split_samples(samples, val_ids=read_val_list(VAL_LIST))
    return val[:limit] if limit else val


def cache_predictions(cache: Path, limit: int = 0, tta: str = "d4") -> None:
    """Predict every held-out image with the shipped weights once; store ``<name>.npy``.

    Massachusetts images are predicted at 1 m (their GSD) as in eval_default_weights.py;
    the Vegas tile through ``roadx.pipeline.extract`` (resampled to the card GSD), whose
    probability GeoTIFF is kept beside the array.
    """
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_default_weights import predict_image

    from roadx.models import load_checkpoint
    from roadx.pipeline import ExtractOptions, extract
    from roadx.predict import PredictOptions

    cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    model, card = load_checkpoint(WEIGHTS)
    options = PredictOptions(tta=tta, device="cpu", batch_size=1)
    for s in held_out_massachusetts(limit):
        out = cache / f"{s.source.name}__{s.image.stem}.npy"
        if out.exists():
            continue
        t0 = time.perf_counter()
        prob = predict_image(s.image, model, card, options)
        np.save(out, prob.astype(np.float16))
        print(f"{out.name}: {prob.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    vegas_prob = cache / "vegas_img0_prob.tif"
    if not vegas_prob.exists():
        extract(
            VEGAS, cache / "vegas_img0_roads.gpkg",
            options=ExtractOptions(probability_path=vegas_prob, overwrite=True,
                                   predict=PredictOptions(tta=tta)),
        )
        print(f"{vegas_prob.name} written", flush=True)


GAP_LENGTHS_M = (5.0, 10.0, 20.0)


def reference_params():
    """Vectorisation of a gap-free Massachusetts mask into its reference centrelines: no gap
    bridging or snapping (a clean mask has no gaps), but crossings merged into one node and
    doubled lines collapsed, because the masks were rasterised from OpenStreetMap centrelines,
    which have one node per crossing and one line per road."""
    from roadx.vectorize import VectorizeParams

    return dataclasses.replace(VectorizeParams(), bridge_m=0.0, snap_m=0.0)


def scores(gt_lines: list, pred_lines: list, area=None) -> dict:
    """APLS (whole area and per 400 m tile, SpaceNet style), TOPO F1, centreline CCQ (3 m)
    and junction F1 (10 m) of metric-CRS line lists; ``area`` bounds the tiles."""
    from roadx.metrics.apls import apls_tiled
    from roadx.metrics.graph import lines_to_graph
    from roadx.metrics.network import compare_networks
    from roadx.metrics.topo import topo

    r = compare_networks(gt_lines, pred_lines)
    return {
        "apls": round(r.apls.apls, 4),
        "apls_tiles": round(apls_tiled(gt_lines, pred_lines, area=area).apls, 4),
        "topo_f1": round(topo(lines_to_graph(gt_lines), lines_to_graph(pred_lines)).f1, 4),
        "correctness": round(r.ccq.correctness, 4),
        "completeness": round(r.ccq.completeness, 4),
        "junction_f1": round(r.junctions.f1, 4),
    }


def network_lines(net, to_crs=None) -> list:
    edges = net.edges if to_crs is None else net.edges.to_crs(to_crs)
    return list(edges.geometry)


def geographic_pixel_m(transform, width: int, height: int) -> tuple[float, float]:
    """``(row_m, col_m)`` ground size of a lon/lat pixel at the raster centre (WGS84)."""
    from pyproj import Geod

    lon, lat = transform * (width / 2, height / 2)
    geod = Geod(ellps="WGS84")
    col_m = geod.inv(lon, lat, lon + transform.a, lat)[2]
    row_m = geod.inv(lon, lat, lon, lat + transform.e)[2]
    return float(row_m), float(col_m)


def run_variants(prob: np.ndarray, *, gsd_m, transform=None, crs=None, to_crs=None,
                 gt_lines: list, area=None) -> dict:
    """Vectorise ``prob`` with repair off and on; score both against ``gt_lines``."""
    from roadx.vectorize import VectorizeParams, vectorize

    result = {}
    for name, params in (("off", VectorizeParams().without_repair()), ("on", VectorizeParams())):
        t0 = time.perf_counter()
        net = vectorize(prob, transform=transform, crs=crs, pixel_size_m=gsd_m, params=params)
        seconds = time.perf_counter() - t0
        row = scores(gt_lines, network_lines(net, to_crs), area)
        row["vectorize_s"] = round(seconds, 2)
        row["bridged"] = int(net.edges["bridged"].sum()) if len(net.edges) else 0
        result[name] = row
    return result


def massachusetts_cases(cache: Path, limit: int, per_km: float, seed: int) -> list[dict]:
    """(a) gapped held-out masks and (b) predictions, against the masks' centrelines."""
    from shapely.geometry import box

    from roadx.io.samples import read_labelled_pair
    from roadx.metrics.occlusion import occluded_probability, occlusion_points
    from roadx.vectorize import vectorize

    rows = []
    reference = reference_params()
    for s in held_out_massachusetts(limit):
        truth = read_labelled_pair(s.image, s.labels[0], source_gsd_m=1.0, target_gsd_m=1.0)
        mask = truth.road & truth.valid
        ref = vectorize(mask.astype(np.float32), transform=None, crs=None, pixel_size_m=1.0,
                        params=reference)
        ref_lines = network_lines(ref)
        if not ref_lines:
            continue
        name = f"{s.source.name}/{s.image.stem}"
        area = box(0, 0, mask.shape[1], mask.shape[0])  # pixel coordinates are metres at 1 m
        rng = np.random.default_rng(seed)
        gaps = occlusion_points(ref_lines, gsd_m=1.0, shape=mask.shape, per_km=per_km, rng=rng)
        for gap_m in GAP_LENGTHS_M:
            prob = occluded_probability(mask, gaps, gap_m=gap_m, gsd_m=1.0)
            row = {"case": f"gapped GT {gap_m:g} m", "image": name, "gaps": len(gaps)}
            row.update(run_variants(prob, gsd_m=1.0, gt_lines=ref_lines, area=area))
            rows.append(row)
            print(json.dumps(row), flush=True)
        pred_file = cache / f"{s.source.name}__{s.image.stem}.npy"
        if pred_file.exists():
            prob = np.load(pred_file).astype(np.float32)
            prob[~truth.valid] = np.nan
            row = {"case": "prediction", "image": name}
            row.update(run_variants(prob, gsd_m=1.0, gt_lines=ref_lines, area=area))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def spacenet_cases(cache: Path, per_km: float, seed: int) -> list[dict]:
    """(a) the gapped SpaceNet Vegas pan-tile mask and (b) the Vegas img0 prediction."""
    import geopandas as gpd
    import rasterio
    from shapely.geometry import box

    from roadx.metrics.occlusion import occluded_probability, occlusion_points
    from roadx.vectorize import VectorizeParams, vectorize

    rows = []
    mask_path = DATA / "spacenet_solaris" / "sample_road_raster_mask.tif"
    gt = gpd.read_file(DATA / "spacenet_solaris" / "sample_roads_for_masking.geojson")
    with rasterio.open(mask_path) as ds:
        mask = ds.read(1) > 127
        transform, crs = ds.transform, ds.crs
    utm = gt.estimate_utm_crs()
    gt_lines = list(gt.to_crs(utm).geometry)
    pixel_m = geographic_pixel_m(transform, mask.shape[1], mask.shape[0])
    gsd_m = float(np.sqrt(pixel_m[0] * pixel_m[1]))
    ref = vectorize(mask.astype(np.float32), transform=None, crs=None, pixel_size_m=pixel_m,
                    params=VectorizeParams().without_repair())
    rng = np.random.default_rng(seed)
    gaps = occlusion_points(network_lines(ref), gsd_m=gsd_m, shape=mask.shape, per_km=per_km,
                       rng=rng)
    for gap_m in (0.0, *GAP_LENGTHS_M):
        prob = occluded_probability(mask, gaps if gap_m else [], gap_m=gap_m, gsd_m=gsd_m)
        row = {"case": f"gapped GT {gap_m:g} m" if gap_m else "GT mask, no gaps",
               "image": "spacenet_solaris/sample_road_raster_mask", "gaps": len(gaps) if gap_m else 0}
        row.update(run_variants(prob, gsd_m=pixel_m, transform=transform, crs=crs, to_crs=utm,
                                gt_lines=gt_lines))
        rows.append(row)
        print(json.dumps(row), flush=True)

    prob_tif = cache / "vegas_img0_prob.tif"
    if prob_tif.exists():
        vegas_gt = gpd.read_file(VEGAS_GT)
        utm = vegas_gt.estimate_utm_crs()
        with rasterio.open(prob_tif) as ds:
            raw = ds.read(1)
            transform, crs = ds.transform, ds.crs
            prob = raw.astype(np.float32) / 255.0
            if ds.nodata is not None:
                prob[raw == ds.nodata] = np.nan
            # leave out the watermark strip (source rows 1160+), as eval_spacenet_tile.py
            with rasterio.open(VEGAS) as src:
                left, top = src.transform * (0, VEGAS_WATERMARK_ROW)
                right, bottom = src.transform * (src.width, src.height)
            strip = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
            keep_rows = int((~transform * (0, strip.bounds[3]))[1])
            prob[keep_rows:] = np.nan
        row_m, col_m = geographic_pixel_m(transform, prob.shape[1], prob.shape[0])
        aoi = gpd.GeoSeries([strip], crs=crs).to_crs(utm).iloc[0]
        gt_lines = [g.difference(aoi) for g in vegas_gt.to_crs(utm).geometry]
        gt_lines = [g for g in gt_lines if not g.is_empty]
        row = {"case": "prediction", "image": "spacenet_apls/Vegas img0"}
        row.update(run_variants(prob, gsd_m=(row_m, col_m), transform=transform, crs=crs,
                                to_crs=utm, gt_lines=gt_lines))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean of every score per (case, data set) and repair setting."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        data = "SpaceNet" if r["image"].startswith("spacenet") else "Massachusetts"
        groups.setdefault((r["case"], data), []).append(r)
    table = []
    for (case, data), items in groups.items():
        entry = {"case": case, "data": data, "n": len(items)}
        for setting in ("off", "on"):
            keys = [k for k in items[0][setting] if k != "bridged"]
            entry[setting] = {k: round(float(np.mean([i[setting][k] for i in items])), 3)
                              for k in keys}
            entry[setting]["bridged"] = int(sum(i[setting]["bridged"] for i in items))
        table.append(entry)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/roadx-eval-topology"))
    ap.add_argument("--predict-only", action="store_true")
    ap.add_argument("--no-predict", action="store_true", help="use only cached predictions")
    ap.add_argument("--limit", type=int, default=0, help="first N Massachusetts images")
    ap.add_argument("--tta", default="d4")
    ap.add_argument("--gaps-per-km", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["spacenet", "massachusetts"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not args.no_predict:
        cache_predictions(args.cache, args.limit, args.tta)
    if args.predict_only:
        return
    rows = []
    if args.only != "massachusetts":
        rows += spacenet_cases(args.cache, args.gaps_per_km, args.seed)
    if args.only != "spacenet":
        rows += massachusetts_cases(args.cache, args.limit, args.gaps_per_km, args.seed)
    result = {"gaps_per_km": args.gaps_per_km, "seed": args.seed,
              "summary": summarise(rows), "rows": rows}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
