"""OpenVINO as an optional CPU inference engine (``roadx predict --engine openvino``).

Measured on a 2-core AVX2 AMD EPYC (``benchmarks/bench_engines.py``): one 1024² d3fnet34 window
takes 1.60 s in OpenVINO's CPU plugin against 2.61 s in torch fp32 channels-last (1.63×), with
probabilities within 1.2e-5 of torch; ONNX Runtime took 1.85 s (1.41×). The conversion from the
torch model takes about 20 s per run, so the engine pays on scenes of more than a few dozen
window views (e.g. a 4 km² scene with d4 TTA), not on a single small window.

The model is converted straight from torch (``openvino.convert_model`` with an example input;
no ONNX file), with a dynamic batch and window size, and compiled for the CPU with a latency
hint and torch's thread count. Install with ``pip install "roadx[openvino]"``.

Source: OpenVINO documentation, "Converting a PyTorch model" and CPU device properties.
"""

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from roadx.errors import InputError
from roadx.runtime.precision import Precision

logger = logging.getLogger(__name__)

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def openvino_forward(
    model: torch.nn.Module, *, channels: int, window_px: int, precision: Precision,
    threads: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Convert ``model`` to OpenVINO and return ``x (n, C, H, W) float32 -> logits``.

    Args:
        model: the torch model (``(B, C, H, W)`` float32 → ``(B, 1, H, W)``), on the CPU.
        channels: input channels ``C``.
        window_px: window size used for the example input of the conversion (sizes stay
            dynamic).
        precision: OpenVINO's CPU inference precision (``fp32`` → f32, ``bf16``, ``fp16``).
        threads: CPU threads (None: torch's current count).

    Returns:
        A function mapping a CPU float32 tensor ``(n, C, H, W)`` to ``(n, 1, H, W)`` float32
        logits (a torch tensor).

    Raises:
        roadx.errors.InputError: OpenVINO is not installed.
    """
    try:
        import openvino as ov
    except ImportError:
        raise InputError(
            "--engine openvino needs OpenVINO: pip install 'roadx[openvino]' (or use "
            "--engine torch)"
        ) from None
    started = time.perf_counter()
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    example = torch.zeros(1, channels, window_px, window_px)
    with torch.no_grad(), warnings.catch_warnings():
        # tracing warns about the models' input checks (sizes become constants there); the
        # converted graph's input keeps a dynamic batch and window size (PartialShape)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        converted = ov.convert_model(
            model, example_input=example, input=[ov.PartialShape([-1, channels, -1, -1])]
        )
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision.name],
    }
    compiled = ov.Core().compile_model(converted, "CPU", config)
    logger.info("converted the model to OpenVINO in %.1f s (%s)",
                time.perf_counter() - started, config)

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = compiled(x.detach().to("cpu", torch.float32).contiguous().numpy())[0]
        return torch.from_numpy(logits.copy())

    return forward
