"""Per-window forward time of every registered model, per precision and memory format,
against the machine's practical limit measured in the same run.

For each model × precision × memory format it times the inference forward pass
(``torch.inference_mode``, eval mode, random weights: the cost does not depend on the values)
on ``--batch`` windows of ``--size``² px and prints seconds per window, the model's FLOP
count (``torch.utils.flop_counter``; one multiply-add = 2 FLOPs) and its achieved FLOP rate
as a share of a large GEMM in the same dtype measured in the same process (sgemm for fp32,
bf16/fp16 GEMM for those) — the practical peak of this machine. On CUDA the share of the
GPU's dense bf16 peak (MFU) is printed too when ``--peak-tflops`` is given.

Target (speed issue): d3fnet34 fp32 channels-last on CPU ≥ 50 % of the sgemm rate.

``--memory`` also measures the memory of one inference forward pass per model, in a fresh
process each (so earlier models do not count): on CPU the process's peak resident set size
(``ru_maxrss``: Python, torch, the model's weights and the pass's activations) and the part
the pass adds (peak minus the resident size just before the call); on CUDA
``torch.cuda.max_memory_allocated``. Inputs have as many channels as the model card has bands
(``d3fnet34-mm``: 4).

Usage::

    python benchmarks/bench_forward.py [--device cpu|cuda] [--size 1024] [--batch 1]
        [--precisions fp32,bf16] [--formats contiguous,channels_last] [--repeat 3]
        [--models d3fnet34,dlinknet34] [--peak-tflops 989] [--memory]

Precisions other than fp32 are skipped on a CPU without native bf16 unless listed
explicitly (they are 20–150× slower there, see roadx.runtime.precision).
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from roadx.models import create_model, get_card, list_models
from roadx.runtime import choose_precision, cpu_bf16_features

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device: torch.device, dtype: torch.dtype, n: int, repeat: int) -> float:
    """Achieved FLOP/s of an ``n × n`` by ``n × n`` matrix product in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ b
    sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t0)


def channels(name: str) -> int:
    """Input channels of a model: its card's bands (3, or 4 for ``d3fnet34-mm``)."""
    return len(get_card(name).bands)


def model_flops(name: str, size: int) -> int:
    model = create_model(name).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels(name), size, size))
    return int(counter.get_total_flops())


def _rss_mb() -> float:
    """Current resident set size of this process, MB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def memory_child(name: str, device: torch.device, size: int, batch: int) -> dict:
    """One fp32 forward pass of ``name`` in this (fresh) process; its memory figures, MB."""
    torch.manual_seed(0)
    model = create_model(name).eval().to(device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels(name), size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        return {"weights_mb": round(weights_mb), "cuda_peak_mb": round(peak),
                "forward_adds_mb": round(peak - before)}
    before = _rss_mb()
    with torch.inference_mode():
        model(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"weights_mb": round(weights_mb), "rss_peak_mb": round(peak),
            "forward_adds_mb": round(peak - before)}


def measure_memory(name: str, device: str, size: int, batch: int) -> dict:
    """Run :func:`memory_child` in a fresh Python process and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--device", device,
         "--size", str(size), "--batch", str(batch)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_forward(
    name: str, device: torch.device, precision: str, fmt: str, size: int, batch: int,
    repeat: int,
) -> float:
    """Seconds per window (mean of ``repeat`` timed calls after one warm-up call)."""
    torch.manual_seed(0)
    model = create_model(name).eval().to(device)
    x = torch.randn(batch, channels(name), size, size, device=device)
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    policy = choose_precision(precision, device)
    with torch.inference_mode(), policy.autocast(device):
        model(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeat):
            model(x)
        sync(device)
    return (time.perf_counter() - t0) / (repeat * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default=",".join(list_models()))
    parser.add_argument("--precisions", default=None,
                        help="default: fp32 (+ bf16 where native: CPU with AVX512-BF16/AMX, CUDA)")
    parser.add_argument("--formats", default="contiguous,channels_last")
    parser.add_argument("--gemm-n", type=int, default=4096)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak, for MFU (H100 SXM: 989)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the memory of one fp32 forward pass per model")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, device, args.size, args.batch)))
        return
    if args.precisions:
        precisions = args.precisions.split(",")
    elif device.type == "cuda" or cpu_bf16_features():
        precisions = ["fp32", "bf16"]
    else:
        precisions = ["fp32"]
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads, "
               f"{torch.backends.cpu.get_cpu_capability()}, "
               f"native bf16: {cpu_bf16_features() or 'no'}")
    print(json.dumps({"device": str(device), "machine": machine, "torch": torch.__version__}))
    gemm = {p: gemm_rate(device, DTYPES[p], args.gemm_n, args.repeat) for p in precisions}
    for p, rate in gemm.items():
        print(json.dumps({"gemm": p, "n": args.gemm_n, "gflops": round(rate / 1e9, 1)}))
    for name in args.models.split(","):
        if args.memory:
            row = {"model": name, "precision": "fp32", "size_px": args.size, "batch": args.batch,
                   **measure_memory(name, args.device, args.size, args.batch)}
            print(json.dumps(row), flush=True)
        flops = model_flops(name, args.size)
        for precision in precisions:
            for fmt in args.formats.split(","):
                seconds = time_forward(name, device, precision, fmt, args.size, args.batch,
                                       args.repeat)
                rate = flops / seconds
                row = {
                    "model": name, "precision": precision, "format": fmt,
                    "size_px": args.size, "batch": args.batch,
                    "s_per_window": round(seconds, 4), "gflop_per_window": round(flops / 1e9, 1),
                    "gflops": round(rate / 1e9, 1),
                    "share_of_gemm": round(rate / gemm[precision], 3),
                }
                if args.peak_tflops:
                    row["mfu"] = round(rate / (args.peak_tflops * 1e12), 3)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
