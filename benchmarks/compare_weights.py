"""Do two checkpoints of one architecture predict the same roads? (e.g. int8 vs float16 storage)

For each held-out Massachusetts image (the list the default weights were validated on; data
read in place from $ROADX_DATA or ../shared/data): both checkpoints run through
roadx.predict.predict_scene on the same 1 m scene (1024 px windows, 256 px overlap, cosine
blend, the TTA given), road = p >= 0.5 against the mask on valid pixels. Prints per image and
dataset-level IoU/F1 of each checkpoint, the largest and mean |p_A - p_B|, and the IoU of the
two road maps with each other, as JSON.

usage: python benchmarks/compare_weights.py A.safetensors B.safetensors VAL_LIST [--tta none]
       [--limit N] [--out FILE.json] [--thresholds 0.5,0.6,0.7]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from roadx.io.samples import read_labelled_pair
from roadx.metrics import Confusion, confusion
from roadx.models import load_checkpoint
from roadx.predict import PredictOptions
from roadx.train.datasets import discover_samples, read_val_list, split_samples

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_default_weights import DATA, FOLDERS, predict_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("val_list")
    ap.add_argument("--tta", default="none")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--thresholds", default="0.5",
                    help="comma-separated road thresholds; dataset-level IoU/F1 of both "
                         "checkpoints at each (the per-image rows use the first)")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    sweep = {t: [Confusion(), Confusion()] for t in thresholds}
    models = [load_checkpoint(args.a), load_checkpoint(args.b)]
    samples = discover_samples([DATA / f for f in FOLDERS])
    _, val = split_samples(samples, val_ids=read_val_list(args.val_list))
    val = val[: args.limit] if args.limit else val
    options = PredictOptions(tta=args.tta, device="cpu", batch_size=1)
    totals, agree, rows = [Confusion(), Confusion()], Confusion(), []
    max_diff, diff_sum, diff_n = 0.0, 0.0, 0
    for s in val:
        t0 = time.perf_counter()
        probs = [predict_image(s.image, m, c, options) for m, c in models]
        truth = read_labelled_pair(s.image, s.labels[0], source_gsd_m=1.0, target_gsd_m=1.0)
        valid = truth.valid & np.isfinite(probs[0]) & np.isfinite(probs[1])
        for t in thresholds:
            sweep[t] = [acc + confusion(np.nan_to_num(p) >= t, truth.road, valid)
                        for acc, p in zip(sweep[t], probs)]
        roads = [np.nan_to_num(p) >= thresholds[0] for p in probs]
        conf = [confusion(r, truth.road, valid) for r in roads]
        totals = [t + c for t, c in zip(totals, conf)]
        agree = agree + confusion(roads[1], roads[0], valid)
        diff = np.abs(probs[0] - probs[1])[valid]
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
        diff_sum, diff_n = diff_sum + float(diff.sum()), diff_n + diff.size
        row = {"image": f"{s.source.name}/{s.image.name}", "iou_a": round(conf[0].iou, 4),
               "iou_b": round(conf[1].iou, 4), "max_abs_dp": round(float(diff.max(initial=0)), 4),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {
        "a": args.a, "b": args.b, "tta": args.tta, "images": len(rows),
        "dataset_level_a": totals[0].to_dict(), "dataset_level_b": totals[1].to_dict(),
        "iou_b_minus_a": round(totals[1].iou - totals[0].iou, 5),
        "road_map_iou_a_vs_b": round(agree.iou, 5),
        "max_abs_dp": round(max_diff, 5), "mean_abs_dp": round(diff_sum / max(diff_n, 1), 6),
        "threshold_sweep": {
            str(t): {"iou_a": round(a.iou, 4), "f1_a": round(a.f1, 4),
                     "iou_b": round(b.iou, 4), "f1_b": round(b.f1, 4)}
            for t, (a, b) in sweep.items()
        },
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
