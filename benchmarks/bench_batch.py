"""km²/h of a batch: the local backend vs Ray with 1 and 2 worker processes, and Ray's
overhead on a single scene.

Runs ``roadx.predict_many`` on real scenes from ``../shared/data`` (SpaceNet Atlanta and
the three Rotterdam tiles, UTM, resampled to the model's 1 m; the single-scene figures use a
4 x 4 mosaic of mirrored Atlanta copies, 1800 x 1800 px at 1 m, written to a temporary
folder) with the shipped d3fnet34
weights (``--weights`` to change), ``--tta none``, 256 px windows (so a scene has several
rows of windows, i.e. several stripes), on the CPU. Every configuration uses one torch
thread per model copy, so "Ray, 2 workers" uses two cores and "local" one; "local, 2
threads" is the fair one-process comparison.

Ray figures are given twice: with the start of a local Ray instance and of the actors (one
model load per worker) included, and the steady state inside the started backend (what a
long batch on a running cluster sees). Scenes run as ``predict_many(backend="ray")`` runs
them (``RayBackend.extract``, two scenes in flight); index.json writing is left out.

Usage::

    flock /tmp/roadx-heavy.lock python benchmarks/bench_batch.py --out /tmp/bench_batch.json

Prints a Markdown table and writes the figures as JSON.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENES = ["spacenet_solaris/sample_geotiff.tif",
          "spacenet_solaris/preproc_tutorial/pan1.tif",
          "spacenet_solaris/preproc_tutorial/pan2.tif",
          "spacenet_solaris/preproc_tutorial/pan3.tif"]


def run_local(scenes: list[Path], options, threads: int) -> dict:
    from roadx.batch import predict_many
    from roadx.pipeline import with_settings

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        batch = predict_many(scenes, out, options=with_settings(options, {"threads": threads}))
        seconds = time.perf_counter() - start
    assert batch.ok == len(scenes), batch.scenes
    area = sum(r.area_km2 for r in batch.scenes)
    return {"seconds": round(seconds, 2), "km2": round(area, 4),
            "km2_per_h": round(area / seconds * 3600, 2)}


def run_ray(scenes: list[Path], options, workers: int, *, stripe_rows: int | None) -> dict:
    """Start a local Ray instance with the actors (model loads), then run the scenes as
    ``predict_many(backend="ray")`` does (two scenes in flight, ``RayBackend.extract``)."""
    from roadx.pipeline import with_settings
    from roadx.ray_backend import RayBackend, RayOptions

    options = with_settings(options, {"threads": 1})
    ray_options = RayOptions(workers=workers, num_cpus=workers, stripe_rows=stripe_rows,
                             object_store_bytes=200 * 2**20)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        with RayBackend(options, ray_options) as backend:
            started = time.perf_counter() - start
            start = time.perf_counter()
            with ThreadPoolExecutor(ray_options.scenes_in_flight) as pool:
                results = list(pool.map(
                    lambda s: backend.extract(s, Path(out) / f"{s.stem}.gpkg"), scenes))
            steady = time.perf_counter() - start
            line = backend.progress.line()
    area = sum(r.area_km2 for r in results)
    whole = started + steady
    return {"seconds": round(whole, 2), "km2": round(area, 4),
            "km2_per_h": round(area / whole * 3600, 2),
            "startup_seconds": round(started, 2), "steady_seconds": round(steady, 2),
            "steady_km2_per_h": round(area / steady * 3600, 2), "cluster": line}


def big_scene(source: Path, path: Path) -> Path:
    """A 4 x 4 mosaic of mirrored copies of ``source`` (same CRS and pixel size), written to
    ``path`` (a temporary file: never keep derivatives of the shared data)."""
    import numpy as np
    import rasterio

    with rasterio.open(source) as src:
        image, profile = src.read(), src.profile
        t = src.transform
    row = np.concatenate([image, image[:, :, ::-1]] * 2, axis=2)
    tiles = np.concatenate([row, row[:, ::-1, :]] * 2, axis=1)
    profile.update(height=tiles.shape[1], width=tiles.shape[2], tiled=True, blockxsize=256,
                   blockysize=256, transform=rasterio.Affine(t.a, t.b, t.c, t.d, t.e, t.f))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(tiles)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "ROADX_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint (default: the shipped d3fnet34 weights)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()

    from roadx.pipeline import ExtractOptions, with_settings

    scenes = [args.data / s for s in SCENES]
    options = with_settings(ExtractOptions(weights=args.weights),
                            {"tile_px": args.tile, "overlap_px": args.overlap, "tta": "none",
                             "device": "cpu", "precision": "fp32"})
    figures: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                                f"{os.cpu_count()} CPUs", "python": sys.version.split()[0],
                     "tile": args.tile, "overlap": args.overlap, "scenes": SCENES}
    print("batch of", len(scenes), "scenes", file=sys.stderr)
    figures["batch"] = {
        "local, 1 thread": run_local(scenes, options, 1),
        "local, 2 threads": run_local(scenes, options, 2),
        "ray, 1 worker": run_ray(scenes, options, 1, stripe_rows=None),
        "ray, 2 workers": run_ray(scenes, options, 2, stripe_rows=None),
    }
    print("single scene", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        single = [big_scene(args.data / SCENES[0], Path(tmp) / "atlanta_4x4.tif")]
        local = run_local(single, options, 1)
        remote = run_ray(single, options, 1, stripe_rows=None)
        remote2 = run_ray(single, options, 2, stripe_rows=None)
    figures["single"] = {
        "local, 1 thread": local, "ray, 1 worker": remote, "ray, 2 workers": remote2,
        "overhead_whole_pct": round(100 * (remote["seconds"] / local["seconds"] - 1), 1),
        "overhead_steady_pct": round(100 * (remote["steady_seconds"] / local["seconds"] - 1),
                                     1),
    }
    rows = ["| run | scenes | km² | wall s | km²/h | Ray start s | steady km²/h |",
            "|---|---|---|---|---|---|---|"]
    for group, runs in (("batch", figures["batch"]), ("single", figures["single"])):
        for name, r in runs.items():
            if not isinstance(r, dict):
                continue
            rows.append(f"| {name} | {len(scenes) if group == 'batch' else '1 (4x4 mosaic)'} | "
                        f"{r['km2']} | "
                        f"{r['seconds']} | {r['km2_per_h']} | {r.get('startup_seconds', '')} | "
                        f"{r.get('steady_km2_per_h', '')} |")
    print("\n".join(rows))
    print(f"Ray overhead on one scene: {figures['single']['overhead_whole_pct']} % with "
          f"Ray start-up, {figures['single']['overhead_steady_pct']} % in a started backend")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
