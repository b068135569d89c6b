"""Synthetic training scenes (roadx.train.synthetic) and their use in ``roadx train``."""

from pathlib import Path

import numpy as np
import pytest
import shapely
import torch

from roadx.errors import InputError
from roadx.train import TrainConfig, fit
from roadx.train.data import PatchDataset, Tile
from roadx.train.datasets import Sample
from roadx.train.synthetic import (
    BACKGROUNDS,
    DISTRACTORS,
    SURFACES,
    TEST_SEED_BASE,
    SyntheticTiles,
    generate_scene,
    synthetic_test_set,
)

SIZE = 192


def _centres(n: int) -> np.ndarray:
    """Shapely points at the pixel centres of an n × n raster, row-major."""
    ys, xs = np.mgrid[0:n, 0:n] + 0.5
    return shapely.points(xs.ravel(), ys.ravel())


def test_same_seed_gives_identical_arrays_and_other_seeds_differ() -> None:
    a, b = generate_scene(11, SIZE), generate_scene(11, SIZE)
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    assert a.road.shape == (SIZE, SIZE) and a.road.dtype == bool
    assert np.array_equal(a.image, b.image) and np.array_equal(a.road, b.road)
    assert np.array_equal(a.distractors, b.distractors)
    assert a.surfaces == b.surfaces and a.widths_m == b.widths_m
    assert all(x.equals_exact(y, 0.0) for x, y in zip(a.centrelines, b.centrelines))
    c = generate_scene(12, SIZE)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", [0, 3, 8, 21])
def test_mask_is_the_union_of_the_buffered_centrelines(seed: int) -> None:
    scene = generate_scene(seed, SIZE, gsd_m=0.8)
    pts = _centres(SIZE)
    dist = np.full(SIZE * SIZE, np.inf)
    ratio = np.full(SIZE * SIZE, np.inf)  # distance / half width of the nearest road
    for line, w_px in zip(scene.centrelines, scene.widths_px):
        d = shapely.distance(line, pts)
        dist = np.minimum(dist, d - w_px / 2)
        ratio = np.minimum(ratio, d / (w_px / 2))
    expected = (dist <= 0).reshape(SIZE, SIZE)
    tie = (np.abs(dist) < 1e-9).reshape(SIZE, SIZE)  # rounding of the last bit only
    assert np.array_equal(scene.road & ~tie, expected & ~tie)
    # the same with polygons: shapely's buffer (a polygonal approximation of the round parts)
    buffered = shapely.union_all([ln.buffer(w / 2, quad_segs=32)
                                  for ln, w in zip(scene.centrelines, scene.widths_px)])
    inside = shapely.contains_xy(buffered, shapely.get_x(pts), shapely.get_y(pts))
    differ = inside.reshape(SIZE, SIZE) != scene.road
    assert np.all(np.abs(ratio.reshape(SIZE, SIZE)[differ] - 1) < 0.01)
    # every pixel a centreline passes through is road
    for line in scene.centrelines:
        p = shapely.line_interpolate_point(line, np.arange(0, line.length, 0.25))
        x, y = shapely.get_x(p), shapely.get_y(p)
        on = (x >= 0) & (x < SIZE) & (y >= 0) & (y < SIZE)
        assert scene.road[y[on].astype(int), x[on].astype(int)].all()
    assert 2.0 <= min(scene.widths_m) and max(scene.widths_m) <= 20.0


def test_distractors_are_never_road_and_occluders_keep_the_road() -> None:
    kinds: set[str] = set()
    occluded = 0
    for seed in range(14):
        scene = generate_scene(seed, SIZE, background=BACKGROUNDS[seed % len(BACKGROUNDS)])
        assert not np.any(scene.road & (scene.distractors > 0))
        assert scene.distractors.max() <= len(DISTRACTORS)
        assert np.all(scene.road[scene.occluded])  # hidden road is still road
        kinds |= scene.distractor_kinds
        occluded += int(scene.occluded.sum())
        assert not np.any((scene.distractors == DISTRACTORS.index("building") + 1) & scene.road)
    assert occluded > 0
    assert {"building", "field_boundary", "fence"} <= kinds


def test_every_background_and_surface_is_reachable() -> None:
    seen_bg, seen_surface = set(), set()
    for seed in range(40):
        scene = generate_scene(seed, 96)
        seen_bg.add(scene.background)
        seen_surface |= set(scene.surfaces)
    assert seen_bg == set(BACKGROUNDS) and seen_surface == set(SURFACES)
    for bg in BACKGROUNDS:  # forced landscapes and surfaces render, textured
        scene = generate_scene(5, 96, background=bg, surfaces=("gravel", "field_path"))
        assert scene.background == bg and set(scene.surfaces) <= {"gravel", "field_path"}
        assert scene.image.reshape(-1, 3).std(axis=0).min() > 2.0
    with pytest.raises(ValueError, match="surface"):
        generate_scene(0, 64, surfaces=("cobbles",))
    with pytest.raises(ValueError, match="background"):
        generate_scene(0, 64, background="moon")


