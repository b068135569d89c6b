"""Compute device selection, mixed precision and the out-of-memory batch back-off.

Background: ``../shared/specs/pipeline-anchors.md`` §4.3 (keep AMP; back off the batch on
CUDA OOM).
"""

import contextlib
import logging
from collections.abc import Callable

import torch

from roadx.errors import DeviceError, InputError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.

    Returns:
        The device to run the model on.

    Raises:
        roadx.errors.DeviceError: if CUDA was requested but is not available.
        roadx.errors.InputError: for any other name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but torch.cuda.is_available() is False; use --device cpu"
            )
        return torch.device(name)
    raise InputError(f"unknown device {name!r}; expected 'auto', 'cpu' or 'cuda'")


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Return the autocast dtype for ``device``: bfloat16, or float16 on CUDA without bf16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, *, enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Return the mixed-precision context for a forward pass on ``device``.

    Args:
        device: where the model runs.
        enabled: False gives a no-op context (full float32).

    Returns:
        A ``torch.autocast`` context (bf16 on CPU; bf16 or fp16 on CUDA), or a null context.
    """
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype(device))


class BackoffForward:
    """Run a function over a batch in chunks, halving the chunk on out-of-memory errors.

    The chunk size starts at ``chunk`` images and only ever shrinks: after an OOM the failed
    images are retried with half as many per call, and later batches keep the smaller size.

    Args:
        fn: maps a ``(n, ...)`` tensor to a ``(n, ...)`` tensor (the model forward).
        device: where ``fn`` runs; the CUDA cache is emptied after an OOM there.
        chunk: initial number of images per call (>= 1).

    Notes:
        Any ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``) triggers the
        back-off, whatever the device, so the logic is testable on CPU.
    """

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device, *, chunk: int
    ) -> None:
        self.fn = fn
        self.device = device
        self.chunk = max(1, chunk)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``fn`` to ``x`` (``(N, ...)``) in chunks and concatenate the results.

        Raises:
            roadx.errors.DeviceError: if a single image still runs out of memory.
        """
        outs: list[torch.Tensor] = []
        i = 0
        while i < x.shape[0]:
            n = min(self.chunk, x.shape[0] - i)
            try:
                outs.append(self.fn(x[i : i + n]))
            except torch.cuda.OutOfMemoryError as exc:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if n == 1:
                    raise DeviceError(
                        f"out of memory on {self.device} with a single "
                        f"{tuple(x.shape[1:])} window; use smaller --tile-px, --tta none "
                        "or --device cpu"
                    ) from exc
                self.chunk = n // 2
                logger.warning(
                    "out of memory with %d images per forward; retrying with %d", n, self.chunk
                )
                continue
            i += n
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
