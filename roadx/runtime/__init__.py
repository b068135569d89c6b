"""Where and how torch runs: compute device and numeric precision, chosen by capability.

One policy for ``roadx predict`` and ``roadx train`` (``roadx.predict`` and ``roadx.train``
both call it), so a precision rule is written once:

- **CPU**: bfloat16 autocast only where the CPU computes bf16 natively (AVX512-BF16 or AMX
  tiles); elsewhere bf16 is emulated and many times slower than float32, so float32.
- **CUDA**: bfloat16 where the GPU supports it (Ampere and newer), else float16 (training
  then uses a gradient scaler).

This package's ``__init__`` is torch-free (the CLI imports the names below for ``--help``);
the functions load torch on first use.
"""

from typing import TYPE_CHECKING, Any, Literal, get_args

DeviceName = Literal["auto", "cpu", "cuda"]
"""``--device``: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""

PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
"""``--precision``: ``auto`` (by hardware capability, see the module docstring) or a forced
float32 / bfloat16-autocast / float16-autocast."""

PRECISION_NAMES: tuple[str, ...] = get_args(PrecisionName)

if TYPE_CHECKING:
    from roadx.runtime.device import resolve_device
    from roadx.runtime.precision import Precision, choose_precision, cpu_bf16_features

__all__ = [
    "PRECISION_NAMES",
    "DeviceName",
    "Precision",
    "PrecisionName",
    "choose_precision",
    "cpu_bf16_features",
    "resolve_device",
]

_LAZY = {
    "resolve_device": "roadx.runtime.device",
    "Precision": "roadx.runtime.precision",
    "choose_precision": "roadx.runtime.precision",
    "cpu_bf16_features": "roadx.runtime.precision",
}


def __getattr__(name: str) -> Any:
    """Load the torch-dependent names on first use (keeps ``import roadx.runtime`` light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'roadx.runtime' has no attribute {name!r}")
