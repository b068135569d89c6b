"""Should roadx adopt ONNX Runtime or OpenVINO as a CPU inference engine?

Exports the shipped d3fnet34 weights (float32) once to ONNX (``torch.onnx.export``), then times
one 1024² window (batch 1 and 2) in:

- torch (roadx's path: float32, channels-last, ``torch.inference_mode``),
- ONNX Runtime (CPUExecutionProvider, all graph optimisations, intra-op threads = torch's),
- OpenVINO (CPU plugin, from the same ONNX file; ``PERFORMANCE_HINT=LATENCY``),

and checks that each engine's probabilities are within 1e-3 of torch fp32 on a real
Massachusetts window (data read in place from $ROADX_DATA or ../shared/data). The adoption rule
(speed issue): ≥ 1.5× faster end to end with probabilities within 1e-3; the forward pass is
≥ 90 % of ``roadx predict``'s time on CPU, so a forward speed-up below 1.5× rules an engine out.

The engines are not roadx dependencies: install them beside it to run this script, e.g.
``pip install onnxruntime openvino onnx onnxscript``.

Usage::

    python benchmarks/bench_engines.py [--weights weights/d3fnet34.safetensors] [--repeat 3]
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roadx.io import open_scene
from roadx.models import load_checkpoint
from roadx.tiling import Window

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROADX_DATA", REPO.parent / "shared" / "data"))


def real_window(card) -> np.ndarray:  # noqa: ANN001
    """A 1024² network input from a held-out Massachusetts tile, ``(1, 3, 1024, 1024)``."""
    image = DATA / "massachusetts_cskanani" / "images" / "2.jpg"
    with open_scene(image, gsd_m=1.0, band_order=card.band_names) as scene:
        pixels, _ = scene.read_window(Window(0, 0, 1024, 1024))
    scale = np.array(card.input_scales, np.float32)[:, None, None]
    offset = np.array(card.input_offsets, np.float32)[:, None, None]
    return (pixels.astype(np.float32) * scale + offset)[None]


def timed(fn, x: np.ndarray, repeat: int) -> float:  # noqa: ANN001
    fn(x)
    t = time.perf_counter()
    for _ in range(repeat):
        fn(x)
    return (time.perf_counter() - t) / repeat / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "d3fnet34.safetensors")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    model, card = load_checkpoint(args.weights)
    model = model.eval().to(memory_format=torch.channels_last)
    x1 = real_window(card)
    x2 = np.concatenate([x1, x1[:, :, ::-1].copy()])  # batch 2: the window and its flip

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(model(t)).numpy()

    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}",
                      "threads": threads, "torch": torch.__version__}), flush=True)
    reference = run_torch(x1)
    results = {"torch": {"s_per_window_b1": timed(run_torch, x1, args.repeat),
                         "s_per_window_b2": timed(run_torch, x2, args.repeat),
                         "max_abs_dp": 0.0}}
    print(json.dumps({"engine": "torch", **results["torch"]}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "d3fnet34.onnx"
        t = time.perf_counter()
        torch.onnx.export(
            model.to(memory_format=torch.contiguous_format), (torch.from_numpy(x1),),
            str(onnx_path), input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=18,
        )
        print(json.dumps({"onnx_export_s": round(time.perf_counter() - t, 1),
                          "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1)}), flush=True)
        for engine in ("onnxruntime", "openvino"):
            try:
                run = make_engine(engine, onnx_path, threads)
            except ImportError as err:
                print(json.dumps({"engine": engine, "skipped": f"not installed ({err})"}))
                continue
            prob = 1 / (1 + np.exp(-run(x1)))
            row = {"s_per_window_b1": timed(run, x1, args.repeat),
                   "s_per_window_b2": timed(run, x2, args.repeat),
                   "max_abs_dp": float(np.abs(prob - reference).max())}
            results[engine] = row
            print(json.dumps({"engine": engine, **row}), flush=True)
    base = min(results["torch"]["s_per_window_b1"], results["torch"]["s_per_window_b2"])
    for engine, row in results.items():
        best = min(row["s_per_window_b1"], row["s_per_window_b2"])
        verdict = best <= base / 1.5 and row["max_abs_dp"] <= 1e-3
        print(f"{engine:12s} {best:6.2f} s/window  speed-up {base / best:4.2f}x  "
              f"max |dp| {row['max_abs_dp']:.1e}  adopt: {'yes' if verdict else 'no'}")


def make_engine(engine: str, onnx_path: Path, threads: int):  # noqa: ANN201
    """``run(x (B, 3, H, W) float32) -> logits (B, 1, H, W)`` for the named engine."""
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(onnx_path), options,
                                       providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"x": x})[0]
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(onnx_path)), "CPU",
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads},
    )
    return lambda x: compiled(x)[0]


if __name__ == "__main__":
    main()
