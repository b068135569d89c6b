"""Quality bar of the default weights on the held-out Massachusetts tiles (data read in place from $ROADX_DATA or ../shared/data).

For each held-out Massachusetts image: roadx.io.open_scene (the inference decoder, 1 m/px) ->
roadx.predict.predict_scene (1024 px windows, 256 px overlap, d4 TTA, cosine blend) -> road =
p >= 0.5, compared with the mask on valid pixels (pure-white no-data excluded) through
roadx.metrics.confusion. Prints dataset-level and per-image-mean IoU/F1/precision/recall as JSON.

usage: python benchmarks/eval_default_weights.py WEIGHTS VAL_LIST [--tta d4] [--limit N] [--out FILE.json]
"""

import argparse
import os
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from roadx.io import open_scene
from roadx.io.samples import read_labelled_pair
from roadx.metrics import Confusion, confusion
from roadx.models import ModelCard, load_checkpoint
from roadx.predict import PredictOptions, predict_scene
from roadx.tiling import TileGrid
from roadx.train.datasets import discover_samples, read_val_list, split_samples

DATA = Path(os.environ.get("ROADX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FOLDERS = ["massachusetts_cskanani", "massachusetts_riya_l209", "massachusetts_parth1620", "massachusetts_lorudarku"]


def predict_image(
    path: Path, model: torch.nn.Module, card: "ModelCard", options: PredictOptions
) -> np.ndarray:
    """(H, W) float32 probability of a whole image at 1 m (1024 px windows, 256 px overlap),
    NaN = nodata."""
    optional = tuple(b.name for b in card.bands if b.optional)  # d3fnet34-mm: NIR absent
    with open_scene(path, gsd_m=1.0, band_order=card.band_names, optional=optional) as scene:
        grid = TileGrid(scene.height, scene.width, tile_px=1024, overlap_px=256)
        prob = np.full((scene.height, scene.width), np.nan, np.float32)
        for window, band in predict_scene(scene.read_window_aux, grid, model, card, options):
            prob[window.row_off : window.row_off + window.height] = band
    return prob


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("val_list")
    ap.add_argument("--tta", default="d4")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_checkpoint(args.weights)
    samples = discover_samples([DATA / f for f in FOLDERS])
    _, val = split_samples(samples, val_ids=read_val_list(args.val_list))
    if args.limit:
        val = val[: args.limit]
    options = PredictOptions(tta=args.tta, device="cpu", batch_size=1)
    rows, total = [], Confusion()
    for s in val:
        t0 = time.perf_counter()
        prob = predict_image(s.image, model, card, options)
        truth = read_labelled_pair(s.image, s.labels[0], source_gsd_m=1.0, target_gsd_m=1.0)
        valid = truth.valid & np.isfinite(prob)
        c = confusion(np.nan_to_num(prob) >= 0.5, truth.road, valid)
        total = total + c
        row = {"folder": s.source.name, "image": s.image.name, "valid_px": int(valid.sum()), **c.to_dict(),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    per_image = {k: float(np.mean([r[k] for r in rows])) for k in ("iou", "f1", "precision", "recall")}
    result = {"weights": args.weights, "tta": args.tta, "images": len(rows),
              "tiles": len({(s.source.name, s.tile_id) for s in val}),
              "dataset_level": total.to_dict(), "per_image_mean": per_image, "rows": rows}
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
