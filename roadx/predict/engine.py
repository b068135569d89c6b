"""Streaming inference: windows in, finished full-width probability bands out.

:func:`predict_scene` walks a :class:`~roadx.tiling.TileGrid` in row-major order. A worker
thread reads and normalises the next batch of windows while the model runs on the current
one, so I/O stays off the critical path. Each batch goes through TTA (all views of all
windows in one forward, split further only after an out-of-memory error), the probabilities
are mapped back and averaged, and the :class:`~roadx.predict.stitch.Stitcher` hands back
bands as soon as no later window touches them. The scene is never held in memory.

Peak memory is about ``batch_size * views * 3 * tile_px**2 * 4 B`` for the model input (two
batches of ``batch_size * 3 * tile_px**2 * 4 B`` on the host, one being read ahead), plus
the stitcher's ``<= tile_px * width * 8 B`` accumulators, plus the model's activations.

Background: ``../shared/specs/pipeline-anchors.md`` §4 (stitching, TTA, memory-bounded
streaming, nodata), ``../shared/specs/d3fnet.md`` §5.1 and §5.3 (input encoding, TTA).
"""

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from roadx.errors import InputError
from roadx.predict.device import BackoffForward, autocast, resolve_device
from roadx.predict.stitch import BlendMode, Stitcher
from roadx.predict.tta import TtaMode, augment, merge, tta_views
from roadx.tiling import Tile, TileGrid, Window

if TYPE_CHECKING:
    from roadx.models import ModelCard

logger = logging.getLogger(__name__)

CPU_IMAGES_PER_FORWARD = 2
"""Default cap on images per forward pass on CPU (bounds peak memory; CPU throughput does
not grow with the batch, and one 1024² window needs a few hundred MB of activations)."""

ReadFn = Callable[[Window], tuple[np.ndarray, np.ndarray]]
"""``read(window) -> (image (C, h, w) uint8, valid (h, w) bool)``, boundless (see roadx.io)."""


@dataclass(frozen=True, slots=True)
class PredictOptions:
    """How :func:`predict_scene` runs the model.

    Attributes:
        tta: test-time augmentation, ``"none"`` (1 view), ``"flip"`` (4) or ``"d4"`` (8).
        blend: window stitching, ``"crop"`` (window cores) or ``"cosine"`` (Hann blending).
        batch_size: windows per forward pass (each with all its TTA views); halved
            automatically after an out-of-memory error.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        amp: autocast the forward pass (bf16 on CPU; bf16, or fp16 where bf16 is not
            supported, on CUDA); probabilities are always float32.
        max_images_per_forward: cap on images (windows × TTA views) per forward pass;
            None: no cap on CUDA (out-of-memory back-off instead), ``CPU_IMAGES_PER_FORWARD``
            on CPU.

    Raises:
        roadx.errors.InputError: for an unknown ``tta``/``blend`` or ``batch_size < 1``.
    """

    tta: TtaMode = "d4"
    blend: BlendMode = "cosine"
    batch_size: int = 4
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    max_images_per_forward: int | None = None

    def __post_init__(self) -> None:
        tta_views(self.tta)  # raises InputError for an unknown mode
        if self.blend not in ("crop", "cosine"):
            raise InputError(f"unknown blend mode {self.blend!r}; expected 'crop' or 'cosine'")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1 window, got {self.batch_size}")


@dataclass(slots=True)
class _Batch:
    """Consecutive tiles of the grid; those with data come with their model input."""

    tiles: list[Tile]
    has_data: list[bool]
    images: torch.Tensor  # (n, C, tile_px, tile_px) float32, n = sum(has_data)
    valid: list[np.ndarray]  # n x (tile_px, tile_px) bool


class _BatchReader:
    """Read and normalise the grid's windows, ``batch_size`` windows with data per call.

    Only ever called from one worker thread at a time (sequentially), so ``read`` need not
    be thread-safe. Windows without valid pixels are recorded but not normalised; a batch
    also ends after ``16 * batch_size`` tiles so mostly-empty scenes still report progress.
    """

    def __init__(
        self, read: ReadFn, grid: TileGrid, card: "ModelCard", *, batch_size: int, pin: bool
    ) -> None:
        self._read = read
        self._tiles = iter(grid)
        self._tile_px = grid.tile_px
        self._scale = np.float32(card.input_scale)
        self._offset = np.float32(card.input_offset)
        self._batch_size = batch_size
        self._pin = pin

    def __call__(self) -> _Batch | None:
        t = self._tile_px
        tiles: list[Tile] = []
        has_data: list[bool] = []
        valids: list[np.ndarray] = []
        buf: np.ndarray | None = None
        for tile in self._tiles:
            image, valid = self._read(tile.read)
            if image.ndim != 3 or image.shape[1:] != (t, t) or valid.shape != (t, t):
                raise InputError(
                    f"read({tile.read}) returned image {image.shape} and valid {valid.shape}; "
                    f"expected (C, {t}, {t}) and ({t}, {t}) (a boundless read)"
                )
            tiles.append(tile)
            has_data.append(bool(valid.any()))
            if has_data[-1]:
                if buf is None:
                    buf = np.empty((self._batch_size, image.shape[0], t, t), dtype=np.float32)
                x = buf[len(valids)]  # (C, t, t) view
                np.multiply(image, self._scale, out=x, dtype=np.float32)
                x += self._offset
                # nodata -> the scaled value of 0 (black): training pads crops with black
                np.copyto(x, np.float32(self._offset), where=~valid)
                valids.append(valid)
            if len(valids) == self._batch_size or len(tiles) >= 16 * self._batch_size:
                break
        if not tiles:
            return None
        images = torch.from_numpy(buf[: len(valids)]) if buf is not None else torch.empty(0)
        if self._pin and len(valids):
            images = images.pin_memory()
        return _Batch(tiles, has_data, images, valids)


