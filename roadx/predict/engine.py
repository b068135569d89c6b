"""Streaming inference: windows in, finished full-width probability bands out.

:func:`predict_scene` walks a :class:`~roadx.tiling.TileGrid` in row-major order. A worker
thread reads the next batch of windows (uint8) while the model runs on the current one, so
I/O stays off the critical path; scaling to the network input happens on the model's
device. Each batch goes through TTA (all views of all
windows in one forward, split further only after an out-of-memory error), the probabilities
are mapped back and averaged, and the :class:`~roadx.predict.stitch.Stitcher` hands back
bands as soon as no later window touches them. The scene is never held in memory.

Peak memory is about ``batch_size * views * 3 * tile_px**2 * 4 B`` for the model input (two
uint8 batches of ``batch_size * 3 * tile_px**2 B`` on the host, one being read ahead), plus
the stitcher's ``<= tile_px * width * 8 B`` accumulators, plus the model's activations.

Background: ``../shared/specs/pipeline-anchors.md`` §4 (stitching, TTA, memory-bounded
streaming, nodata), ``../shared/specs/d3fnet.md`` §5.1 and §5.3 (input encoding, TTA).
"""

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from roadx.errors import InputError
from roadx.predict.device import BackoffForward
from roadx.predict.stitch import BlendMode, Stitcher
from roadx.predict.tta import TtaMode, augment, merge, tta_views
from roadx.runtime import PRECISION_NAMES, DeviceName, PrecisionName
from roadx.runtime.device import resolve_device
from roadx.runtime.precision import Precision, choose_precision
from roadx.tiling import Tile, TileGrid, Window

if TYPE_CHECKING:
    from roadx.models import ModelCard

logger = logging.getLogger(__name__)

CPU_IMAGES_PER_FORWARD = 2
"""Default cap on images per forward pass on CPU (bounds peak memory; CPU throughput does
not grow with the batch, and one 1024² window needs a few hundred MB of activations)."""

ReadFn = Callable[
    [Window],
    tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray | None],
]
"""``read(window) -> (image (C, h, w) uint8, valid (h, w) bool)``, boundless (see roadx.io),
optionally with a third item ``aux_valid`` ``(h, w)`` bool (or None): where the auxiliary
raster that supplied the card's ``nir``/``aux`` channels has data
(:meth:`roadx.io.Scene.read_window_aux`)."""


@dataclass(frozen=True, slots=True)
class PredictOptions:
    """How :func:`predict_scene` runs the model.

    Attributes:
        tta: test-time augmentation, ``"none"`` (1 view), ``"flip"`` (4) or ``"d4"`` (8).
        blend: window stitching, ``"crop"`` (window cores) or ``"cosine"`` (Hann blending).
        batch_size: windows per forward pass (each with all its TTA views); halved
            automatically after an out-of-memory error.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (by hardware capability, :func:`roadx.runtime.choose_precision`:
            bf16 only on CPUs with native bf16, else fp32; bf16 or fp16 on CUDA), or a forced
            ``"fp32"``, ``"bf16"`` or ``"fp16"``; probabilities are always float32.
        channels_last: run the model on NHWC tensors (oneDNN and cuDNN convolutions are
            1.4–1.7× faster in that layout; same values to float rounding).
        compile: wrap the model in ``torch.compile`` (pays on CUDA for long runs; the first
            batch waits for compilation; falls back to eager mode if compilation fails).
        max_images_per_forward: cap on images (windows × TTA views) per forward pass;
            None: no cap on CUDA (out-of-memory back-off instead), ``CPU_IMAGES_PER_FORWARD``
            on CPU.

    Raises:
        roadx.errors.InputError: for an unknown ``tta``/``blend``/``precision`` or
            ``batch_size < 1``.
    """

    tta: TtaMode = "d4"
    blend: BlendMode = "cosine"
    batch_size: int = 4
    device: DeviceName = "auto"
    precision: PrecisionName = "auto"
    channels_last: bool = True
    compile: bool = False
    max_images_per_forward: int | None = None

    def __post_init__(self) -> None:
        tta_views(self.tta)  # raises InputError for an unknown mode
        if self.blend not in ("crop", "cosine"):
            raise InputError(f"unknown blend mode {self.blend!r}; expected 'crop' or 'cosine'")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1 window, got {self.batch_size}")
        if self.precision not in PRECISION_NAMES:
            raise InputError(
                f"unknown precision {self.precision!r}; expected one of "
                f"{', '.join(PRECISION_NAMES)}"
            )


