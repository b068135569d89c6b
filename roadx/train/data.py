"""Tiles in memory, random training crops and fixed validation windows.

Every sample is decoded once, resampled to the training GSD and kept in RAM as an RGB array
(plus a 4th band, NIR or auxiliary, for a multimodal model) and a label byte (bit 0 road,
bit 1 valid, bit 2 the 4th band has data), optionally cached as ``.npy`` files so the next
run skips decoding. Training crops are drawn deterministically from ``(seed, epoch, index)``,
so an interrupted run resumes with the very same crops. Peak memory is about 4 B per pixel of
all tiles (≈ 1 GB for the 113 Massachusetts tiles at 1 m).
"""

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from roadx.errors import DatasetError, InputError, RoadxError
from roadx.io.samples import LabelledImage, read_labelled_pair, read_labelled_scene
from roadx.train.augment import AugmentParams, augment
from roadx.train.datasets import Sample
from roadx.train.synthetic import SyntheticTiles

logger = logging.getLogger(__name__)

ROAD_BIT, VALID_BIT, EXTRA_VALID_BIT = 1, 2, 4
_CACHE_VERSION = "2"  # 2: per-band stretch (roadx.io.bands), optional 4th band


@dataclass(frozen=True)
class Tile:
    """A decoded sample at the training GSD.

    Attributes:
        image: (H, W, C) uint8: R, G, B, then the 4th band when the tile has one (C = 4).
        label: (H, W) uint8, bit 0 = road, bit 1 = valid, bit 2 = the 4th band has data.
        sample: where it came from.
        gsd_m: metres per pixel.
        bands: the name of each channel of ``image``, e.g. ``("R", "G", "B", "NIR")``.
    """

    image: np.ndarray
    label: np.ndarray
    sample: Sample
    gsd_m: float
    bands: tuple[str, ...] = ("R", "G", "B")

    @property
    def valid_px(self) -> int:
        """Number of valid pixels."""
        return int(np.count_nonzero(self.label & VALID_BIT))


def read_sample(
    sample: Sample, *, gsd_m: float | None, road_width_m: float, extra: str | None = None
) -> LabelledImage:
    """Decode one sample with :mod:`roadx.io.samples` at ``gsd_m``.

    Args:
        sample: what to read (``sample.aux``: its auxiliary raster, if any).
        gsd_m: training GSD in m/px (None: the sample's own).
        road_width_m: buffer width of vector labels, metres.
        extra: name of the model's 4th band (``"NIR"``, ``"DSM"``, ...) to read from
            ``sample.aux`` or, for NIR, the image itself; None: R, G, B only.

    Raises:
        DatasetError: the sample is unreadable, mismatched or empty.
    """
    aux = sample.aux if extra is not None else None
    if sample.kind == "pair":
        return read_labelled_pair(
            sample.image, sample.labels[0], source_gsd_m=sample.source_gsd_m, target_gsd_m=gsd_m,
            extra=extra, aux_path=aux,
        )
    return read_labelled_scene(
        sample.image, sample.labels, target_gsd_m=gsd_m, road_width_m=road_width_m,
        extra=extra, aux_path=aux,
    )


