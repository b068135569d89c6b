"""The out-of-memory batch back-off of the forward pass.

Device and precision are chosen in :mod:`roadx.runtime` (one policy for predict and train).

Background: ``../shared/specs/pipeline-anchors.md`` §4.3 (keep AMP; back off the batch on
CUDA OOM).
"""

import logging
from collections.abc import Callable

import torch

from roadx.errors import DeviceError

logger = logging.getLogger(__name__)


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
                        f"{tuple(x.shape[1:])} window; use a smaller --tile, --tta none "
                        "or --device cpu"
                    ) from exc
                self.chunk = n // 2
                logger.warning(
                    "out of memory with %d images per forward; retrying with %d", n, self.chunk
                )
                continue
            i += n
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
