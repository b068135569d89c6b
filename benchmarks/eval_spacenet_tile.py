"""Quality bar of road weights on the held-out SpaceNet tile (data read in place from $ROADX_DATA or ../shared/data).

Runs what a user runs, through the library: ``roadx predict`` (roadx.pipeline.extract, d4 TTA by
default, the scene resampled to the card GSD) on ``spacenet_apls/RGB-PanSharpen_AOI_2_Vegas_img0.tif``,
then ``roadx eval`` (roadx.evaluation.evaluate) of the lines against the tile's 38 SpaceNet
ground-truth centrelines, with the burned-in watermarks (rows 1160-1300 of the tile, see
SOURCES.md) left out via ``--ignore``. Prints CCQ at a 3 m buffer (the issue's bar: correctness
>= 0.6) and at 8 m, APLS, and the line lengths, as JSON. Outputs go to a temporary folder.

usage: python benchmarks/eval_spacenet_tile.py [WEIGHTS] [--tta d4] [--keep DIR]
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import geopandas as gpd
import rasterio
from shapely.geometry import box

from roadx.evaluation import EvalParams, evaluate
from roadx.pipeline import ExtractOptions, extract
from roadx.predict import PredictOptions

DATA = Path(os.environ.get("ROADX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENE = DATA / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
TRUTH = DATA / "spacenet_apls" / "AOI_2_Vegas_img0_roads_gt.geojson"
WATERMARK_FIRST_ROW = 1160


def watermark_polygon(out: Path) -> Path:
    """Write the tile's watermark strip (rows 1160 to the bottom, full width) as a GeoJSON polygon."""
    with rasterio.open(SCENE) as ds:
        left, top = ds.transform * (0, WATERMARK_FIRST_ROW)
        right, bottom = ds.transform * (ds.width, ds.height)
        crs = ds.crs
    strip = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    gpd.GeoDataFrame({"what": ["watermarks"]}, geometry=[strip], crs=crs).to_file(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", nargs="?", default=None, help="default: the shipped weights")
    ap.add_argument("--tta", default="d4")
    ap.add_argument("--keep", type=Path, help="keep roads.gpkg and prob.tif in this folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        options = ExtractOptions(
            weights=Path(args.weights) if args.weights else None,
            probability_path=out_dir / "prob.tif", overwrite=True,
            predict=PredictOptions(tta=args.tta),
        )
        roads = out_dir / "roads.gpkg"
        extract(SCENE, roads, options=options)
        ignore = watermark_polygon(Path(tmp) / "watermarks.geojson")
        result = {"weights": args.weights or "shipped default", "tta": args.tta}
        for buffer_m in (3.0, 8.0):
            report = evaluate(roads, TRUTH, params=EvalParams(buffer_m=buffer_m), image=SCENE,
                              ignore=ignore).to_dict()
            result[f"ccq_{buffer_m:g}m"] = report["ccq"]
            if buffer_m == 3.0:
                result["apls"] = report["apls"]
                result["summary"] = report["summary"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