@dataclass(slots=True)
class _Batch:
    """Consecutive tiles of the grid; those with data come with their model input."""

    tiles: list[Tile]
    has_data: list[bool]
    images: torch.Tensor  # (n, C, tile_px, tile_px) uint8, nodata = 0, n = sum(has_data)
    valid: list[np.ndarray]  # n x (tile_px, tile_px) bool
    aux_nodata: torch.Tensor | None = None  # (n, tile_px, tile_px) bool: no auxiliary data


class _BatchReader:
    """Read the grid's windows into uint8 batches, ``batch_size`` windows with data per call.

    Images stay uint8 (scaling happens on the model's device: 4× less host→device traffic
    than float32); nodata pixels are set to 0 (black), as crops are padded in training.
    Only ever called from one worker thread at a time (sequentially), so ``read`` need not
    be thread-safe. Windows without valid pixels are recorded but not copied; a batch
    also ends after ``16 * batch_size`` tiles so mostly-empty scenes still report progress.
    When ``read`` gives an auxiliary validity (a third item), the batch carries where each
    window has *no* auxiliary data (``aux_nodata``), for :meth:`_Forward.scale`.

    A batch never spans two grid rows: the model's floating-point results depend (in the
    last bits) on which windows share a forward pass, so a stripe of grid rows run
    elsewhere (:func:`predict_scene` ``rows``) batches its windows exactly as a whole-scene
    run does and gets bit-identical probabilities.
    """

    def __init__(self, read: ReadFn, grid: TileGrid, *, batch_size: int, pin: bool,
                 rows: tuple[int, int]) -> None:
        self._read = read
        self._tiles = (t for r in range(*rows) for t in grid.tiles_in_row(r))
        self._tile_px = grid.tile_px
        self._batch_size = batch_size
        self._capacity = min(batch_size, len(grid))  # the buffer never outgrows the scene
        self._pin = pin
        self._last_col = grid.n_cols - 1

    def __call__(self) -> _Batch | None:
        t = self._tile_px
        tiles: list[Tile] = []
        has_data: list[bool] = []
        valids: list[np.ndarray] = []
        buf: np.ndarray | None = None
        aux_buf: np.ndarray | None = None
        for tile in self._tiles:
            image, valid, *rest = self._read(tile.read)
            aux_valid = rest[0] if rest else None
            if aux_valid is not None and aux_valid.shape != (t, t):
                raise InputError(
                    f"read({tile.read}) returned aux_valid {aux_valid.shape}; expected "
                    f"({t}, {t}) (a boundless read)"
                )
            if image.ndim != 3 or image.shape[1:] != (t, t) or valid.shape != (t, t):
                raise InputError(
                    f"read({tile.read}) returned image {image.shape} and valid {valid.shape}; "
                    f"expected (C, {t}, {t}) and ({t}, {t}) (a boundless read)"
                )
            if image.dtype != np.uint8:
                raise InputError(
                    f"read({tile.read}) returned {image.dtype} pixels; expected uint8 (roadx.io "
                    "stretches 16-bit imagery to uint8)"
                )
            tiles.append(tile)
            has_data.append(bool(valid.any()))
            if has_data[-1]:
                if buf is None:
                    buf = np.empty((self._capacity, image.shape[0], t, t), dtype=np.uint8)
                x = buf[len(valids)]  # (C, t, t) view
                np.copyto(x, image)
                # nodata -> 0 (black): training pads crops with black
                np.copyto(x, np.uint8(0), where=~valid)
                if aux_valid is not None:
                    if aux_buf is None:  # earlier windows of the batch: all aux data present
                        aux_buf = np.zeros((self._capacity, t, t), dtype=bool)
                    np.logical_not(aux_valid, out=aux_buf[len(valids)])
                elif aux_buf is not None:
                    aux_buf[len(valids)] = False
                valids.append(valid)
            if (len(valids) == self._capacity or len(tiles) >= 16 * self._batch_size
                    or tile.col == self._last_col):
                break
        if not tiles:
            return None
        images = torch.from_numpy(buf[: len(valids)]) if buf is not None else torch.empty(0)
        aux_nodata = None
        if aux_buf is not None and aux_buf[: len(valids)].any():
            aux_nodata = torch.from_numpy(aux_buf[: len(valids)])
        if self._pin and len(valids):
            images = images.pin_memory()
            aux_nodata = None if aux_nodata is None else aux_nodata.pin_memory()
        return _Batch(tiles, has_data, images, valids, aux_nodata)


