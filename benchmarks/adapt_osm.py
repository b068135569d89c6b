"""Adapting the default weights to a new area with OSM-style labels, measured honestly.

The held-out SpaceNet Las Vegas tile (``RGB-PanSharpen_AOI_2_Vegas_img0``, 0.3 m, 390 m square,
hand-drawn SpaceNet centrelines) is cut in two: the **west half** is the user's area with
labels as OpenStreetMap gives them — a share of the lines dropped (``--drop``, default 30 %)
and every remaining line shifted by ``--offset-m`` (default 3 m) in a random direction — and
the **east half** is scored against the complete, unshifted SpaceNet lines (watermark strip
left out). For each variant the command a user would run is run:

    roadx train --data WEST --init weights/d3fnet34.safetensors --gsd 1 --loss {dice_bce,osm} ...
    roadx predict EAST -o roads.gpkg --weights runs/.../last.safetensors
    roadx eval roads.gpkg EAST_TRUTH.geojson --ignore watermarks

and pixel IoU (against the truth buffered to 4 m), CCQ (3 m) and APLS are printed as JSON,
with the fine-tune's wall time. Images and labels are written to ``--work`` (default
``/tmp/roadx-adapt``), never into the repository.

usage: python benchmarks/adapt_osm.py [--epochs 4] [--samples 96] [--variants none,dice_bce,osm]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.windows import Window
from shapely.affinity import translate
from shapely.geometry import box

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("ROADX_DATA", HERE.parents[1] / "shared" / "data"))
SCENE = DATA / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
TRUTH = DATA / "spacenet_apls" / "AOI_2_Vegas_img0_roads_gt.geojson"
WATERMARK_FIRST_ROW = 1160


def split_scene(work: Path, drop: float, offset_m: float, seed: int) -> dict[str, Path]:
    """Write the west half with OSM-style labels and the east half with its true lines."""
    work.mkdir(parents=True, exist_ok=True)
    truth = gpd.read_file(TRUTH)
    rng = np.random.default_rng(seed)
    paths: dict[str, Path] = {}
    with rasterio.open(SCENE) as src:
        half = src.width // 2
        for name, window in (("west", Window(0, 0, half, src.height)),
                             ("east", Window(half, 0, src.width - half, src.height))):
            folder = work / name
            folder.mkdir(exist_ok=True)
            profile = src.profile | {"width": window.width, "height": window.height,
                                     "transform": src.window_transform(window)}
            scene = folder / f"vegas_{name}.tif"
            with rasterio.open(scene, "w", **profile) as dst:
                dst.write(src.read(window=window))
            bounds = rasterio.windows.bounds(window, src.transform)
            lines = truth.clip(box(*bounds)).explode(index_parts=False)
            lines = lines[~lines.geometry.is_empty & (lines.geom_type == "LineString")]
            if name == "west":  # OSM-style: incomplete and shifted
                keep = rng.random(len(lines)) >= drop
                lines = lines[keep].copy()
                deg_per_m_lat = 1 / 111_320
                deg_per_m_lon = deg_per_m_lat / np.cos(np.radians(box(*bounds).centroid.y))
                angles = rng.uniform(0, 2 * np.pi, len(lines))
                lines["geometry"] = [
                    translate(g, offset_m * np.cos(a) * deg_per_m_lon,
                              offset_m * np.sin(a) * deg_per_m_lat)
                    for g, a in zip(lines.geometry, angles)
                ]
            lines[["geometry"]].to_file(folder / f"vegas_{name}.geojson", driver="GeoJSON")
            paths[name] = scene
        left, top = src.transform * (half, WATERMARK_FIRST_ROW)
        right, bottom = src.transform * (src.width, src.height)
    strip = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    paths["ignore"] = work / "watermarks.geojson"
    gpd.GeoDataFrame(geometry=[strip], crs=truth.crs).to_file(paths["ignore"])
    return paths


def roadx(*args: str) -> str:
    """Run the roadx CLI; return stdout (raises with stderr on failure)."""
    proc = subprocess.run([sys.executable, "-m", "roadx", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"roadx {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/roadx-adapt"))
    ap.add_argument("--variants", default="none,dice_bce,osm")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=96, help="crops per epoch")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--drop", type=float, default=0.3)
    ap.add_argument("--offset-m", type=float, default=3.0)
    ap.add_argument("--tta", default="flip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="score the weights of an earlier run in --work instead of training")
    args = ap.parse_args()
    paths = split_scene(args.work, args.drop, args.offset_m, args.seed)
    weights = HERE.parent / "weights" / "d3fnet34.safetensors"
    for variant in args.variants.split(","):
        started = time.perf_counter()
        tuned = weights
        run = args.work / f"run_{variant}"
        trained = variant != "none" and not (args.reuse and (run / "last.safetensors").exists())
        if trained:
            shutil.rmtree(run, ignore_errors=True)
            roadx("train", "--data", str(paths["west"].parent), "--format", "gis",
                  "--init", str(weights), "--gsd", "1", "--output", str(run),
                  "--val-fraction", "0", "--epochs", str(args.epochs),
                  "--samples-per-epoch", str(args.samples), "--crop", str(args.crop),
                  "--batch-size", "4", "--lr", str(args.lr), "--warmup-steps", "4",
                  "--loss", variant, "--device", "cpu", "--threads", str(args.threads),
                  "--seed", str(args.seed))
        if variant != "none":
            tuned = run / "last.safetensors"
        train_s = time.perf_counter() - started
        out, prob = args.work / f"roads_{variant}.gpkg", args.work / f"prob_{variant}.tif"
        if variant != "none" and not trained:
            train_s = float("nan")  # weights of an earlier run
        roadx("predict", str(paths["east"]), "-o", str(out), "--weights", str(tuned),
              "--prob", str(prob), "--tta", args.tta, "--overwrite", "--quiet")
        pixel = json.loads(roadx("eval", str(prob), str(paths["east"].with_suffix(".geojson")),
                                 "--image", str(paths["east"]), "--ignore",
                                 str(paths["ignore"]), "--no-topo", "--no-apls-tiles",
                                 "--json"))["pixel"]
        report = json.loads(roadx("eval", str(out), str(paths["east"].with_suffix(".geojson")),
                                  "--image", str(paths["east"]), "--ignore",
                                  str(paths["ignore"]), "--json"))
        print(json.dumps({
            "variant": variant, "train_s": round(train_s, 1),
            "ccq_3m": {k: round(report["ccq"][k], 3) for k in ("completeness", "correctness", "quality")},
            "apls": round(report["apls"]["apls"], 3),
            "pixel_iou": round(pixel["dataset"]["iou"], 3),
            "pixel_f1": round(pixel["dataset"]["f1"], 3),
            "pred_km": round(report["ccq"]["pred_length_m"] / 1000, 3),
            "truth_km": round(report["ccq"]["gt_length_m"] / 1000, 3),
        }), flush=True)


if __name__ == "__main__":
    main()