def _probabilities(
    model: torch.nn.Module, card: "ModelCard", device: torch.device, amp: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``x (n, 3, H, W) -> (n, 1, H, W) float32 probabilities`` for the model."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, enabled=amp):
            y = model(x)
        if y.ndim != 4 or y.shape[0] != x.shape[0] or y.shape[1] != 1 or y.shape[2:] != x.shape[2:]:
            raise InputError(
                f"model {card.name!r} returned shape {tuple(y.shape)} for input "
                f"{tuple(x.shape)}; expected (B, 1, H, W) {card.output}"
            )
        y = y.float()
        return y if card.output == "probabilities" else torch.sigmoid(y)

    return forward


def predict_scene(
    read: ReadFn,
    grid: TileGrid,
    model: torch.nn.Module,
    card: "ModelCard",
    options: PredictOptions,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Run the model over a scene window by window and yield finished probability bands.

    Windows are read through ``read(tile.read)``; a window without any valid pixel is not
    run (it counts as done for progress and its pixels come out NaN). Inputs are scaled as
    ``x = image * card.input_scale + card.input_offset`` (float32) and invalid input pixels
    are set to the scaled value of 0 (black, ``card.input_offset``), as crops are padded in
    training (d3fnet.md §5.2: constant border 0). The model runs under
    ``torch.inference_mode`` and, with ``options.amp``, autocast; the sigmoid of its
    float32 logits (skipped if ``card.output == "probabilities"``) is averaged over the TTA
    views and stitched. The model is moved to the device and put in eval mode.

    Memory is independent of the scene height: see the module docstring.

    Args:
        read: boundless window reader, ``Window -> (image (C, tile_px, tile_px) uint8,
            valid (tile_px, tile_px) bool)``; called from one worker thread, sequentially.
        grid: the scene's window grid (``tile_px`` divisible by 32 for the roadx models).
        model: ``(B, 3, H, W)`` float32 -> ``(B, 1, H, W)`` logits (or probabilities).
        card: the model's card (input scaling, output kind).
        options: TTA, blending, batch size, device, AMP.
        on_progress: called with 1 after each window (run or skipped); ``len(grid)`` in all.

    Yields:
        ``(Window(row0, 0, h, grid.width), prob)`` with ``prob (h, grid.width)`` float32 in
        ``[0, 1]``, NaN outside valid data; consecutive bands covering ``[0, grid.height)``.

    Raises:
        roadx.errors.DeviceError: CUDA requested but absent; out of memory with one window.
        roadx.errors.InputError: ``read`` returned wrongly shaped arrays, or the model output
            is not ``(B, 1, H, W)`` (the model itself raises InputError for bad sizes).
    """
    device = resolve_device(options.device)
    n_views = len(tta_views(options.tta))
    model = model.to(device).eval()
    stitcher = Stitcher(grid, blend=options.blend)
    chunk = options.batch_size * n_views
    if options.max_images_per_forward is not None:
        chunk = min(chunk, options.max_images_per_forward)
    elif device.type == "cpu":
        chunk = min(chunk, CPU_IMAGES_PER_FORWARD)
    forward = BackoffForward(_probabilities(model, card, device, options.amp), device, chunk=chunk)
    reader = _BatchReader(
        read, grid, card, batch_size=options.batch_size, pin=device.type == "cuda"
    )
    logger.info(
        "predicting %d windows (%dx%d px, tile %d, overlap %d) on %s: tta=%s blend=%s amp=%s",
        len(grid), grid.height, grid.width, grid.tile_px, grid.overlap_px, device,
        options.tta, options.blend, options.amp,
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadx-read") as pool:
        pending = pool.submit(reader)
        try:
            while (batch := pending.result()) is not None:
                pending = pool.submit(reader)  # read the next batch while this one runs
                probs = _run_batch(batch, forward, options.tta, device)
                j = 0
                for tile, has_data in zip(batch.tiles, batch.has_data, strict=True):
                    if has_data:
                        bands = stitcher.add(tile, probs[j], batch.valid[j])
                        j += 1
                    else:
                        bands = stitcher.skip(tile)
                    if on_progress is not None:
                        on_progress(1)
                    yield from bands
        finally:
            pending.cancel()
    assert stitcher.done, "every tile was stitched, so every row must have been emitted"


def _run_batch(
    batch: _Batch, forward: BackoffForward, tta: TtaMode, device: torch.device
) -> np.ndarray:
    """Return ``(n, tile_px, tile_px)`` float32 TTA-averaged probabilities of a batch."""
    if not batch.valid:
        return np.empty((0, 0, 0), dtype=np.float32)
    with torch.inference_mode():
        x = batch.images.to(device, non_blocking=True)  # (n, C, T, T)
        p = merge(forward(augment(x, tta)), tta)  # (n * V, C, T, T) -> (n, 1, T, T)
        return p[:, 0].cpu().numpy()
