"""Benchmark ``roadx predict`` on generated scenes: throughput, peak memory, overhead.

For each size (default 4096² and 16384² pixels at 1 m) it builds an aerial-looking scene by
mirroring the synthetic example scene (``examples/make_example_scene.py``) into a tiled,
compressed UTM GeoTIFF, then runs the full pipeline (read → tiles → model → stitch →
vectorize → write GPKG, plus the probability GeoTIFF) in a *fresh process* and prints:

- windows/s and km²/h,
- peak RSS of that process (``ru_maxrss``),
- the share of wall time spent outside the model's forward pass (reading, scaling, TTA,
  stitching, vectorizing, writing).

Targets (issue "roadx predict"): peak RSS at 16384² ≤ 1.25 × peak RSS at 4096², and under
3 GiB for d3fnet34 on CPU; time outside the forward pass ≤ 10 % of the total.

Usage::

    python benchmarks/bench_predict.py [--sizes 4096 16384 16384x4096] [--weights W|no-roads]
        [--tta none] [--workdir /tmp/roadx-bench]

Weights default to the shipped ``weights/d3fnet34.safetensors`` (or a randomly initialised
d3fnet34 when that is absent: same cost, different roads). ``--weights no-roads`` swaps the
network for a stand-in that finds no road, so the memory and time of the raster path around
the model — reading, batching, stitching, probability writing, vectorizer bands — can be
measured on large scenes in minutes rather than CPU-hours (the road graph itself grows with
the number of roads found, not with the scene size).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_scene(path: Path, height_px: int, width_px: int, workdir: Path) -> None:
    """Write a ``height_px × width_px`` uint8 RGB UTM scene at 1 m by mirroring the example."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    example = workdir / "example" / "synthetic_scene.tif"
    if not example.exists():
        subprocess.run(
            [sys.executable, str(REPO / "examples" / "make_example_scene.py"),
             str(example.parent), "--size", "1024"],
            check=True, capture_output=True,
        )
    with rasterio.open(example) as src:
        tile = src.read()  # (3, 1024, 1024)
        crs = src.crs
    n = tile.shape[1]
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": 3, "width": width_px, "height": height_px,
        "crs": crs, "transform": Affine(1.0, 0, 330000.0, 0, -1.0, 4700000.0),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, height_px, n):
            for c in range(0, width_px, n):
                block = tile
                if (r // n) % 2:
                    block = block[:, ::-1, :]
                if (c // n) % 2:
                    block = block[:, :, ::-1]
                h, w = min(n, height_px - r), min(n, width_px - c)
                dst.write(np.ascontiguousarray(block[:, :h, :w]), window=Window(c, r, w, h))


class NoRoads:
    """Stand-in for the network: constant negative logits, i.e. no road anywhere."""

    def __new__(cls):  # type: ignore[no-untyped-def]
        import torch

        class _NoRoads(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.full_like(x[:, :1], -8.0)

        return _NoRoads().eval()


def run_one(scene: Path, weights: Path, tta: str, batch_size: int, out_dir: Path) -> dict:
    """Run extract on ``scene`` in this process and return the measured figures."""
    import torch

    import roadx.models
    from roadx.pipeline import ExtractOptions, extract
    from roadx.predict import PredictOptions

    forward_s = 0.0
    original_load = roadx.models.load_checkpoint
    if str(weights) == "no-roads":
        stand_in_card = roadx.models.get_card("d3fnet34")

        def original_load(path: Path, *, device: str = "cpu"):  # type: ignore[no-untyped-def]
            return NoRoads(), stand_in_card

        weights = Path(__file__)  # any existing file: extract checks that it exists

    def timed_load(path: Path, *, device: str = "cpu"):  # type: ignore[no-untyped-def]
        model, card = original_load(path, device=device)
        start: list[float] = []

        def pre(_m: torch.nn.Module, _inp: object) -> None:
            start.append(time.perf_counter())

        def post(_m: torch.nn.Module, _inp: object, _out: object) -> None:
            nonlocal forward_s
            forward_s += time.perf_counter() - start.pop()

        model.register_forward_pre_hook(pre)
        model.register_forward_hook(post)
        return model, card

    roadx.models.load_checkpoint = timed_load  # type: ignore[assignment]
    out = out_dir / f"{scene.stem}.gpkg"
    prob = out_dir / f"{scene.stem}_prob.tif"
    t0 = time.perf_counter()
    result = extract(
        scene, out,
        options=ExtractOptions(
            weights=weights, probability_path=prob, overwrite=True,
            predict=PredictOptions(tta=tta, batch_size=batch_size),
        ),
    )
    wall = time.perf_counter() - t0
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    return {
        "scene_px": f"{result.width_px}x{result.height_px}",
        "windows": result.windows,
        "wall_s": round(wall, 1),
        "windows_per_s": round(result.windows / wall, 3),
        "km2_per_h": round(result.area_km2 / (wall / 3600), 2),
        "peak_rss_gib": round(rss_gib, 3),
        "forward_s": round(forward_s, 1),
        "outside_forward_share": round(1 - forward_s / wall, 4),
        "roads": result.roads,
        "total_km": result.total_km,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["4096", "16384"],
        help="scene sizes: N for N×N, or HxW (e.g. 16384x4096, a tall scene)",
    )
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--tta", default="none", choices=["none", "flip", "d4"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/roadx-bench"))
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    if args.run is not None:
        print(json.dumps(run_one(args.run, args.weights, args.tta, args.batch_size, args.workdir)))
        return

    weights = args.weights or REPO / "weights" / "d3fnet34.safetensors"
    if str(weights) != "no-roads" and not weights.exists():
        import torch

        from roadx.models import create_model, get_card, save_checkpoint

        torch.manual_seed(0)
        weights = args.workdir / "d3fnet34-random.safetensors"
        save_checkpoint(weights, create_model("d3fnet34"), card=get_card("d3fnet34"),
                        model_kwargs={})
        print(f"(no shipped weights: using random d3fnet34 weights {weights})", file=sys.stderr)
    rows = []
    for size in args.sizes:
        height, _, width = size.partition("x")
        scene = args.workdir / f"scene_{size}.tif"
        if not scene.exists():
            make_scene(scene, int(height), int(width or height), args.workdir)
        proc = subprocess.run(
            [sys.executable, __file__, "--run", str(scene), "--weights", str(weights),
             "--tta", args.tta, "--batch-size", str(args.batch_size),
             "--workdir", str(args.workdir)],
            check=True, capture_output=True, text=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps({"size_px": size, **row}), flush=True)
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_gib"] / rows[0]["peak_rss_gib"]
        print(f"peak RSS ratio {args.sizes[-1]} / {args.sizes[0]}: {ratio:.3f} (target ≤ 1.25)")
    worst = max(r["outside_forward_share"] for r in rows)
    print(f"largest share of time outside the forward pass: {worst:.1%} (target ≤ 10 %)")


if __name__ == "__main__":
    main()
