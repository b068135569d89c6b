"""Benchmark ``roadx predict`` on generated scenes: throughput, peak memory, overhead.

For each size (default 4096² and 16384 × 4096 pixels at 1 m) it builds an aerial-looking
scene by mirroring the synthetic example scene (``examples/make_example_scene.py``) into a
tiled, compressed UTM GeoTIFF, then runs the full pipeline (read → tiles → model → stitch →
vectorize → write GPKG, plus the probability GeoTIFF) in a *fresh process* and prints:

- windows/s and km²/h,
- peak RSS of that process (``ru_maxrss``),
- ``forward_only_s``: the model's forward passes of the same windows (same batch shapes,
  precision and memory format, every call) timed alone after the run, and
  ``e2e_over_forward``, the
  end-to-end wall time over it (target ≤ 1.15 on CPU: reading, TTA, stitching, vectorizing
  and writing overlap with the model or cost little);
- ``outside_forward_share``: the share of wall time not inside the model's forward calls.

Pipeline ceiling (``--ceiling``): a zero-cost stand-in for the network whose "logits" are the
scene's own pixels, on scenes made of *burned road masks* of the example's centrelines
(soft-edged, at ``--gsd 0.5`` m), so the vectorizer has real roads to trace (a suburb:
~4.8 km of road per km²) while the model costs nothing. It prints km²/h and km²/h per CPU
core — what a machine can feed at most. Target: ≥ 2,000 km²/h per core at 0.5 m.

Targets (issues "roadx predict" and speed): peak RSS flat in scene height (16384 × 4096
within 1.25 × of 4096²) and under 3 GiB for d3fnet34 on CPU.

Usage::

    python benchmarks/bench_predict.py [--sizes 4096 16384x4096] [--weights W|no-roads]
        [--tta none] [--precision auto] [--sequential] [--workdir /tmp/roadx-bench]
    python benchmarks/bench_predict.py --ceiling [--sizes 8192 16384] [--gsd 0.5]

Weights default to the shipped ``weights/d3fnet34.safetensors`` (or a randomly initialised
d3fnet34 when that is absent: same cost, different roads). ``--weights no-roads`` swaps the
network for a stand-in that finds no road, so the memory and time of the raster path around
the model — reading, batching, stitching, probability writing, vectorizer bands — can be
measured on large scenes in minutes rather than CPU-hours (the road graph itself grows with
the number of roads found, not with the scene size).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _example(workdir: Path, size_px: int, gsd_m: float) -> Path:
    """The synthetic example scene (and its centrelines) at ``gsd_m``, generated once."""
    folder = workdir / f"example_{size_px}_{gsd_m:g}"
    if not (folder / "synthetic_scene.tif").exists():
        subprocess.run(
            [sys.executable, str(REPO / "examples" / "make_example_scene.py"), str(folder),
             "--size", str(size_px), "--gsd", str(gsd_m)],
            check=True, capture_output=True,
        )
    return folder


def _mirror(path: Path, tile: np.ndarray, crs: object, gsd_m: float, height_px: int,
            width_px: int) -> None:
    """Write a ``height × width`` uint8 GeoTIFF tiled with mirrored copies of ``tile``."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    n = tile.shape[1]
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": tile.shape[0], "width": width_px,
        "height": height_px, "crs": crs,
        "transform": Affine(gsd_m, 0, 330000.0, 0, -gsd_m, 4700000.0),
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


def make_scene(path: Path, height_px: int, width_px: int, workdir: Path,
               gsd_m: float = 1.0) -> None:
    """Write a ``height_px × width_px`` uint8 RGB UTM scene at ``gsd_m`` by mirroring the
    example scene generated at that GSD (about 1 km across)."""
    import rasterio

    size = int(round(1024 / gsd_m))
    with rasterio.open(_example(workdir, size, gsd_m) / "synthetic_scene.tif") as src:
        _mirror(path, src.read(), src.crs, gsd_m, height_px, width_px)


