"""Domain augmentation and scale jitter (issue #9): photometric effects that leave the labels
where they are, each effect doing what it claims, determinism per seed, and a scale jitter that
resamples image and masks together."""

from pathlib import Path

import numpy as np
import pytest

from roadx.io.samples import read_labelled_pair
from roadx.train.augment import (
    AugmentParams, DomainDraw, augment, domain_shift, draw_domain, jpeg_roundtrip, rgb_to_hsv8,
)
from roadx.train.config import TrainConfig
from roadx.errors import InputError
from roadx.train.data import ROAD_BIT, VALID_BIT, PatchDataset, Tile, resize_crop
from roadx.train.datasets import Sample

NO_GEOMETRY = dict(p_hsv=0, p_shift_scale=0, p_hflip=0, p_vflip=0, p_rot90=0)


@pytest.fixture(scope="module")
def crop(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 384 px Massachusetts crop (rows 512-896, cols 768-1152) with suburb, trees and roads: (image uint8 RGB, road bool)."""
    pair = read_labelled_pair(
        shared_data / "massachusetts_cskanani" / "images" / "1.jpg",
        shared_data / "massachusetts_cskanani" / "masks" / "1.png",
        source_gsd_m=1.0, target_gsd_m=1.0,
    )
    road = pair.road[512:896, 768:1152]
    assert 0.02 < road.mean() < 0.4
    return np.ascontiguousarray(pair.image[512:896, 768:1152]), road


def _high_freq(image: np.ndarray) -> float:
    grey = image.astype(float).mean(-1)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_each_effect_changes_the_image_as_it_says(crop: tuple[np.ndarray, np.ndarray]) -> None:
    image, road = crop
    rng = np.random.default_rng(0)
    hsv = rgb_to_hsv8(image)
    green = (hsv[..., 0] > 35) & (hsv[..., 0] < 85) & (hsv[..., 1] > 40)  # vegetation
    assert green.mean() > 0.05
    arid = rgb_to_hsv8(domain_shift(image, DomainDraw(palette="arid"), rng))
    # vegetation turns brown/ochre (hue 0..40° = 0..20 in 8-bit units), and less saturated
    assert np.median(arid[..., 0][green]) < 20
    assert np.median(arid[..., 1][green]) < np.median(hsv[..., 1][green])
    snow = domain_shift(image, DomainDraw(palette="snow"), rng).astype(float)
    off_road = ~road
    assert snow[off_road].mean() > image[off_road].astype(float).mean() + 20
    assert snow.std(axis=-1).mean() < image.astype(float).std(axis=-1).mean()  # colourless
    rotated = rgb_to_hsv8(domain_shift(image, DomainDraw(palette="hue", hue_deg=120), rng))
    shift = (rotated[..., 0][green] - hsv[..., 0][green]) % 180
    assert np.median(shift) == pytest.approx(60, abs=3)
    grey = domain_shift(image, DomainDraw(desaturate=1.0), rng).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 1
    hazy = domain_shift(image, DomainDraw(haze=0.4), rng)
    assert hazy.min() > image.min() + 60 and hazy.astype(float).std() < 0.7 * image.astype(float).std()
    blurred = domain_shift(image, DomainDraw(blur_sigma_px=1.5), rng)
    sharpened = domain_shift(image, DomainDraw(blur_sigma_px=-1.0), rng)
    assert _high_freq(blurred) < 0.7 * _high_freq(image) < 0.7 * _high_freq(sharpened)
    noisy = domain_shift(image, DomainDraw(noise_sigma=8.0), rng).astype(float)
    assert (noisy - image).std() == pytest.approx(8.0, rel=0.15)
    bled = domain_shift(image, DomainDraw(bleed_sigma_px=3.0), rng).astype(float)
    luma = lambda x: x @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    assert np.abs(luma(bled) - luma(image.astype(float))).mean() < 2.0  # brightness kept
    assert np.abs(bled - image).mean() > 2.0  # colours smeared
    jpeg = jpeg_roundtrip(image, 20)
    assert jpeg.shape == image.shape and 2.0 < np.abs(jpeg.astype(float) - image).mean() < 20


def test_domain_augmentation_keeps_masks_aligned_and_is_deterministic(
    crop: tuple[np.ndarray, np.ndarray],
) -> None:
    image, road = crop
    valid = np.ones_like(road)
    params = AugmentParams(p_domain=1.0, **NO_GEOMETRY)
    changed = 0
    for seed in range(12):
        out = augment(image, road, valid, np.random.default_rng(seed), params)
        again = augment(image, road, valid, np.random.default_rng(seed), params)
        assert all(np.array_equal(a, b) for a, b in zip(out, again))
        assert out[0].shape == image.shape and out[0].dtype == np.uint8
        assert np.array_equal(out[1], road) and np.array_equal(out[2], valid)
        changed += not np.array_equal(out[0], image)
    assert changed >= 10  # nearly every draw changes the look
    # with the full chain, the flips/rotations still move image and masks together
    full = AugmentParams(p_domain=1.0, p_hsv=0, p_shift_scale=0)
    for seed in range(6):
        out_image, out_road, _ = augment(image, road, valid, np.random.default_rng(seed), full)
        base_image, base_road, _ = augment(image, road, valid, np.random.default_rng(seed),
                                           AugmentParams(p_domain=1.0, **NO_GEOMETRY))
        # the geometry is one of the 8 dihedral maps; find it from the road mask
        maps = [np.rot90(m, k) for m in (base_road, base_road[:, ::-1], base_road[::-1],
                                          base_road[::-1, ::-1]) for k in range(2)]
        assert any(np.array_equal(out_road, m) for m in maps)
    # off (the default) leaves the §5.2 random stream untouched, so old runs resume exactly
    ref = augment(image, road, valid, np.random.default_rng(5))
    same = augment(image, road, valid, np.random.default_rng(5), AugmentParams(p_domain=0.0))
    assert all(np.array_equal(a, b) for a, b in zip(ref, same))


def test_draws_cover_every_effect() -> None:
    draws = [draw_domain(np.random.default_rng(s)) for s in range(400)]
    assert {d.palette for d in draws} == {"none", "hue", "arid", "snow"}
    for name in ("desaturate", "haze", "noise_sigma", "jpeg_quality", "bleed_sigma_px"):
        share = np.mean([getattr(d, name) != 0 for d in draws])
        assert 0.08 < share < 0.35, name
    assert any(d.blur_sigma_px > 0 for d in draws) and any(d.blur_sigma_px < 0 for d in draws)


def test_resize_crop_keeps_roads_on_the_image(crop: tuple[np.ndarray, np.ndarray]) -> None:
    image, road = crop
    valid = np.ones_like(road)
    valid[:, :40] = False
    for size in (192, 768):
        out_image, out_road, out_valid = resize_crop(image, road, valid, size)
        assert out_image.shape == (size, size, 3) and out_road.shape == (size, size)
        assert out_road.mean() == pytest.approx(road.mean(), rel=0.15)
        assert out_valid[:, : int(35 * size / 384)].sum() == 0 and out_valid[:, -10:].all()
        # the road mask still lies on the same image pixels: back to 384 px, they agree
        back_road = resize_crop(out_image, out_road, out_valid, 384)[1]
        iou = (back_road & road).sum() / (back_road | road).sum()
        assert iou > (0.8 if size == 192 else 0.95)


def test_scale_jitter_draws_other_gsds_deterministically(crop: tuple[np.ndarray, np.ndarray]) -> None:
    image, road = crop
    label = (road.astype(np.uint8) * ROAD_BIT) | VALID_BIT
    tile = Tile(image, label, Sample(Path("1.jpg"), (), "pair", "1", Path("mass")), 1.0)
    params = AugmentParams(p_domain=1.0, scale_jitter=2.0, **NO_GEOMETRY)
    dataset = PatchDataset([tile], length=32, crop_px=128, bands=("B", "G", "R"), scale=1 / 255,
                           offset=0.0, seed=4, augment_params=params, road_crop_ratio=0.0)
    fractions = []
    for index in range(32):
        x, y, v = dataset[index]
        x2, y2, _ = dataset[index]
        assert x.shape == (3, 128, 128) and y.shape == (1, 128, 128) and v.shape == (1, 128, 128)
        assert np.array_equal(x.numpy(), x2.numpy()) and np.array_equal(y.numpy(), y2.numpy())
        fractions.append(float(v.mean()))
    assert min(fractions) == 1.0  # every resampled window lies inside the tile
    plain = PatchDataset([tile], length=4, crop_px=128, bands=("B", "G", "R"), scale=1 / 255,
                         offset=0.0, seed=4, augment_params=AugmentParams(**NO_GEOMETRY))
    assert plain[0][0].shape == (3, 128, 128)


def test_config_checks_domain_options() -> None:
    assert TrainConfig(domain_aug=0.5, scale_jitter=2.0).domain_aug == 0.5
    with pytest.raises(InputError, match="domain_aug"):
        TrainConfig(domain_aug=2.0)
    with pytest.raises(InputError, match="scale_jitter"):
        TrainConfig(scale_jitter=0.5)