def _cache_key(
    sample: Sample, gsd_m: float | None, road_width_m: float, extra: str | None
) -> str:
    parts = [_CACHE_VERSION, str(gsd_m), str(road_width_m), str(extra)]
    aux = (sample.aux,) if extra is not None and sample.aux is not None else ()
    for path in (sample.image, *sample.labels, *aux):
        stat = path.stat()
        parts += [str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def load_tile(
    sample: Sample, *, gsd_m: float | None, road_width_m: float, cache_dir: Path | None = None,
    extra: str | None = None,
) -> Tile:
    """Decode one sample (or load it from ``cache_dir``) into a :class:`Tile`.

    ``extra``: the model's 4th band, see :func:`read_sample`.

    Raises:
        DatasetError: the sample is unreadable, mismatched or has no valid pixel.
    """
    if cache_dir is not None:
        key = _cache_key(sample, gsd_m, road_width_m, extra)
        img_path, lab_path = cache_dir / f"{key}.img.npy", cache_dir / f"{key}.lab.npy"
        if img_path.is_file() and lab_path.is_file():
            image, label = np.load(img_path), np.load(lab_path)
            names = ("R", "G", "B", extra) if image.shape[-1] == 4 and extra else ("R", "G", "B")
            return Tile(image, label, sample, float(gsd_m or 0.0), names)
    try:
        item = read_sample(sample, gsd_m=gsd_m, road_width_m=road_width_m, extra=extra)
    except DatasetError:
        raise
    except (RoadxError, OSError, ValueError, RuntimeError) as err:
        raise DatasetError(f"{sample.image}: cannot be read ({err}).") from err
    label = (item.road.astype(np.uint8) * ROAD_BIT) | (item.valid.astype(np.uint8) * VALID_BIT)
    if item.extra_valid is not None:
        label |= (item.extra_valid & item.valid).astype(np.uint8) * EXTRA_VALID_BIT
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for path, arr in ((img_path, item.image), (lab_path, label)):
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
    return Tile(item.image, label, sample, item.gsd_m, item.bands)


def load_tiles(
    samples: Sequence[Sample],
    *,
    gsd_m: float | None,
    road_width_m: float,
    cache_dir: Path | None = None,
    on_tile: Callable[[int], None] | None = None,
    extra: str | None = None,
) -> tuple[list[Tile], list[tuple[Path, str]]]:
    """Decode every sample; bad samples are logged with their path and skipped.

    Args:
        samples: what to load.
        gsd_m: training GSD (None: each sample's own).
        road_width_m: buffer width for vector labels.
        cache_dir: optional ``.npy`` cache folder.
        on_tile: called with 1 after each sample (progress).
        extra: the model's 4th band, see :func:`read_sample`.

    Returns:
        (tiles, skipped) where skipped lists (path, reason).
    """
    tiles: list[Tile] = []
    skipped: list[tuple[Path, str]] = []
    for sample in samples:
        try:
            tile = load_tile(sample, gsd_m=gsd_m, road_width_m=road_width_m, cache_dir=cache_dir,
                             extra=extra)
            tiles.append(tile)
        except (DatasetError, InputError) as err:
            logger.warning("skipped: %s", err)  # the message names the file
            skipped.append((sample.image, str(err)))
        if on_tile is not None:
            on_tile(1)
    return tiles, skipped


def crop(tile: Tile, row: int, col: int, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``size_px`` square at (row, col) (may extend past the tile: zero, invalid).

    Returns:
        ((size, size, C) uint8 in ``tile.bands`` order, (size, size) uint8 label byte).
    """
    height, width = tile.label.shape
    image = np.zeros((size_px, size_px, tile.image.shape[-1]), np.uint8)
    label = np.zeros((size_px, size_px), np.uint8)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size_px, height), min(col + size_px, width)
    if r1 > r0 and c1 > c0:
        image[r0 - row : r1 - row, c0 - col : c1 - col] = tile.image[r0:r1, c0:c1]
        label[r0 - row : r1 - row, c0 - col : c1 - col] = tile.label[r0:r1, c0:c1]
    return image, label


def channel_map(
    card_bands: Sequence[str], tile_bands: Sequence[str], optional: Sequence[str] = ()
) -> tuple[int, ...]:
    """Index into a tile's channels of each model input band; -1 for an absent optional band.

    Args:
        card_bands: the model card's band names in network order, e.g. ``("B", "G", "R")``.
        tile_bands: the names of the tile's channels, e.g. ``("R", "G", "B", "NIR")``.
        optional: card bands the model works without (``BandSpec.optional``).

    Returns:
        e.g. ``(2, 1, 0)`` for BGR from RGB; ``(2, 1, 0, -1)`` when NIR is optional and absent.

    Raises:
        InputError: a band that is not optional is missing from the tile.
    """
    names = [b.upper() for b in tile_bands]
    out = []
    for band in card_bands:
        if band.upper() in names:
            out.append(names.index(band.upper()))
        elif band in optional:
            out.append(-1)
        else:
            raise InputError(
                f"the model's band {band!r} cannot be made from training data with bands "
                f"{tuple(tile_bands)}; give images with that band or an auxiliary raster "
                "(--aux-suffix)."
            )
    return tuple(out)


def to_tensors(
    image: np.ndarray,
    road: np.ndarray,
    valid: np.ndarray,
    *,
    channels: Sequence[int],
    scale: float | Sequence[float],
    offset: float | Sequence[float],
    extra_valid: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert one crop to network tensors.

    Args:
        image: (H, W, C) uint8, R, G, B (then a 4th band).
        road: (H, W) bool.
        valid: (H, W) bool.
        channels: image channel of each network channel (BGR from RGB → (2, 1, 0)); -1: the
            band is absent and its channel is NaN (see ``BandSpec.optional``).
        scale: one multiplier, or one per network channel (``ModelCard.input_scales``).
        offset: one offset, or one per network channel (``ModelCard.input_offsets``).
        extra_valid: (H, W) bool, where channels beyond the third have data; NaN elsewhere
            (None: everywhere).

    Returns:
        x (C', H, W) float32 with C' = len(channels), road (1, H, W) float32,
        valid (1, H, W) float32.
    """
    picked = [max(c, 0) for c in channels]
    x = torch.from_numpy(np.ascontiguousarray(image[..., picked].transpose(2, 0, 1)))
    if isinstance(scale, int | float) and isinstance(offset, int | float):
        x = x.float() * scale + offset
    else:
        n = x.shape[0]
        scales = torch.as_tensor(scale, dtype=torch.float32).expand(n).view(n, 1, 1)
        offsets = torch.as_tensor(offset, dtype=torch.float32).expand(n).view(n, 1, 1)
        x = x.float() * scales + offsets
    for k, c in enumerate(channels):
        if c < 0:
            x[k] = float("nan")
        elif c >= 3 and extra_valid is not None:
            x[k][torch.from_numpy(~extra_valid)] = float("nan")
    y = torch.from_numpy(road.astype(np.float32))[None]
    v = torch.from_numpy(valid.astype(np.float32))[None]
    return x, y, v


def sampling_weights(tiles: Sequence[Tile], *, min_source_share: float = 0.0) -> np.ndarray:
    """Probability of drawing each tile: its share of valid pixels, with small sources lifted.

    Every source folder whose valid pixels make up less than ``min_source_share`` of the total
    is drawn with that share instead and the others shrink in proportion; a folder that the
    shrinking pushes below the minimum is lifted too, until every folder has at least
    ``min_source_share``. So a few small scenes of another sensor are seen regularly next to a
    large dataset. Within a folder, tiles keep their relative weights.

    Args:
        tiles: the training tiles.
        min_source_share: smallest share of crops per source folder, 0 <= s <= 1 / n_sources.

    Returns:
        (len(tiles),) float64 probabilities summing to 1.

    Raises:
        InputError: ``min_source_share`` times the number of source folders exceeds 1.
    """
    valid = np.array([max(t.valid_px, 1) for t in tiles], np.float64)
    sources = [str(t.sample.source) for t in tiles]
    totals = {s: valid[[k for k, x in enumerate(sources) if x == s]].sum() for s in set(sources)}
    if not 0.0 <= min_source_share * len(totals) <= 1.0 + 1e-9:
        raise InputError(
            f"--min-source-share {min_source_share:g} with {len(totals)} source folders asks for "
            f"{100 * min_source_share * len(totals):.0f} % of the crops; use at most "
            f"{1.0 / len(totals):.3g}."
        )
    shares = {s: v / valid.sum() for s, v in totals.items()}
    small: set[str] = set()
    while True:  # lift folders until no remaining one falls below the minimum
        rest = 1.0 - min_source_share * len(small)
        big_total = sum(shares[s] for s in shares if s not in small)
        scaled = {s: shares[s] / big_total * rest for s in shares if s not in small}
        below = {s for s, share in scaled.items() if share < min_source_share}
        if not below:
            break
        small |= below
    lifted = {s: min_source_share if s in small else scaled[s] for s in shares}
    weights = np.array([valid[k] / totals[s] * lifted[s] for k, s in enumerate(sources)])
    return weights / weights.sum()


class PatchDataset(torch.utils.data.Dataset):
    """Random augmented training crops; item ``i`` of epoch ``e`` depends only on (seed, e, i).

    A tile is picked with probability proportional to its valid pixels (see
    :func:`sampling_weights` for ``min_source_share``); a crop is redrawn (up to 20 times)
    until at least ``min_valid_fraction`` of it (or of the tile, when the tile is smaller than
    the crop) is valid and, for a ``road_crop_ratio`` share of items, it contains at least
    0.1 % road pixels.
    """

    def __init__(
        self,
        tiles: Sequence[Tile],
        *,
        length: int,
        crop_px: int,
        bands: Sequence[str],
        scale: float | Sequence[float],
        offset: float | Sequence[float],
        seed: int = 0,
        min_valid_fraction: float = 0.5,
        road_crop_ratio: float = 0.8,
        min_source_share: float = 0.0,
        augment_params: AugmentParams | None = AugmentParams(),
        synthetic: SyntheticTiles | None = None,
        optional_bands: Sequence[str] = (),
    ) -> None:
        """Set up sampling weights; ``length`` is the number of crops per epoch.

        ``bands`` are the model card's band names in network order (``("B", "G", "R")``);
        ``optional_bands`` those the model works without (NaN where a tile lacks them or
        has no data, see :func:`to_tensors`).

        ``synthetic`` (``TrainConfig.synthetic_share`` > 0) replaces the items it picks by
        crops of freshly generated scenes; the other items keep their real crops.

        Raises:
            DatasetError: no tiles.
            InputError: ``min_source_share`` too large for the number of source folders.
        """
        if not tiles:
            raise DatasetError("no training tiles to draw crops from.")
        self.tiles = list(tiles)
        self.length, self.crop_px, self.seed = length, crop_px, seed
        self.bands, self.optional_bands = tuple(bands), tuple(optional_bands)
        self.scale, self.offset = scale, offset
        for tile in self.tiles:  # a missing band that is not optional fails here, not mid-epoch
            channel_map(self.bands, tile.bands, self.optional_bands)
        self.min_valid_fraction, self.road_crop_ratio = min_valid_fraction, road_crop_ratio
        self.augment_params = augment_params
        self.synthetic = synthetic
        self.weights = sampling_weights(self.tiles, min_source_share=min_source_share)
        self.epoch = 0

    def __len__(self) -> int:
        """Crops per epoch."""
        return self.length

    def _draw(
        self, rng: np.random.Generator, size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """A crop: (image (S, S, C) uint8, label byte (S, S), the tile's band names)."""
        need_road = rng.random() < self.road_crop_ratio
        size = size or self.crop_px
        min_road = max(1, size * size // 1000)
        best: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None
        for _ in range(20):
            tile = self.tiles[int(rng.choice(len(self.tiles), p=self.weights))]
            height, width = tile.label.shape
            row = int(rng.integers(min(0, height - size), max(0, height - size) + 1))
            col = int(rng.integers(min(0, width - size), max(0, width - size) + 1))
            image, label = crop(tile, row, col, size)
            need_px = self.min_valid_fraction * min(size * size, tile.valid_px)
            valid_ok = np.count_nonzero(label & VALID_BIT) >= need_px
            road_ok = np.count_nonzero((label & (ROAD_BIT | VALID_BIT)) == 3) >= min_road
            if valid_ok and (road_ok or not need_road):
                return image, label, tile.bands
            if best is None or valid_ok:
                best = (image, label, tile.bands)
        assert best is not None
        return best

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop ``index`` of the current epoch: x (C, S, S) with C = len(bands) (NaN where an
        optional band is absent), road (1, S, S), valid (1, S, S)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        params = self.augment_params
        zoom = 1.0
        # no draw at all when off, so earlier runs keep their random stream (exact resume)
        if params is not None and params.p_domain > 0 and params.scale_jitter > 1:
            if rng.random() < params.p_domain:
                log_j = float(np.log(params.scale_jitter))
                zoom = float(np.exp(rng.uniform(-log_j, log_j)))
        window = max(32, int(round(self.crop_px / zoom)))
        tile_bands: tuple[str, ...] = ("R", "G", "B")
        if self.synthetic is not None and self.synthetic.picks(self.epoch, index):
            image, road, valid = self.synthetic.crop(self.epoch, index, self.crop_px, zoom)
        else:
            image, label, tile_bands = self._draw(rng, window)
            road, valid = (label & ROAD_BIT) > 0, (label & VALID_BIT) > 0
            if image.shape[-1] > 3:  # the 4th band's validity travels as one more channel
                image = np.concatenate([image, ((label & EXTRA_VALID_BIT) > 0)[..., None]
                                        .astype(np.uint8) * 255], axis=-1)
            if window != self.crop_px:
                image, road, valid = resize_crop(image, road, valid, self.crop_px)
        if self.augment_params is not None:
            image, road, valid = augment(image, road, valid, rng, self.augment_params)
        extra_valid = None
        if image.shape[-1] > 3:
            image, extra_valid = image[..., :-1], image[..., -1] >= 250
        return to_tensors(
            image, road, valid, channels=channel_map(self.bands, tile_bands, self.optional_bands),
            scale=self.scale, offset=self.offset, extra_valid=extra_valid,
        )


def resize_crop(
    image: np.ndarray, road: np.ndarray, valid: np.ndarray, size_px: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample a square crop to ``size_px`` (the scale jitter: imagery at another GSD).

    Bilinear for the image; the road and valid masks are resampled as fractions and
    re-binarised at 0.5 (road) and 0.999 (valid: a pixel touching no-data stays invalid).

    Args:
        image: (S, S, C) uint8.
        road: (S, S) bool.
        valid: (S, S) bool.
        size_px: output side in pixels.

    Returns:
        (image (size, size, C) uint8, road (size, size) bool, valid (size, size) bool).
    """
    from scipy.ndimage import zoom

    factor = size_px / image.shape[0]

    def resample(a: np.ndarray) -> np.ndarray:
        out = zoom(a, (factor, factor) + (1,) * (a.ndim - 2), order=1, grid_mode=True,
                   mode="nearest")
        return out[:size_px, :size_px]

    out_image = np.clip(np.round(resample(image.astype(np.float32))), 0, 255).astype(np.uint8)
    out_road = resample(road.astype(np.float32)) >= 0.5
    out_valid = resample(valid.astype(np.float32)) >= 0.999
    return out_image, out_road, out_valid


def validation_windows(
    tiles: Sequence[Tile], *, size_px: int, max_windows: int, min_valid_fraction: float = 0.25
) -> list[tuple[int, int, int]]:
    """Fixed validation windows: a grid of ``size_px`` squares over every tile, evenly thinned.

    Returns:
        (tile index, row, col) triples, at most ``max_windows``, the same every epoch.
    """
    found = []
    for k, tile in enumerate(tiles):
        height, width = tile.label.shape
        for row in range(0, max(height - size_px // 4, 1), size_px):
            for col in range(0, max(width - size_px // 4, 1), size_px):
                _, label = crop(tile, row, col, size_px)
                if np.count_nonzero(label & VALID_BIT) >= min_valid_fraction * size_px * size_px:
                    found.append((k, row, col))
    if len(found) > max_windows:
        pick = np.linspace(0, len(found) - 1, max_windows).round().astype(int)
        found = [found[i] for i in pick]
    return found