def make_mask_scene(path: Path, height_px: int, width_px: int, gsd_m: float,
                    workdir: Path) -> None:
    """A road-probability-looking scene: the example's centrelines burned at their width,
    with soft (Gaussian) edges, 0–255 in every band, mirrored to the requested size."""
    import geopandas as gpd
    import rasterio
    import rasterio.features
    from scipy import ndimage

    size = int(round(1024 / gsd_m))  # the example covers ~1 km at any GSD
    folder = _example(workdir, size, gsd_m)
    with rasterio.open(folder / "synthetic_scene.tif") as src:
        transform, crs, shape = src.transform, src.crs, (src.height, src.width)
    lines = gpd.read_file(folder / "synthetic_centrelines.gpkg")
    shapes = [(g.buffer(w / 2), 1) for g, w in zip(lines.geometry, lines["width_m"])]
    mask = rasterio.features.rasterize(shapes, out_shape=shape, transform=transform,
                                       dtype="uint8")
    soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma=1.5 / gsd_m)
    band = np.clip(soft * 255, 0, 255).astype(np.uint8)
    _mirror(path, np.stack([band] * 3), crs, gsd_m, height_px, width_px)


class NoRoads:
    """Stand-in for the network: constant negative logits, i.e. no road anywhere."""

    def __new__(cls):  # type: ignore[no-untyped-def]
        import torch

        class _NoRoads(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.full_like(x[:, :1], -8.0)

        return _NoRoads().eval()


class PixelsAreProbabilities:
    """Zero-cost stand-in: logits = 12 × (first channel − 0.5) of a 0–1 scaled mask scene."""

    def __new__(cls):  # type: ignore[no-untyped-def]
        import torch

        class _Pixels(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return 12.0 * (x[:, :1] - 0.5)

        return _Pixels().eval()


def run_one(scene: Path, weights: str, args: argparse.Namespace, out_dir: Path) -> dict:
    """Run extract on ``scene`` in this process and return the measured figures."""
    import dataclasses
    from collections import Counter

    import torch

    import roadx.models
    from roadx.pipeline import ExtractOptions, extract
    from roadx.predict import PredictOptions
    from roadx.runtime import choose_precision

    forward_s = 0.0
    shapes: Counter[tuple[int, ...]] = Counter()
    models: list[torch.nn.Module] = []
    original_load = roadx.models.load_checkpoint
    stand_in_model = weights in ("no-roads", "ceiling")
    if stand_in_model:
        card = roadx.models.get_card("d3fnet34")
        if weights == "ceiling":
            card = dataclasses.replace(card, gsd_m=args.gsd,
                                       bands=roadx.models.uniform_bands(card.band_names, 1 / 255,
                                                                        0.0))
        stand_in = NoRoads if weights == "no-roads" else PixelsAreProbabilities

        def original_load(path: Path, *, device: str = "cpu"):  # type: ignore[no-untyped-def]
            return stand_in(), card

        weights = __file__  # any existing file: extract checks that it exists

    def timed_load(path: Path, *, device: str = "cpu"):  # type: ignore[no-untyped-def]
        model, card = original_load(path, device=device)
        start: list[float] = []

        def pre(_m: torch.nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            shapes[tuple(inp[0].shape)] += 1
            start.append(time.perf_counter())

        def post(_m: torch.nn.Module, _inp: object, _out: object) -> None:
            nonlocal forward_s
            forward_s += time.perf_counter() - start.pop()

        model.register_forward_pre_hook(pre)
        model.register_forward_hook(post)
        models.append(model)
        return model, card

    roadx.models.load_checkpoint = timed_load  # type: ignore[assignment]
    out = out_dir / f"{scene.stem}.gpkg"
    prob = out_dir / f"{scene.stem}_prob.tif"
    options = PredictOptions(tta=args.tta, batch_size=args.batch_size, precision=args.precision)
    t0 = time.perf_counter()
    result = extract(
        scene, out,
        options=ExtractOptions(
            weights=Path(weights), probability_path=prob, overwrite=True, predict=options,
            concurrent=not args.sequential,
        ),
    )
    wall = time.perf_counter() - t0
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    row = {
        "scene_px": f"{result.width_px}x{result.height_px}",
        "gsd_m": result.gsd_m,
        "area_km2": result.area_km2,
        "windows": result.windows,
        "precision": result.precision,
        "concurrent": not args.sequential,
        "wall_s": round(wall, 1),
        "windows_per_s": round(result.windows / wall, 3),
        "km2_per_h": round(result.area_km2 / (wall / 3600), 1),
        "km2_per_h_per_core": round(result.area_km2 / (wall / 3600) / (os.cpu_count() or 1), 1),
        "peak_rss_gib": round(rss_gib, 3),
        "forward_in_run_s": round(forward_s, 1),
        "outside_forward_share": round(1 - forward_s / wall, 4),
        "roads": result.roads,
        "total_km": result.total_km,
    }
    if args.forward_only and not stand_in_model and models:
        # the same forward calls again, alone: same shapes, precision and memory format
        model = models[0]
        device = next(model.parameters()).device
        policy = choose_precision(args.precision, device)
        alone = 0.0
        with torch.inference_mode(), policy.autocast(device):
            for shape, count in shapes.items():
                x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
                model(x)  # warm-up (the hooks count it; the counter is not read again)
                t = time.perf_counter()
                for _ in range(count):  # every call again: a few samples are too noisy here
                    model(x)
                alone += time.perf_counter() - t
        row["forward_only_s"] = round(alone, 1)
        row["e2e_over_forward"] = round(wall / alone, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=None,
        help="scene sizes: N for N×N, or HxW (e.g. 16384x4096, a tall scene); default "
        "4096 16384x4096 (model) or 8192 16384 (--ceiling)",
    )
    parser.add_argument("--weights", default=None)
    parser.add_argument("--tta", default="none", choices=["none", "flip", "d4"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--sequential", action="store_true",
                        help="vectorize/write in the model's thread (the concurrent path's twin)")
    parser.add_argument("--ceiling", action="store_true",
                        help="pipeline ceiling: zero-cost stand-in on burned road-mask scenes")
    parser.add_argument("--gsd", type=float, default=0.5, help="GSD of --ceiling scenes (m)")
    parser.add_argument("--no-forward-only", dest="forward_only", action="store_false")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/roadx-bench"))
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    if args.run is not None:
        print(json.dumps(run_one(args.run, args.weights, args, args.workdir)))
        return

    import torch

    from roadx.runtime import cpu_bf16_features

    sizes = args.sizes or (["8192", "16384"] if args.ceiling else ["4096", "16384x4096"])
    weights = "ceiling" if args.ceiling else (args.weights or
                                              str(REPO / "weights" / "d3fnet34.safetensors"))
    if weights not in ("no-roads", "ceiling") and not Path(weights).exists():
        from roadx.models import create_model, get_card, save_checkpoint

        torch.manual_seed(0)
        weights = str(args.workdir / "d3fnet34-random.safetensors")
        save_checkpoint(weights, create_model("d3fnet34"), card=get_card("d3fnet34"),
                        model_kwargs={})
        print(f"(no shipped weights: using random d3fnet34 weights {weights})", file=sys.stderr)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_bf16_features() or 'no'}",
        "torch_threads": torch.get_num_threads(), "weights": weights, "tta": args.tta,
    }), flush=True)
    rows = []
    for size in sizes:
        height, _, width = size.partition("x")
        h, w = int(height), int(width or height)
        if args.ceiling:
            scene = args.workdir / f"mask_{size}_{args.gsd:g}m.tif"
            if not scene.exists():
                make_mask_scene(scene, h, w, args.gsd, args.workdir)
        else:
            scene = args.workdir / f"scene_{size}.tif"
            if not scene.exists():
                make_scene(scene, h, w, args.workdir)
        command = [sys.executable, __file__, "--run", str(scene), "--weights", weights,
                   "--tta", args.tta, "--batch-size", str(args.batch_size), "--precision",
                   args.precision, "--gsd", str(args.gsd), "--workdir", str(args.workdir)]
        command += ["--sequential"] if args.sequential else []
        command += [] if args.forward_only else ["--no-forward-only"]
        proc = subprocess.run(command, check=True, capture_output=True, text=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps({"size_px": size, **row}), flush=True)
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_gib"] / rows[0]["peak_rss_gib"]
        print(f"peak RSS ratio {sizes[-1]} / {sizes[0]}: {ratio:.3f}")
    if args.ceiling:
        best = max(r["km2_per_h_per_core"] for r in rows)
        print(f"pipeline ceiling: {best:,.0f} km²/h per core at {args.gsd:g} m (target ≥ 2,000)")
    elif all("e2e_over_forward" in r for r in rows):
        worst = max(r["e2e_over_forward"] for r in rows)
        print(f"end-to-end / forward-only: at most {worst:.3f} (target ≤ 1.15)")


if __name__ == "__main__":
    main()