def test_test_set_seeds_are_disjoint_from_training_seeds() -> None:
    scenes = synthetic_test_set(3, seed=1, size_px=64)
    assert [s.seed for s in scenes] == [TEST_SEED_BASE + 2**20 + k for k in range(3)]
    assert [s.background for s in scenes] == list(BACKGROUNDS[:3])
    tiles = SyntheticTiles(0.5, gsd_m=1.0, seed=7)
    seeds = [tiles.scene_seed(e, i) for e in range(3) for i in range(50)]
    assert all(0 <= s < TEST_SEED_BASE for s in seeds) and len(set(seeds)) == len(seeds)
    with pytest.raises(ValueError):
        synthetic_test_set(0)


def _tile() -> Tile:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (96, 96, 3), dtype=np.uint8)
    label = np.full((96, 96), 2, np.uint8)
    label[40:48] |= 1
    sample = Sample(Path("t.png"), (Path("m.png"),), "pair", "t", Path("src"), 1.0)
    return Tile(image, label, sample, 1.0)


def test_dataset_draws_the_share_from_synthetic_scenes_and_keeps_real_crops() -> None:
    kw = {"length": 24, "crop_px": 64, "bands": ("R", "G", "B"), "scale": 1.0, "offset": 0.0,
          "seed": 5}
    plain = PatchDataset([_tile()], **kw)
    synth = SyntheticTiles(0.5, gsd_m=1.0, seed=5)
    mixed = PatchDataset([_tile()], synthetic=synth, **kw)
    picked = [i for i in range(24) if synth.picks(0, i)]
    assert 4 <= len(picked) <= 20
    for i in range(24):
        a, b = plain[i], mixed[i]
        same = all(torch.equal(x, y) for x, y in zip(a, b))
        assert same == (i not in picked)  # real items are those of a run without synthetic
    again = PatchDataset([_tile()], synthetic=synth, **kw)
    assert all(torch.equal(x, y) for x, y in zip(mixed[picked[0]], again[picked[0]]))
    assert SyntheticTiles(0.0, gsd_m=1.0).picks(0, 0) is False


def test_fit_mixes_synthetic_crops(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    original = SyntheticTiles.crop

    def spy(self, epoch, index, size_px, zoom=1.0):
        calls.append((epoch, index))
        return original(self, epoch, index, size_px, zoom)

    monkeypatch.setattr(SyntheticTiles, "crop", spy)
    config = TrainConfig(
        output=tmp_path / "run", model="d3fnet34", gsd_m=1.0, epochs=1, samples_per_epoch=4,
        batch_size=2, crop_px=64, val_crop_px=64, val_max_windows=1, device="cpu", threads=1,
        seed=3, warmup_steps=1, lr=1e-3, model_kwargs={"width": 8}, synthetic_share=0.5,
    )
    result = fit(config, tiles=([_tile()], [_tile()]))
    assert result.epochs_done == 1 and len(result.history) == 1
    expected = [(0, i) for i in range(4) if SyntheticTiles(0.5, 1.0, 3).picks(0, i)]
    assert calls == expected and calls  # seed 3 picks at least one of the 4 crops
    assert '"synthetic_share": 0.5' in (tmp_path / "run" / "config.json").read_text()


def test_config_checks_the_synthetic_share() -> None:
    assert TrainConfig().synthetic_share == 0.0
    assert TrainConfig(synthetic_share=0.9).synthetic_share == 0.9
    for bad in (-0.1, 0.95, 1.0):
        with pytest.raises(InputError, match="synthetic_share"):
            TrainConfig(synthetic_share=bad)


def test_cli_passes_synthetic_share(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import sys

    import roadx.cli
    import roadx.train

    seen: list[TrainConfig] = []

    def fake_fit(cfg: TrainConfig, **kw: object) -> None:
        seen.append(cfg)
        raise KeyboardInterrupt

    monkeypatch.setattr(roadx.train, "fit", fake_fit, raising=False)
    monkeypatch.setattr(sys, "argv", ["roadx", "train", "-o", str(tmp_path / "r"),
                                      "--synthetic-share", "0.3"])
    with pytest.raises(SystemExit):
        roadx.cli.main()
    assert seen and seen[0].synthetic_share == 0.3
    monkeypatch.setattr(sys, "argv", ["roadx", "train", "-o", str(tmp_path / "r"),
                                      "--synthetic-share", "0.95"])
    with pytest.raises(SystemExit) as info:
        roadx.cli.main()
    assert info.value.code != 0


@pytest.mark.parametrize(("seed", "size", "gsd"), [(9 * 7919 + 3, 32, 0.2), (39 * 7919 + 3, 64, 0.2),
                                                   (4, 48, 3.0), (5, 32, 0.5)])
def test_small_scenes_and_extreme_gsds_render(seed: int, size: int, gsd: float) -> None:
    # long shadows at 0.2 m/px once reached past a 32 px frame and failed
    scene = generate_scene(seed, size, gsd)
    assert scene.image.shape == (size, size, 3) and scene.centrelines
    assert not np.any(scene.road & (scene.distractors > 0))
