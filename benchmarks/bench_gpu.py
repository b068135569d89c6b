"""GPU benchmark, prepared to run in one call (< 8 min) on a lent GPU machine.

1. Forward only: d3fnet34 (and dlinknet34) at 1024², batch ``--batch``, channels-last, in the
   precision roadx picks (bf16 on Ampere and newer) and in fp32; achieved TFLOP/s and its share
   of the GPU's dense bf16 peak (MFU, ``--peak-tflops``, default from the GPU name).
2. End to end: ``roadx predict`` (roadx.pipeline.extract) with d4 TTA on a generated
   16384² scene at 0.5 m (67 km², processed at 0.5 m: no resampling), probability GeoTIFF and
   GeoPackage written; km²/h, windows/s, and GPU utilisation sampled by ``nvidia-smi`` every
   0.5 s over the run (mean and median). Repeated with the sequential consumer for comparison.

Targets (speed issue): ≥ 20,000 km²/h end to end with d4 on one H100 (CRESI reports ~160 km²/h
per GPU); forward ≥ 40 % MFU.

Usage (on the GPU machine; the end-to-end part needs rasterio, geopandas, scikit-image, skan)::

    python benchmarks/bench_gpu.py [--size 16384] [--batch 8] [--skip-e2e] [--workdir /tmp/rx]

Prints JSON lines; copy the figures, with the GPU model, into benchmarks/README.md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_forward import gemm_rate, model_flops, time_forward  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


class UtilisationSampler:
    """Samples ``nvidia-smi`` GPU utilisation (%) on a background thread."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout.split()
                if out:
                    self.samples.append(float(out[0]))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            self._stop.wait(self.period_s)

    def __enter__(self) -> "UtilisationSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {"gpu_util_mean": round(statistics.mean(self.samples), 1),
                "gpu_util_median": round(statistics.median(self.samples), 1),
                "gpu_util_samples": len(self.samples)}


def forward_part(args: argparse.Namespace, device: torch.device, peak: float) -> None:
    for precision in ("bf16", "fp32"):
        gemm = gemm_rate(device, {"bf16": torch.bfloat16, "fp32": torch.float32}[precision],
                         8192, 10)
        print(json.dumps({"gemm": precision, "tflops": round(gemm / 1e12, 1)}), flush=True)
        for name in ("d3fnet34", "dlinknet34"):
            flops = model_flops(name, 1024)
            s = time_forward(name, device, precision, "channels_last", 1024, args.batch, 10)
            print(json.dumps({
                "model": name, "precision": precision, "batch": args.batch,
                "ms_per_window": round(s * 1e3, 2), "tflops": round(flops / s / 1e12, 1),
                "mfu_of_bf16_peak": round(flops / s / (peak * 1e12), 3),
                "share_of_gemm": round(flops / s / gemm, 3),
                "windows_per_s": round(1 / s, 1),
            }), flush=True)


def e2e_part(args: argparse.Namespace) -> None:
    from bench_predict import make_scene

    from roadx.pipeline import ExtractOptions, extract
    from roadx.predict import PredictOptions

    args.workdir.mkdir(parents=True, exist_ok=True)
    scene = args.workdir / f"scene_{args.size}_0.5m.tif"
    if not scene.exists():
        t = time.perf_counter()
        make_scene(scene, args.size, args.size, args.workdir, gsd_m=0.5)
        print(json.dumps({"scene_written_s": round(time.perf_counter() - t, 1)}), flush=True)
    weights = Path(__file__).resolve().parents[1] / "weights" / "d3fnet34.safetensors"
    if not weights.exists():  # same cost with random weights (e.g. weights left out to fit)
        from roadx.models import create_model, get_card, save_checkpoint

        weights = args.workdir / "d3fnet34-random.safetensors"
        save_checkpoint(weights, create_model("d3fnet34"), card=get_card("d3fnet34"),
                        model_kwargs={})
    for concurrent in (True, False):
        options = ExtractOptions(
            weights=weights, resample=False, overwrite=True, concurrent=concurrent,
            probability_path=args.workdir / "prob.tif",
            predict=PredictOptions(tta=args.tta, batch_size=args.batch, device=args.device,
                                   compile=args.compile),
        )
        with UtilisationSampler() as sampler:
            t = time.perf_counter()
            result = extract(scene, args.workdir / "roads.gpkg", options=options)
            wall = time.perf_counter() - t
        print(json.dumps({
            "e2e": f"{args.size}² at 0.5 m, {args.tta}", "device": args.device,
            "concurrent": concurrent,
            "precision": result.precision, "windows": result.windows,
            "wall_s": round(wall, 1), "windows_per_s": round(result.windows / wall, 2),
            "km2": result.area_km2, "km2_per_h": round(result.area_km2 / wall * 3600),
            "roads": result.roads, **sampler.summary(),
        }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--tta", default="d4")
    parser.add_argument("--device", default="cuda",
                        help="cpu: a dry run of the end-to-end part only (checks the script)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/roadx-bench-gpu"))
    args = parser.parse_args()
    if args.device == "cpu":  # dry run of the end-to-end code path, e.g. before a GPU call
        e2e_part(args)
        return
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), 989.0)
    print(json.dumps({"gpu": name, "bf16_peak_tflops": peak, "torch": torch.__version__,
                      "cuda": torch.version.cuda}), flush=True)
    forward_part(args, device, peak)
    if not args.skip_e2e:
        e2e_part(args)


if __name__ == "__main__":
    main()