class _Forward:
    """The model side of a batch: :meth:`scale` turns uint8 windows on the device into the
    network input (``x * band.scale + band.offset`` per card band, NaN in the card's
    ``nir``/``aux`` channels where the auxiliary raster has no data); calling maps that input
    (all TTA views) to float32 probabilities, in the chosen precision and memory format.
    ``torch.compile`` failures fall back to the eager model with a warning.
    """

    def __init__(
        self, model: torch.nn.Module, card: "ModelCard", device: torch.device,
        precision: Precision, options: PredictOptions,
    ) -> None:
        self.eager = model
        self.model: Callable[[torch.Tensor], torch.Tensor] = model
        self.card = card
        self.device = device
        self.precision = precision
        self.channels_last = options.channels_last
        self.outputs = 0  # model output values seen
        self.non_finite = 0  # of which NaN or infinite
        if options.compile:
            self.model = torch.compile(model)

    def scale(self, images: torch.Tensor, aux_nodata: torch.Tensor | None = None) -> torch.Tensor:
        """Network input of a batch of windows, per the card.

        Args:
            images: ``(n, C, H, W)`` uint8 in card band order.
            aux_nodata: ``(n, H, W)`` bool, True where the auxiliary raster that supplied the
                card's ``nir``/``aux`` channels (:attr:`ModelCard.aux_channels`) has no data;
                None: it has data everywhere, or there is none.

        Returns:
            ``(n, C, H, W)`` float32 ``images * band.scale + band.offset``; NaN in the
            auxiliary channels where ``aux_nodata`` (the multimodal models' "no auxiliary
            data", :mod:`roadx.models.d3fnet_mm`).

        Raises:
            roadx.errors.InputError: ``C`` is not the card's channel count; ``aux_nodata``
                for a card without ``nir``/``aux`` channels.
        """
        x = images.to(torch.float32)
        if x.shape[1] != self.card.in_chans:
            raise InputError(
                f"model {self.card.name!r} expects {self.card.in_chans} bands "
                f"({','.join(self.card.band_names)}); the scene reader gave {x.shape[1]}."
            )
        view = (1, -1, 1, 1)
        scale = torch.tensor(self.card.input_scales, dtype=torch.float32, device=x.device)
        offset = torch.tensor(self.card.input_offsets, dtype=torch.float32, device=x.device)
        x = x.mul_(scale.view(view)).add_(offset.view(view))
        if aux_nodata is not None:
            channels = self.card.aux_channels
            if not channels:
                raise InputError(
                    f"model {self.card.name!r} has no near-infrared or auxiliary band "
                    f"({','.join(self.card.band_names)}), but the reader gave auxiliary "
                    "validity."
                )
            for c in channels:
                x[:, c].masked_fill_(aux_nodata, float("nan"))
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` float32 network input -> ``(n, 1, H, W)`` float32 probabilities."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast(self.device):
            try:
                y = self.model(x)
            except (InputError, torch.cuda.OutOfMemoryError):
                raise  # a bad input size, or the out-of-memory back-off's signal
            except Exception as err:  # a torch.compile backend failure, not a model error
                if self.model is self.eager:
                    raise
                logger.warning("torch.compile failed (%s); running the eager model", err)
                self.model = self.eager
                y = self.model(x)
        if y.ndim != 4 or y.shape[0] != x.shape[0] or y.shape[1] != 1 or y.shape[2:] != x.shape[2:]:
            raise InputError(
                f"model {self.card.name!r} returned shape {tuple(y.shape)} for input "
                f"{tuple(x.shape)}; expected (B, 1, H, W) {self.card.output}"
            )
        y = y.float()
        self.outputs += y.numel()
        self.non_finite += int((~torch.isfinite(y)).sum())
        return y if self.card.output == "probabilities" else torch.sigmoid(y)


def images_per_forward(options: PredictOptions, device: torch.device) -> int:
    """Images (windows × TTA views) per forward pass: the whole batch, capped by
    ``options.max_images_per_forward`` or, on CPU, by :data:`CPU_IMAGES_PER_FORWARD`."""
    chunk = options.batch_size * len(tta_views(options.tta))
    if options.max_images_per_forward is not None:
        return min(chunk, options.max_images_per_forward)
    if device.type == "cpu":
        return min(chunk, CPU_IMAGES_PER_FORWARD)
    return chunk


def predict_scene(
    read: ReadFn,
    grid: TileGrid,
    model: torch.nn.Module,
    card: "ModelCard",
    options: PredictOptions,
    *,
    on_progress: Callable[[int], None] | None = None,
    rows: tuple[int, int] | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Run the model over a scene window by window and yield finished probability bands.

    Windows are read through ``read(tile.read)``; a window without any valid pixel is not
    run (it counts as done for progress and its pixels come out NaN). Invalid input pixels
    are set to 0 (black), as crops are padded in training (d3fnet.md §5.2: constant border
    0), and the uint8 windows are scaled on the device per channel as ``x = image *
    band.scale + band.offset`` for each of ``card.bands`` (float32). Where ``read`` reports
    no auxiliary data (its optional ``aux_valid``), the card's ``nir``/``aux`` channels are
    NaN instead, which the multimodal models take as "no auxiliary data here" (they then
    compute their RGB-only path; :mod:`roadx.models.d3fnet_mm`); validity for stitching
    stays ``valid``, the scene's own. The model runs under
    ``torch.inference_mode`` in the precision :func:`roadx.runtime.choose_precision` picks
    for ``options.precision`` (float32, or bf16/fp16 autocast), channels-last by default;
    the sigmoid of its float32 logits (skipped if ``card.output == "probabilities"``) is
    averaged over the TTA views and stitched. The model is moved to the device and put in
    eval mode.

    Memory is independent of the scene height: see the module docstring.

    Args:
        read: boundless window reader, ``Window -> (image (C, tile_px, tile_px) uint8,
            valid (tile_px, tile_px) bool)``, optionally with a third item ``aux_valid``
            ``(tile_px, tile_px)`` bool or None (:data:`ReadFn`); called from one worker
            thread, sequentially.
        grid: the scene's window grid (``tile_px`` divisible by 32 for the roadx models).
        model: ``(B, C, H, W)`` float32 -> ``(B, 1, H, W)`` logits (or probabilities),
            ``C = card.in_chans``.
        card: the model's card (input scaling, output kind).
        options: TTA, blending, batch size, device, precision, memory format, compile.
        on_progress: called with 1 after each window (run or skipped); ``len(grid)`` in all.
        rows: ``(r0, r1)``: only the bands of grid rows ``[r0, r1)`` (one stripe of the
            scene, :meth:`roadx.tiling.TileGrid.stripes`); the windows of the
            ``grid.halo_rows`` grid rows above ``r0`` are run too (cosine blending; none
            for ``"crop"``), so the bands are bit-identical to those of a whole-scene run
            on the same device and precision. None: the whole scene.

    Yields:
        ``(Window(row0, 0, h, grid.width), prob)`` with ``prob (h, grid.width)`` float32 in
        ``[0, 1]``, NaN outside valid data; consecutive bands covering ``[0, grid.height)``
        (with ``rows``: the rows those grid rows own, one band per grid row).

    Raises:
        roadx.errors.DeviceError: CUDA requested but absent; out of memory with one window;
            bf16 requested on a GPU without bf16.
        roadx.errors.InputError: ``read`` returned wrongly shaped arrays, or auxiliary
            validity for a card without ``nir``/``aux`` channels, or the model output is not
            ``(B, 1, H, W)`` (the model itself raises InputError for bad sizes).
    """
    device = resolve_device(options.device)
    precision = choose_precision(options.precision, device)
    model = model.to(device).eval()
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    owned = (0, grid.n_rows) if rows is None else rows
    halo = grid.halo_rows if options.blend == "cosine" else 0
    first = max(0, owned[0] - halo)
    stitcher = Stitcher(grid, blend=options.blend, rows=(first, owned[1]))
    chunk = images_per_forward(options, device)
    forward = _Forward(model, card, device, precision, options)
    backoff = BackoffForward(forward, device, chunk=chunk)
    reader = _BatchReader(read, grid, batch_size=options.batch_size, pin=device.type == "cuda",
                          rows=(first, owned[1]))
    logger.info(
        "predicting %d windows (%dx%d px, tile %d, overlap %d) on %s: tta=%s blend=%s "
        "precision=%s (%s), %d torch threads",
        len(grid), grid.height, grid.width, grid.tile_px, grid.overlap_px, device,
        options.tta, options.blend, precision.name, precision.reason, torch.get_num_threads(),
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadx-read") as pool:
        pending = pool.submit(reader)
        try:
            while (batch := pending.result()) is not None:
                pending = pool.submit(reader)  # read the next batch while this one runs
                probs = _run_batch(batch, forward, backoff, options.tta, device)
                j = 0
                for tile, has_data in zip(batch.tiles, batch.has_data, strict=True):
                    if has_data:
                        bands = stitcher.add(tile, probs[j], batch.valid[j])
                        j += 1
                    else:
                        bands = stitcher.skip(tile)
                    if on_progress is not None:
                        on_progress(1)
                    if tile.row >= owned[0]:  # halo rows only blend into the owned bands
                        yield from bands
        finally:
            pending.cancel()
    assert stitcher.done, "every tile was stitched, so every row must have been emitted"
    _warn_non_finite(forward)


NON_FINITE_WARN_SHARE = 0.5
"""Share of NaN/infinite model outputs above which a run warns (its roads would be lost)."""


def _warn_non_finite(forward: _Forward) -> None:
    """Warn when most model outputs were NaN or infinite (a diverged or overflowing model:
    those pixels become nodata, so the run finds few or no roads without failing)."""
    if forward.outputs and forward.non_finite > NON_FINITE_WARN_SHARE * forward.outputs:
        logger.warning(
            "%.0f %% of the model's outputs were NaN or infinite (precision %s): those "
            "pixels are treated as nodata, so roads will be missing. Check the weights "
            "(a diverged training run?) or try --precision fp32.",
            100 * forward.non_finite / forward.outputs, forward.precision.name,
        )


def _run_batch(
    batch: _Batch, forward: _Forward, backoff: BackoffForward, tta: TtaMode, device: torch.device
) -> np.ndarray:
    """Return ``(n, tile_px, tile_px)`` float32 TTA-averaged probabilities of a batch."""
    if not batch.valid:
        return np.empty((0, 0, 0), dtype=np.float32)
    with torch.inference_mode():
        aux_nodata = (None if batch.aux_nodata is None
                      else batch.aux_nodata.to(device, non_blocking=True))
        x = forward.scale(batch.images.to(device, non_blocking=True), aux_nodata)  # (n,C,T,T)
        p = merge(backoff(augment(x, tta)), tta)  # (n * V, C, T, T) -> (n, 1, T, T)
        return p[:, 0].cpu().numpy()
