"""Numeric precision of the forward (and backward) pass, chosen by hardware capability.

Why not "bf16 on every CPU": on CPUs without native bf16 arithmetic (no AVX512-BF16, no AMX),
oneDNN emulates bf16 and autocast becomes many times *slower* than float32 (measured on a
2-core AVX2 AMD EPYC: one 64→64 3×3 convolution at 256² takes 0.22 s in fp32 and 32.6 s
under bf16 autocast; d3fnet34 at 128² is 8–19× slower, a 512² bf16 GEMM ~120× slower). On
CPUs with AVX512-BF16 or AMX the same autocast is faster than float32, so the choice is made
per machine, never assumed.

Sources: PyTorch's CPU capability checks (``torch.cpu._is_avx512_bf16_supported``,
``torch.cpu._is_amx_tile_supported``) and ``torch.cuda.is_bf16_supported``; PyTorch AMP
documentation for the fp16 gradient scaler.
"""

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch

from roadx.errors import DeviceError, InputError
from roadx.runtime import PRECISION_NAMES

logger = logging.getLogger(__name__)

ResolvedPrecision = Literal["fp32", "bf16", "fp16"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_bf16_features() -> list[str]:
    """Return the CPU features that give native bf16 arithmetic, e.g. ``["AVX512-BF16", "AMX"]``.

    An empty list means bf16 would be emulated on this CPU (slow). Uses PyTorch's own CPU
    capability checks, the ones oneDNN dispatches on.
    """
    checks = {
        "AVX512-BF16": getattr(torch.cpu, "_is_avx512_bf16_supported", None),
        "AMX": getattr(torch.cpu, "_is_amx_tile_supported", None),
    }
    found = []
    for name, check in checks.items():
        try:
            if check is not None and check():
                found.append(name)
        except RuntimeError:  # a torch build without the check
            continue
    return found


@dataclass(frozen=True, slots=True)
class Precision:
    """A resolved precision and why it was chosen.

    Attributes:
        name: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"`` (autocast to that dtype;
            weights stay float32, outputs are cast back to float32 by the caller).
        reason: one line for logs and summaries, e.g. ``"auto: CPU without native bf16
            (no AVX512-BF16/AMX); bf16 would be emulated"``.
    """

    name: ResolvedPrecision
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``."""
        return _DTYPES[self.name]

    @property
    def needs_grad_scaler(self) -> bool:
        """True for fp16 training, whose small gradients underflow without loss scaling."""
        return self.name == "fp16"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[None]:
        """The context for a forward pass on ``device``: ``torch.autocast`` or a no-op (fp32)."""
        if self.name == "fp32" or device.type not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def choose_precision(requested: str, device: torch.device) -> Precision:
    """Resolve ``--precision`` for ``device``.

    ``auto``: on CPU, bf16 where the CPU has native bf16 (:func:`cpu_bf16_features`), else
    fp32; on CUDA, bf16 where ``torch.cuda.is_bf16_supported()``, else fp16; fp32 elsewhere.
    An explicit ``bf16``/``fp16`` on a CPU without native support is honoured with a warning
    (it is correct but very slow).

    Args:
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: where the model runs.

    Returns:
        The :class:`Precision` with its reason.

    Raises:
        roadx.errors.InputError: an unknown name.
        roadx.errors.DeviceError: ``bf16`` on a CUDA GPU without bf16 support.
    """
    if requested not in PRECISION_NAMES:
        raise InputError(
            f"unknown precision {requested!r}; expected one of {', '.join(PRECISION_NAMES)}"
        )
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        gpu = torch.cuda.get_device_name(device)
        if requested == "auto":
            if bf16_ok:
                return Precision("bf16", f"auto: {gpu} supports bf16")
            return Precision("fp16", f"auto: {gpu} has no bf16, so fp16")
        if requested == "bf16" and not bf16_ok:
            raise DeviceError(f"--precision bf16 was requested but {gpu} does not support bf16; "
                              "use --precision fp16 or fp32")
        return Precision(requested, f"requested ({gpu})")  # type: ignore[arg-type]
    if device.type != "cpu":
        if requested not in ("auto", "fp32"):
            logger.warning("precision %s is not supported on %s; using fp32", requested, device)
        return Precision("fp32", f"{device.type}: fp32")
    features = cpu_bf16_features()
    if requested == "auto":
        if features:
            return Precision("bf16", f"auto: CPU has native bf16 ({', '.join(features)})")
        return Precision(
            "fp32", "auto: CPU without native bf16 (no AVX512-BF16/AMX), where bf16 is emulated"
        )
    if requested != "fp32" and not (requested == "bf16" and features):
        logger.warning(
            "--precision %s on a CPU without native %s support: correct but typically "
            "20-150x slower than fp32", requested, requested,
        )
    return Precision(requested, "requested")  # type: ignore[arg-type]
