"""Training data: dataset layouts on real samples, no-data exclusion, split hygiene, augmentation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from roadx.errors import DatasetError
from roadx.io.samples import read_labelled_pair, read_labelled_scene, white_nodata
from roadx.train.augment import (
    AugmentParams, augment, hsv_shift, hsv8_to_rgb, rgb_to_hsv8, sensor_shift, shift_scale,
)
from roadx.train.data import VALID_BIT, PatchDataset, load_tile, load_tiles
from roadx.train.datasets import detect_format, discover_samples, split_samples, tile_id_of
from roadx.train.loss import dice_bce_loss
from roadx.train.state import lr_at

LORUDARKU_CROPS = ("10078675_15_0_0", "10078675_15_0_1", "10228675_15_1_1")


def _link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


@pytest.fixture
def deepglobe_dir(shared_data: Path, tmp_path: Path) -> Path:
    """A DeepGlobe-style flat folder built from two Massachusetts crops (symlinks, in tmp)."""
    src = shared_data / "massachusetts_lorudarku"
    for k, stem in enumerate(LORUDARKU_CROPS[:2]):
        _link(src / "images" / f"{stem}.jpg", tmp_path / "dg" / f"{100 + k}_sat.jpg")
        _link(src / "masks" / f"{stem}.png", tmp_path / "dg" / f"{100 + k}_mask.png")
    return tmp_path / "dg"


@pytest.fixture
def gis_dir(shared_data: Path, tmp_path: Path) -> Path:
    """The SpaceNet Vegas pan tile with its centrelines, matched by stem (symlinks, in tmp)."""
    src = shared_data / "spacenet_solaris"
    _link(src / "road_mask_input.tif", tmp_path / "gis" / "vegas.tif")
    _link(src / "sample_roads_for_masking.geojson", tmp_path / "gis" / "vegas.geojson")
    return tmp_path / "gis"


def test_tile_ids_group_quadrant_crops() -> None:
    assert tile_id_of("10078675_15_1_0") == "10078675_15"
    assert tile_id_of("10978945_15") == "10978945_15"
    assert tile_id_of("7") == "7"
    assert tile_id_of("104_sat") == "104"


def test_folders_layout_marks_white_nodata(shared_data: Path) -> None:
    root = shared_data / "massachusetts_riya_l209"
    assert detect_format(root) == "folders"
    samples = discover_samples([root])
    assert len(samples) == 9 and all(s.kind == "pair" and s.source_gsd_m == 1.0 for s in samples)
    sample = next(s for s in samples if s.image.stem == "10078735_15")
    item = read_labelled_pair(sample.image, sample.labels[0], source_gsd_m=1.0, target_gsd_m=1.0)
    assert item.image.shape == (1500, 1500, 3) and item.gsd_m == 1.0
    white = white_nodata(item.image)
    assert 0.2 < white.mean() < 0.95  # Riya tiles are 21-91 % white (SOURCES.md)
    np.testing.assert_array_equal(item.valid, ~white)
    # the quirk: the masks still draw roads through the white no-data
    assert np.count_nonzero(item.road & white) > 0


def test_deepglobe_layout_is_resampled_from_half_a_metre(deepglobe_dir: Path) -> None:
    assert detect_format(deepglobe_dir) == "deepglobe"
    samples = discover_samples([deepglobe_dir])
    assert [s.tile_id for s in samples] == ["100", "101"]
    assert all(s.source_gsd_m == 0.5 for s in samples)
    tile = load_tile(samples[0], gsd_m=1.0, road_width_m=4.0)
    assert tile.image.shape == (375, 375, 3) and tile.gsd_m == 1.0  # 750 px × 0.5 m
    native = read_labelled_pair(samples[0].image, samples[0].labels[0], source_gsd_m=0.5)
    road_share = np.count_nonzero(tile.label & 1) / tile.label.size
    assert road_share == pytest.approx(native.road.mean(), rel=0.15)


def test_gis_layout_rasterizes_buffered_centrelines(gis_dir: Path, shared_data: Path) -> None:
    assert detect_format(gis_dir) == "gis"
    (sample,) = discover_samples([gis_dir])
    assert sample.kind == "scene" and sample.labels[0].name == "vegas.geojson"
    item = read_labelled_scene(sample.image, sample.labels, target_gsd_m=1.0, road_width_m=4.0)
    # 1300 px × 2.7e-6° ≈ 396 m north-south, ≈ 323 m east-west at 36° N
    assert item.image.shape[:2] == pytest.approx((396, 323), abs=3)
    assert item.gsd_m == 1.0
    # solaris rasterized the same lines with a ~2 m half-width: 3.3 % road
    assert item.road[item.valid].mean() == pytest.approx(0.033, abs=0.006)
    wider = read_labelled_scene(sample.image, sample.labels, target_gsd_m=1.0, road_width_m=8.0)
    assert wider.road.mean() == pytest.approx(2 * item.road.mean(), rel=0.2)
    # --labels covering several scenes: same result when the file is given explicitly
    scenes = discover_samples([gis_dir], labels=[shared_data / "spacenet_solaris" / "sample_roads.geojson"])
    assert scenes[0].labels[0].name == "vegas.geojson"  # a same-stem file wins


def test_gis_scene_outside_its_labels_is_reported(shared_data: Path, tmp_path: Path) -> None:
    _link(shared_data / "spacenet_solaris" / "road_mask_input.tif", tmp_path / "g" / "a.tif")
    other = shared_data / "spacenet_solaris" / "sample_roads.geojson"  # a different Vegas tile
    (sample,) = discover_samples([tmp_path / "g"], labels=[other])
    tiles, skipped = load_tiles([sample], gsd_m=1.0, road_width_m=4.0)
    assert tiles == [] and skipped[0][0] == sample.image and "none of the road lines" in skipped[0][1]


def test_bad_samples_are_skipped_with_their_path(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    src = shared_data / "massachusetts_lorudarku"
    _link(src / "images" / f"{LORUDARKU_CROPS[0]}.jpg", root / "images" / "good.jpg")
    _link(src / "masks" / f"{LORUDARKU_CROPS[0]}.png", root / "masks" / "good.png")
    (root / "images" / "broken.png").write_bytes(b"not an image at all")
    _link(src / "masks" / f"{LORUDARKU_CROPS[1]}.png", root / "masks" / "broken.png")
    _link(shared_data / "massachusetts_cskanani" / "images" / "1.jpg", root / "images" / "size.jpg")
    _link(src / "masks" / f"{LORUDARKU_CROPS[1]}.png", root / "masks" / "size.png")
    tiles, skipped = load_tiles(discover_samples([root]), gsd_m=1.0, road_width_m=4.0)
    assert [t.sample.image.name for t in tiles] == ["good.jpg"]
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"broken.png", "size.jpg"}
    assert "cannot be read" in reasons["broken.png"]
    assert "750×750" in reasons["size.jpg"] and "1500×1500" in reasons["size.jpg"]


def test_unknown_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        discover_samples([tmp_path])


def test_split_never_puts_a_tile_in_both_sets(shared_data: Path) -> None:
    roots = [shared_data / f"massachusetts_{n}" for n in ("cskanani", "riya_l209", "parth1620", "lorudarku")]
    samples = discover_samples(roots)
    train, val = split_samples(samples, val_fraction=0.1, seed=0)
    key = lambda s: (s.source, s.tile_id)  # noqa: E731
    assert not {key(s) for s in train} & {key(s) for s in val}
    assert len(train) + len(val) == len(samples) == 220
    tiles = {key(s) for s in samples}
    assert len(tiles) == 113
    held = {key(s) for s in val}
    for root in roots:  # >= 10 % of every folder's tiles
        n = len({t for t in tiles if t[0] == root})
        assert len({t for t in held if t[0] == root}) >= 0.1 * n
    # quadrant crops of a held-out Lorudarku tile all go to validation
    lor = [s for s in val if s.source.name == "massachusetts_lorudarku"]
    assert lor and all(sum(s2.tile_id == s.tile_id for s2 in lor) >= 1 for s in lor)
    assert not {s.tile_id for s in lor} & {s.tile_id for s in train if s.source == lor[0].source}
    explicit_train, explicit_val = split_samples(samples, val_ids={"massachusetts_cskanani/2", "10078675_15"})
    assert sorted(s.image.name for s in explicit_val) == ["10078675_15_0_0.jpg", "10078675_15_0_1.jpg",
                                                          "10078675_15_1_0.jpg", "10078675_15_1_1.jpg", "2.jpg"]


def test_held_out_entry_with_a_wrong_folder_name_is_refused(shared_data: Path, caplog) -> None:
    """A ``<folder>/<tile>`` entry whose tile lives in a folder of another name would silently
    be trained on (how an H200 fine-tune trained on the Vegas tile it was scored on): refused,
    naming the entry and the folder; entries for sources not in the run are only logged."""
    samples = discover_samples([shared_data / "massachusetts_cskanani"])
    with pytest.raises(DatasetError, match=r"'renamed/2' matches no data folder of that name, "
                                           r"but its tile is in folder\(s\) "
                                           r"\['massachusetts_cskanani'\]"):
        split_samples(samples, val_ids={"renamed/2"})
    with caplog.at_level("WARNING", logger="roadx.train.datasets"):
        _, val = split_samples(samples, val_ids={"massachusetts_cskanani/2", "spacenet/img9"})
    assert [s.image.name for s in val] == ["2.jpg"]
    assert "1 entries match no sample of this run: spacenet/img9" in caplog.text


def test_loss_ignores_invalid_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[:, :, :, 4:] = False
    changed = logits.clone()
    changed[:, :, :, 4:] = 50.0  # garbage where there is no data
    assert dice_bce_loss(logits, target, valid) == pytest.approx(float(dice_bce_loss(changed, target, valid)))
    assert dice_bce_loss(logits, target) != pytest.approx(float(dice_bce_loss(changed, target)))
    perfect = target * 40 - 20
    assert float(dice_bce_loss(perfect, target, valid)) < 1e-3
    assert float(dice_bce_loss(logits, target, torch.zeros_like(valid))) == 0.0


def test_training_crops_avoid_nodata(shared_data: Path) -> None:
    samples = discover_samples([shared_data / "massachusetts_riya_l209"])[:2]
    tiles, _ = load_tiles(samples, gsd_m=1.0, road_width_m=4.0)
    ds = PatchDataset(tiles, length=6, crop_px=128, bands=("B", "G", "R"), scale=3.2 / 255, offset=-1.6,
                      augment_params=None)
    for i in range(len(ds)):
        x, road, valid = ds[i]
        assert x.shape == (3, 128, 128) and road.shape == valid.shape == (1, 128, 128)
        assert valid.mean() >= 0.5
        white = (x == 255 * 3.2 / 255 - 1.6).all(dim=0)
        assert not (white & (valid[0] > 0)).any()  # white pixels are never valid
    x0, _, _ = ds[0]
    assert torch.equal(x0, ds[0][0])  # item i is deterministic


def test_hsv_round_trip_and_shift() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    back = hsv8_to_rgb(np.round(rgb_to_hsv8(image)))
    assert np.abs(back.astype(int) - image).max() <= 4  # 8-bit HSV quantisation
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 200
    assert hsv_shift(red, 60, 0, 0)[0, 0].tolist() == [0, 200, 0]  # +60 units = +120°: red -> green
    assert hsv_shift(red, 0, 0, -15)[0, 0, 0] == 185


def test_geometric_augmentation_keeps_image_and_mask_aligned() -> None:
    rng = np.random.default_rng(1)
    road = np.zeros((64, 64), bool)
    road[20:26, :] = True
    road[:, 40:43] = True
    image = np.repeat((road * 255).astype(np.uint8)[..., None], 3, axis=-1)
    valid = np.ones_like(road)
    warped_image, warped_road, warped_valid = shift_scale(image, road, valid, sx=1.1, sy=0.9, dx_px=5, dy_px=-3)
    assert not warped_valid.all()  # the shifted-in border is no-data, not background
    for _ in range(8):
        params_rng = np.random.default_rng(rng.integers(1 << 30))
        out_image, out_road, out_valid = augment(image, road, valid, params_rng)
        inside = out_valid & (out_image[..., 0] != 128)
        agree = (out_image[..., 1] > 127) == out_road
        assert agree[inside].mean() > 0.97


def test_sensor_augmentation_darkens_greys_and_keeps_geometry(shared_data: Path) -> None:
    pair = read_labelled_pair(
        shared_data / "massachusetts_cskanani" / "images" / "1.jpg",
        shared_data / "massachusetts_cskanani" / "masks" / "1.png",
        source_gsd_m=1.0, target_gsd_m=1.0,
    )
    image = np.ascontiguousarray(pair.image[:256, :256])
    road = pair.road[:256, :256]
    # gamma 2.5 maps a Massachusetts road grey of ~110 to ~31, the SpaceNet Vegas asphalt level
    dark = sensor_shift(image, gamma=2.5, contrast=1.0, gains=np.ones(3), grey=False)
    assert dark.dtype == np.uint8 and dark.shape == image.shape
    assert sensor_shift(np.full((1, 1, 3), 110, np.uint8), 2.5, 1.0, np.ones(3), False)[0, 0, 0] == 31
    assert np.median(dark[road]) < 0.5 * np.median(image[road])
    assert (dark.astype(int) <= image.astype(int) + 1).all()  # gamma > 1 only darkens
    grey = sensor_shift(image, gamma=1.0, contrast=1.0, gains=np.ones(3), grey=True)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    flat = sensor_shift(image, gamma=1.0, contrast=0.5, gains=np.ones(3), grey=False)
    assert flat.astype(float).std() == pytest.approx(0.5 * image.astype(float).std(), rel=0.05)
    # in the chain: off by default (the §5.2 reference), never moves the road mask
    valid = np.ones_like(road)
    ref = augment(image, road, valid, np.random.default_rng(3))
    again = augment(image, road, valid, np.random.default_rng(3), AugmentParams(p_sensor=0.0))
    assert all(np.array_equal(a, b) for a, b in zip(ref, again))
    no_geometry = AugmentParams(p_hsv=0, p_shift_scale=0, p_hflip=0, p_vflip=0, p_rot90=0, p_sensor=1)
    for seed in range(4):
        out_image, out_road, out_valid = augment(image, road, valid, np.random.default_rng(seed), no_geometry)
        assert not np.array_equal(out_image, image)
        assert np.array_equal(out_road, road) and np.array_equal(out_valid, valid)


def test_lr_schedule_warms_up_then_decays() -> None:
    lrs = [lr_at(s, total_steps=100, peak_lr=1e-3, warmup_steps=10, min_ratio=0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)


def test_source_shares_never_fall_below_the_minimum_nor_go_negative() -> None:
    from types import SimpleNamespace

    from roadx.errors import InputError
    from roadx.train.data import sampling_weights

    def tiles_of(pixels: dict[str, list[int]]) -> list[SimpleNamespace]:
        return [SimpleNamespace(valid_px=v, sample=SimpleNamespace(source=Path(name)))
                for name, values in pixels.items() for v in values]

    tiles = tiles_of({"a": [300, 200], "b": [300], "c": [150], "d": [50]})  # shares .5 .3 .15 .05
    weights = sampling_weights(tiles, min_source_share=0.25)
    per_source = {name: weights[[k for k, t in enumerate(tiles) if t.sample.source.name == name]].sum()
                  for name in "abcd"}
    # lifting c and d to 0.25 would shrink b to 0.19: b is lifted too, a keeps the rest
    assert per_source == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25})
    assert weights[0] / weights[1] == pytest.approx(300 / 200)  # tiles keep their ratio in a folder
    mild = sampling_weights(tiles, min_source_share=0.1)
    assert mild[-1] == pytest.approx(0.1) and (mild >= 0).all() and mild.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="4 source folders asks for 120 %.*at most 0.25"):
        sampling_weights(tiles, min_source_share=0.3)


def test_small_sources_are_lifted_to_their_minimum_share(shared_data: Path, tmp_path: Path) -> None:
    from roadx.train.data import sampling_weights

    _link(shared_data / "spacenet_solaris" / "road_mask_input.tif", tmp_path / "sn" / "vegas.tif")
    _link(shared_data / "spacenet_solaris" / "sample_roads_for_masking.geojson", tmp_path / "sn" / "vegas.geojson")
    mass = discover_samples([shared_data / "massachusetts_cskanani"])[:2]
    tiles, _ = load_tiles([*mass, *discover_samples([tmp_path / "sn"])], gsd_m=1.0, road_width_m=4.0)
    natural = sampling_weights(tiles)
    assert natural[-1] == pytest.approx(tiles[-1].valid_px / sum(t.valid_px for t in tiles))
    lifted = sampling_weights(tiles, min_source_share=0.2)
    assert lifted[-1] == pytest.approx(0.2) and lifted.sum() == pytest.approx(1.0)
    assert lifted[0] / lifted[1] == pytest.approx(natural[0] / natural[1])
    # a scene smaller than the crop is still drawn (valid share is judged against the tile)
    ds = PatchDataset(tiles[-1:], length=2, crop_px=512, bands=("B", "G", "R"), scale=1.0, offset=0.0,
                      augment_params=None)
    _, road, valid = ds[0]
    assert valid.sum() == pytest.approx(np.count_nonzero(tiles[-1].label & VALID_BIT), rel=0.01)
    assert road.sum() > 0
