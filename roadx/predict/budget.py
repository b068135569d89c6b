"""What a ``roadx predict`` run will need, estimated before any window is read.

Absurd settings (a 100,000 px ``--tile``, ``--batch-size 1000000``, a card whose GSD
upsamples the scene a million times, a 300 m scene resampled to 1 m) would otherwise run for
days or allocate tens of GiB before failing. :func:`estimate_run` sizes the run from the grid
and the options alone; :func:`check_run` refuses it with the numbers:

- more than :data:`MAX_WINDOWS` windows: refused unless ``--force``;
- more memory than is available now: refused unless ``--force``;
- more memory than the machine (or container) has in total, swap included: always refused.

The memory model follows the engine's buffers (``roadx.predict.engine`` module docstring):
two uint8 batches, the float32 TTA views of a batch and their probabilities, the activations
of one forward pass (:data:`ACTIVATION_BYTES_PER_PX`), the stitcher's row accumulators and the
bands queued for the vectorizer, plus :data:`BASE_BYTES`. On CUDA the views and activations
live on the GPU (the out-of-memory back-off handles them), so only host buffers count.
"""

import math
from dataclasses import dataclass

from roadx.errors import InputError
from roadx.fs import format_bytes
from roadx.runtime.memory import MemoryLimits

MAX_WINDOWS = 20_000
"""Windows above which a run needs ``--force`` (about 11,800 km² at 1 m with 1024 px windows;
the issue's 300 m Landsat scene upsampled to 1 m had 86,829)."""

BASE_BYTES = 512 * 2**20
"""Interpreter, torch, GDAL and the model's weights."""

ACTIVATION_BYTES_PER_PX = 600
"""Peak host memory of one float32 d3fnet34 forward pass per input pixel (measured on CPU:
about 600 B/px at 512² and 1024²; narrower models need less)."""

BAND_BYTES_PER_PX = 32
"""Per pixel of a ``tile_px``-row, full-width band: stitcher accumulators (8 B), two bands
queued for the vectorizer (8 B) and the vectorizer's band with its halo (16 B)."""

PROBABILITY_BYTES_PER_PX = 0.68
"""Expected peak disk bytes per pixel of the probability GeoTIFF: uint8 with overviews (4/3 B)
after DEFLATE, which shrinks probability rasters about 4× or more (0.34 B), twice over: the
tiled file and its Cloud-Optimized copy exist together until the first is removed."""


@dataclass(frozen=True, slots=True)
class RunEstimate:
    """The size of a run.

    Attributes:
        windows: windows of the grid.
        tile_px: window side, pixels.
        width_px: width of the processing grid, pixels.
        height_px: height of the processing grid, pixels.
        memory_bytes: estimated peak memory of the process, bytes.
        probability_bytes: estimated peak disk use of the probability GeoTIFF while it is
            written and laid out as a COG (0: none written), bytes.
    """

    windows: int
    tile_px: int
    width_px: int
    height_px: int
    memory_bytes: int
    probability_bytes: int


def estimate_run(
    *, height: int, width: int, tile_px: int, windows: int, batch_size: int, views: int,
    images_per_forward: int, on_gpu: bool, probability: bool,
) -> RunEstimate:
    """Estimate the memory and disk a prediction run needs (see the module docstring).

    Args:
        height: processing grid height, pixels.
        width: processing grid width, pixels.
        tile_px: window side, pixels.
        windows: number of windows of the grid.
        batch_size: windows per batch (``--batch-size``).
        views: TTA views per window (1, 4 or 8).
        images_per_forward: images per forward pass (the engine's cap on CPU).
        on_gpu: the model runs on CUDA (views and activations are not host memory).
        probability: a probability GeoTIFF is written.

    Returns:
        The :class:`RunEstimate`.
    """
    window_px = tile_px * tile_px
    n = max(1, min(batch_size, windows))
    host = 2 * n * 3 * window_px  # uint8 batches: the current one and the one read ahead
    if not on_gpu:
        host += n * views * 3 * window_px * 4  # float32 TTA views of the batch
        host += n * views * window_px * 4  # their probabilities
        host += min(images_per_forward, n * views) * window_px * ACTIVATION_BYTES_PER_PX
    host += min(tile_px, height) * width * BAND_BYTES_PER_PX
    prob = math.ceil(height * width * PROBABILITY_BYTES_PER_PX) if probability else 0
    return RunEstimate(windows, tile_px, width, height, BASE_BYTES + host, prob)


def check_run(
    estimate: RunEstimate, limits: MemoryLimits | None, *, force: bool, scene: str
) -> None:
    """Refuse a run that is too large (see the module docstring); ``force`` lifts the soft
    limits (window count, memory available now) but not the machine's total memory.

    Args:
        estimate: from :func:`estimate_run`.
        limits: from :func:`roadx.runtime.memory.memory_limits` (None: memory unchecked).
        force: the user asked to run anyway (``--force``).
        scene: the input, named in the message.

    Raises:
        roadx.errors.InputError: with the estimate and what to change.
    """
    e = estimate
    windows = f"{e.windows:,} window{'s' if e.windows != 1 else ''}"
    size = f"{windows} of {e.tile_px} px over {e.width_px:,} × {e.height_px:,} px"
    need = format_bytes(e.memory_bytes)
    smaller = "use a smaller --tile or --batch-size, --tta none, or a smaller scene"
    if limits is not None and e.memory_bytes > limits.total:
        raise InputError(
            f"{scene}: this run needs about {need} of memory ({size}), more than this machine "
            f"has ({format_bytes(limits.total)} with swap); {smaller}."
        )
    if not force and e.windows > MAX_WINDOWS:
        raise InputError(
            f"{scene}: this run has {size}, more than the {MAX_WINDOWS:,} windows roadx runs "
            "without asking; check --gsd, the weights' GSD and --tile (an upsampled coarse "
            "scene?), or pass --force to run it anyway."
        )
    if not force and limits is not None and e.memory_bytes > limits.available:
        raise InputError(
            f"{scene}: this run needs about {need} of memory ({size}), but only "
            f"{format_bytes(limits.available)} is available; {smaller}, or pass --force to "
            "run it anyway."
        )
