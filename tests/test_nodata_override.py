"""``roadx predict --nodata VALUE``: a no-data value declared for scenes that do not declare it.

The real case: SpaceNet 6 Rotterdam panchromatic tiles (``pan2.tif``, ``pan3.tif``; uint16,
0.5 m, no nodata tag) are zero-filled over a third of their area. Read as image, the zeros
pull the uint16 stretch down and models trace lines along and inside the filled area
(issue #9's overlays). With ``nodata=0`` those pixels are invalid: left out of the stretch,
never predicted, nodata in the outputs.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from roadx.cli import main
from roadx.errors import SceneError
from roadx.io import open_scene
from roadx.tiling import Window


@pytest.fixture(scope="module")
def pan2(shared_data: Path) -> Path:
    return shared_data / "spacenet_solaris" / "preproc_tutorial" / "pan2.tif"


@pytest.fixture(scope="module")
def zeros(pan2: Path) -> np.ndarray:
    """``(H, W)`` bool: where the tile is zero-filled."""
    with rasterio.open(pan2) as src:
        assert src.nodata is None, "the test expects a tile without a nodata tag"
        return src.read(1) == 0


def _whole(scene) -> tuple[np.ndarray, np.ndarray]:
    return scene.read_window(Window(0, 0, scene.height, scene.width))


def test_declared_value_is_invalid_and_left_out_of_the_stretch(pan2: Path, zeros) -> None:
    assert 0.3 < zeros.mean() < 0.35  # a third of the tile is fill
    with open_scene(pan2) as plain:
        image, valid = _whole(plain)
        assert valid.all()  # nothing tells roadx the zeros are fill
        assert plain.stretch[0][0] == 0.0  # and they set the stretch's low end
    with open_scene(pan2, nodata=0) as scene:
        image, valid = _whole(scene)
        np.testing.assert_array_equal(valid, ~zeros)  # exactly the zero pixels, same grid
        assert (image[:, zeros] == 0).all()
        lo, hi = scene.stretch[0]
        with rasterio.open(pan2) as src:
            data = src.read(1)
        real = data[~zeros]
        assert lo >= real.min() > 0  # the stretch now spans the imagery only
        assert np.percentile(real, 1) <= lo <= np.percentile(real, 3)
        assert scene.valid_fraction_in(Window(0, 0, scene.height, scene.width)) == pytest.approx(
            1 - zeros.mean())
        assert scene.spec.nodata == 0 and scene.spec.open().nodata == 0  # Ray workers reopen


def test_resampled_reads_do_not_bleed_the_fill_into_valid_pixels(pan2: Path, zeros) -> None:
    with open_scene(pan2, target_gsd_m=1.0, nodata=0) as scene:  # 0.5 m -> 1 m, WarpedVRT
        assert scene.resampled and scene.width == 300
        image, valid = _whole(scene)
    assert abs((1 - valid.mean()) - zeros.mean()) < 0.01
    # bilinear resampling that took the fill for image would darken the valid pixels next to
    # it (raw mean 35 instead of 52 here): the ring beside the fill is as bright as the next
    from scipy import ndimage

    ring = ndimage.binary_dilation(~valid) & valid
    next_ring = ndimage.binary_dilation(~valid, iterations=3) & valid & ~ndimage.binary_dilation(
        ~valid, iterations=2)
    assert ring.sum() > 200
    assert image[0][ring].mean() > 0.9 * image[0][next_ring].mean()
    with open_scene(pan2, target_gsd_m=1.0) as plain:
        _, plain_valid = _whole(plain)
    assert plain_valid.all()


def _write(path: Path, data: np.ndarray, **profile) -> Path:
    count, height, width = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", count=count, height=height, width=width,
                           dtype=data.dtype.name, crs="EPSG:32631",
                           transform=Affine(1, 0, 500000, 0, -1, 5700000), **profile) as dst:
            dst.write(data)
    return path


def test_value_replaces_the_files_own_nodata_and_needs_every_band(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 250, (3, 64, 64), dtype=np.uint8)
    data[:, :10, :] = 0  # zero fill: the value we declare
    data[:, 10:20, :] = 255  # the file's declared nodata
    data[0, 30:40, :] = 0  # one band at 0, the others not: a dark pixel, still valid
    path = _write(tmp_path / "rgb.tif", data, nodata=255)
    with open_scene(path) as scene:
        _, valid = _whole(scene)
        assert not valid[10:20].any() and valid[:10].all()
    with open_scene(path, nodata=0) as scene:
        _, valid = _whole(scene)
    assert not valid[:10].any()
    assert valid[10:20].all()  # replaced, as gdalwarp -srcnodata: 255 is image again
    assert valid[30:40].all()
    assert valid[20:].all()


def test_alpha_still_counts_with_a_declared_value(tmp_path: Path) -> None:
    data = np.full((4, 32, 32), 120, dtype=np.uint8)
    data[3] = 255
    data[3, :, :8] = 0  # transparent
    data[:3, 24:, :] = 0  # zero fill
    path = _write(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
    with open_scene(path, nodata=0) as scene:
        _, valid = _whole(scene)
    assert not valid[:, :8].any() and not valid[24:].any()
    assert valid[:24, 8:].all()


def test_a_scene_that_is_all_the_declared_value_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "fill.tif", np.zeros((1, 40, 40), dtype=np.uint16))
    with pytest.raises(SceneError, match=r"fill\.tif has no valid pixels.*declared no-data "
                       r"value 0"):
        open_scene(path, nodata=0)


def test_cli_predicts_nothing_in_the_fill_and_writes_it_as_nodata(
    pan2: Path, zeros, tmp_path: Path, monkeypatch, capsys
) -> None:
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    out = tmp_path / "roads.gpkg"
    prob = tmp_path / "prob.tif"
    monkeypatch.setattr(sys, "argv", ["roadx", "predict", str(pan2), "-o", str(out), "--prob",
                                      str(prob), "--nodata", "0", "--tta", "none", "-q"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None), capsys.readouterr().err
    with rasterio.open(prob) as src:  # 1 m grid (the card's GSD), same ground as the tile
        invalid = src.read_masks(1) == 0
        transform, crs = src.transform, src.crs
    assert abs(invalid.mean() - zeros.mean()) < 0.01
    fill = [shape(geom) for geom, value in shapes(invalid.astype(np.uint8), mask=invalid,
                                                   transform=transform) if value == 1]
    roads = gpd.read_file(out, layer="roads")
    assert roads.crs == crs and len(roads) > 0  # the imagery still has its roads
    inside = sum(line.intersection(area.buffer(-2)).length for line in roads.geometry
                 for area in fill)
    assert inside == 0.0  # no line runs inside the filled area


def test_a_batch_redoes_its_scenes_when_the_declared_value_changes() -> None:
    from roadx.batch import settings_fingerprint
    from roadx.pipeline import ExtractOptions

    def digest(**kw) -> str:
        return settings_fingerprint(ExtractOptions(**kw), fmt="gpkg", probability=False,
                                    preview=False, weights_sha256="x")[0]

    assert digest() != digest(nodata=0) != digest(nodata=255)
    assert digest(nodata=0) == digest(nodata=0.0)
