"""roadx.io raster side: open_scene (georeferencing, GSD, bands, masks, stretch, resampling,
errors) and the probability raster writer/reader, on real SpaceNet scenes and tiny generated
GeoTIFFs."""

import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp

from roadx.errors import InputError, OutputExistsError, SceneError
from roadx.io import ProbabilityWriter, open_probability, open_scene
from roadx.io.raster import decimated_shape
from roadx.tiling import Window

UTM = "EPSG:32611"
T05 = Affine(0.5, 0, 500000, 0, -0.5, 4000000)  # UTM, 0.5 m pixels


def make_tif(path: Path, data: np.ndarray, *, crs: str | None = UTM, transform: Affine = T05,
             nodata: float | None = None, interp: list[ColorInterp] | None = None,
             mask: np.ndarray | None = None) -> Path:
    """Write (C, H, W) ``data`` as a GeoTIFF (optionally with colour interpretation/mask)."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "count": count, "height": height, "width": width,
               "dtype": data.dtype.name, "nodata": nodata}
    if crs is not None:
        profile |= {"crs": crs, "transform": transform}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dst = rasterio.open(path, "w", **profile)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), dst:
        dst.write(data)
        if interp is not None:
            dst.colorinterp = interp
        if mask is not None:
            dst.write_mask(mask)
    return path


def rgb_constant(path: Path, size: int = 64) -> Path:
    """RGB scene with constant bands R=10, G=20, B=30 and R,G,B colour interpretation."""
    data = np.stack([np.full((size, size), v, np.uint8) for v in (10, 20, 30)])
    return make_tif(path, data)


# ---------------------------------------------------------------- georeferencing, real data


def test_utm_uint16_scene(shared_data: Path) -> None:
    path = shared_data / "spacenet_solaris" / "sample_geotiff.tif"
    with open_scene(path) as scene, rasterio.open(path) as src:
        assert (scene.width, scene.height) == (900, 900)
        assert scene.crs == rasterio.crs.CRS.from_epsg(32616)
        assert scene.transform == src.transform
        assert scene.pixel_size_m == (0.5, 0.5) and scene.gsd_m == 0.5
        assert scene.georeferenced and not scene.resampled and scene.dtype == "uint16"
        assert scene.band_indexes == (1, 1, 1)  # panchromatic repeated to B,G,R
        # global 2-98 % stretch of the valid (non-zero) pixels; 900 px < 1024: no decimation
        full = src.read(1)
        lo, hi = np.percentile(full[full != 0], [2, 98])
        assert scene.stretch == ((lo, hi),) * 3
        image, valid = scene.read_window(Window(100, 200, 64, 64))
    assert image.dtype == np.uint8 and image.shape == (3, 64, 64) and valid.all()
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
    expected = np.clip(np.rint((full[100:164, 200:264] - lo) * 255 / (hi - lo)), 0, 255)
    assert np.abs(image[0].astype(int) - expected).max() <= 1


def test_geographic_rgba_scene(shared_data: Path) -> None:
    path = shared_data / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    with open_scene(path) as scene, rasterio.open(path) as src:
        assert scene.crs == rasterio.crs.CRS.from_epsg(4326)
        lat = src.xy(650, 650)[1]
        # metres per degree at the centre latitude (WGS 84 ellipsoid, to ~0.1 %)
        m_lat = 111132.95 - 559.85 * math.cos(2 * math.radians(lat))
        m_lon = 111412.88 * math.cos(math.radians(lat))
        row_m, col_m = scene.pixel_size_m
        assert row_m == pytest.approx(src.res[1] * m_lat, rel=2e-3)  # ~0.300 m
        assert col_m == pytest.approx(src.res[0] * m_lon, rel=2e-3)  # ~0.243 m
        assert 0.26 < scene.gsd_m < 0.31 and scene.gsd_m == pytest.approx(math.sqrt(row_m * col_m))
        assert scene.band_indexes == (3, 2, 1) and scene.stretch is None  # alpha is not a band
        image, valid = scene.read_window(Window(1250, 1250, 100, 100))
        rgb = src.read([1, 2, 3], window=((1250, 1300), (1250, 1300)))
    assert valid[:50, :50].all() and not valid[50:, :].any() and not valid[:, 50:].any()
    assert (image[:, :50, :50] == rgb[::-1]).all()  # R,G,B -> B,G,R
    assert not image[:, 50:, :].any()


def footprint_mean(src: np.ndarray, height: int, width: int, sy: float, sx: float) -> np.ndarray:
    """Mean of ``src`` over each output pixel's footprint (output pixel = sy x sx source px)."""
    r = np.minimum((np.arange(height + 1) * sy).round().astype(int), src.shape[0])
    c = np.minimum((np.arange(width + 1) * sx).round().astype(int), src.shape[1])
    csum = np.pad(src.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    area = np.maximum(np.outer(np.diff(r), np.diff(c)), 1)
    total = (csum[r[1:]][:, c[1:]] - csum[r[:-1]][:, c[1:]]
             - csum[r[1:]][:, c[:-1]] + csum[r[:-1]][:, c[:-1]])
    return total / area


def assert_aligned(out: np.ndarray, ref: np.ndarray) -> None:
    """Resampled image correlates with the footprint means best at zero shift (same ground)."""
    core = (slice(4, -4), slice(4, -4))
    scores = {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(ref, (dy, dx), axis=(0, 1))
            scores[(dy, dx)] = np.corrcoef(out[core].ravel(), shifted[core].ravel())[0, 1]
    assert scores[(0, 0)] > 0.95, scores
    assert max(scores, key=scores.get) == (0, 0), scores


def test_resample_utm_to_1m(shared_data: Path) -> None:
    path = shared_data / "spacenet_solaris" / "sample_geotiff.tif"
    with open_scene(path, target_gsd_m=1.0) as scene, rasterio.open(path) as src:
        assert scene.resampled and scene.source_gsd_m == 0.5
        assert (scene.width, scene.height) == (450, 450)
        assert scene.pixel_size_m == (1.0, 1.0) and scene.gsd_m == 1.0
        assert scene.crs == src.crs and scene.transform == Affine(1, 0, 733601, 0, -1, 3725139)
        # the processing pixel (r, c) corner is the source pixel (2r, 2c) corner on the ground
        assert scene.transform @ (37, 11) == src.transform @ (74, 22)
        image, valid = scene.read_window(Window(0, 0, 450, 450))
        ref = footprint_mean(src.read(1), 450, 450, 2.0, 2.0)
    assert valid.all()
    assert_aligned(image[0].astype(float), ref)


def test_resample_geographic_to_1m(shared_data: Path) -> None:
    path = shared_data / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    with open_scene(path, target_gsd_m=1.0) as scene, rasterio.open(path) as src:
        row_m, col_m = scene.pixel_size_m
        assert scene.resampled and row_m == pytest.approx(1.0) and col_m == pytest.approx(1.0)
        assert scene.crs == src.crs and scene.gsd_m == pytest.approx(1.0)
        sy, sx = 1.0 / 0.2996, 1.0 / 0.2427  # source pixels per processing pixel
        assert scene.height == pytest.approx(1300 / sy, abs=1.5)
        assert scene.width == pytest.approx(1300 / sx, abs=1.5)
        # bounds preserved within one processing pixel
        left, top = scene.transform @ (0, 0)
        right, bottom = scene.transform @ (scene.width, scene.height)
        assert (left, top) == pytest.approx((src.bounds.left, src.bounds.top), abs=1e-12)
        assert abs(right - src.bounds.right) < scene.transform.a
        assert abs(bottom - src.bounds.bottom) < -scene.transform.e
        image, valid = scene.read_window(Window(0, 0, scene.height, scene.width))
        red = src.read(1)
        src_sy = -scene.transform.e / -src.transform.e
        src_sx = scene.transform.a / src.transform.a
        ref = footprint_mean(red, scene.height, scene.width, src_sy, src_sx)
    assert valid[:-1, :-1].all()  # alpha (opaque) travels through the VRT
    assert_aligned(image[2].astype(float)[:-1, :-1], ref[:-1, :-1])  # channel 2 = R


# ---------------------------------------------------------------- windows, bands, masks


def test_boundless_window_and_bgr_order(tmp_path: Path) -> None:
    with open_scene(rgb_constant(tmp_path / "rgb.tif")) as scene:
        assert scene.band_indexes == (3, 2, 1)
        image, valid = scene.read_window(Window(-8, 40, 32, 40))  # past the top and right edges
    assert image.shape == (3, 32, 40) and valid.shape == (32, 40)
    assert valid[8:, :24].all() and not valid[:8].any() and not valid[:, 24:].any()
    assert (image[:, 8:, :24] == np.array([30, 20, 10])[:, None, None]).all()  # B, G, R
    assert not image[:, ~valid].any()


def test_window_entirely_outside(tmp_path: Path) -> None:
    with open_scene(rgb_constant(tmp_path / "rgb.tif")) as scene:
        image, valid = scene.read_window(Window(64, 0, 16, 16))
        assert scene.valid_fraction_in(Window(32, 32, 64, 64)) == pytest.approx(0.25)
    assert not image.any() and not valid.any()


def test_band_selection_and_colour_interpretation(tmp_path: Path) -> None:
    # stored B,G,R with matching colour interpretation: the default still gives B,G,R out
    data = np.stack([np.full((16, 16), v, np.uint8) for v in (30, 20, 10, 99)])
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    path = make_tif(tmp_path / "bgrn.tif", data, interp=interp)
    with open_scene(path) as scene:
        assert scene.band_indexes == (1, 2, 3)
        assert scene.read_window(Window(0, 0, 4, 4))[0][:, 0, 0].tolist() == [30, 20, 10]
    with open_scene(path, bands=(4, 2, 1), band_order=("R", "G", "B")) as scene:
        assert scene.read_window(Window(0, 0, 4, 4))[0][:, 0, 0].tolist() == [99, 20, 30]


def test_near_infrared_channel_for_models_that_take_one(tmp_path: Path) -> None:
    # a model with B,G,R,NIR input (d3fnet34-mm): R,G,B by colour interpretation + the other band
    data = np.stack([np.full((16, 16), v, np.uint8) for v in (30, 20, 10, 99)])
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    path = make_tif(tmp_path / "bgrn.tif", data, interp=interp)
    order = ("B", "G", "R", "NIR")
    with open_scene(path, band_order=order) as scene:
        assert scene.band_indexes == (1, 2, 3, 4)
        assert scene.read_window(Window(0, 0, 4, 4))[0][:, 0, 0].tolist() == [30, 20, 10, 99]
    with open_scene(path, bands=(3, 2, 1, 4), band_order=order) as scene:  # given R,G,B,NIR
        assert scene.read_window(Window(0, 0, 4, 4))[0][:, 0, 0].tolist() == [30, 20, 10, 99]
    with pytest.raises(SceneError, match=r"--bands 3,2,1 is invalid for the model's input "
                                         r"B,G,R,NIR \(3 bands given\). Expected 4 bands"):
        open_scene(path, bands=(3, 2, 1), band_order=order)
    rgb = rgb_constant(tmp_path / "rgb.tif", size=8)
    with pytest.raises(SceneError, match=r"rgb\.tif has 3 band\(s\) and no R,G,B,NIR"):
        open_scene(rgb, band_order=order)
    # an optional NIR band (BandSpec.optional) that the scene lacks is read as absent
    for bands in (None, (1, 2, 3)):
        with open_scene(rgb, bands=bands, band_order=order, optional=("NIR",)) as scene:
            assert scene.absent and scene.aux_channels == (3,) and scene.channels == 4
            image, valid, aux_valid = scene.read_window_aux(Window(0, 0, 4, 4))
            assert image.shape == (4, 4, 4) and valid.all() and not aux_valid.any()
            assert scene.spec.open().absent  # Ray workers reopen it the same way
    with open_scene(path, band_order=order, optional=("NIR",)) as scene:  # it has one: used
        assert not scene.absent and scene.band_indexes == (1, 2, 3, 4)


def test_naip_red_green_blue_near_infrared(shared_data: Path) -> None:
    # NAIP's four bands carry no colour interpretation (gray, undefined...): R,G,B,NIR by order
    naip = shared_data / "opengeos_naip" / "m_4709963_se_14_1_20200831.tif"
    with open_scene(naip, band_order=("B", "G", "R", "NIR")) as scene:
        assert scene.band_indexes == (3, 2, 1, 4)
        image, valid = scene.read_window(Window(0, 0, 256, 256))
        with rasterio.open(naip) as src:
            raw = src.read(window=rasterio.windows.Window(0, 0, 256, 256))
    assert image.shape == (4, 256, 256) and valid.mean() > 0.9
    assert (image[:, valid] == raw[[2, 1, 0, 3]][:, valid]).all()  # uint8: no stretch


def test_panchromatic_band_is_repeated(tmp_path: Path) -> None:
    data = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    with open_scene(make_tif(tmp_path / "pan.tif", data)) as scene:
        image, valid = scene.read_window(Window(0, 0, 16, 16))
        assert scene.band_indexes == (1, 1, 1) and scene.stretch is None
    assert valid.all() and all((image[i] == data[0]).all() for i in range(3))


def test_rgba_alpha_is_the_mask(tmp_path: Path) -> None:
    data = np.full((4, 32, 32), 50, np.uint8)
    data[3] = 255
    data[3, :, :10] = 0
    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with open_scene(make_tif(tmp_path / "rgba.tif", data, interp=interp)) as scene:
        image, valid = scene.read_window(Window(0, 0, 32, 32))
        assert scene.band_indexes == (3, 2, 1)
    assert not valid[:, :10].any() and valid[:, 10:].all()
    assert not image[:, :, :10].any() and (image[:, :, 10:] == 50).all()


def test_nodata_and_internal_masks(tmp_path: Path) -> None:
    data = np.full((3, 32, 32), 80, np.uint8)
    data[:, :8] = 0  # all bands nodata -> invalid
    data[0, 20, 20] = 0  # one dark channel only -> still valid (GDAL dataset-mask rule)
    with open_scene(make_tif(tmp_path / "nd.tif", data, nodata=0)) as scene:
        image, valid = scene.read_window(Window(0, 0, 32, 32))
    assert not valid[:8].any() and valid[8:].all()
    assert image[:, 20, 20].tolist() == [80, 80, 0]
    mask = np.full((32, 32), 255, np.uint8)
    mask[-5:] = 0
    path = make_tif(tmp_path / "im.tif", np.full((3, 32, 32), 80, np.uint8), mask=mask)
    with open_scene(path) as scene:
        image, valid = scene.read_window(Window(0, 0, 32, 32))
    assert (valid == (mask > 0)).all() and not image[:, -5:].any()


def test_uint16_stretch_is_scene_global(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = np.zeros((1, 64, 128), np.uint16)  # left 32 columns nodata
    data[0, :, 32:] = rng.integers(500, 3000, (64, 96))
    data[0, :, 96:] = data[0, :, 32:64]  # the same values in two places
    data[0, :8, 64:96] = 20000  # very bright roofs in the middle only
    with open_scene(make_tif(tmp_path / "u16.tif", data, nodata=0)) as scene:
        valid_values = data[0][data[0] != 0]
        assert scene.stretch == (tuple(np.percentile(valid_values, [2, 98])),) * 3
        assert scene.stretch[0][0] >= 500  # nodata zeros excluded
        a, _ = scene.read_window(Window(0, 0, 64, 64))  # nodata + first copy
        b, _ = scene.read_window(Window(0, 64, 64, 64))  # bright roofs + second copy
    assert (a[:, :, 32:] == b[:, :, 32:]).all()
    assert not a[:, :, :32].any()
    assert (b[:, :8, :32] == 255).all()


def test_decimated_shape_caps_the_long_side() -> None:
    assert decimated_shape(5000, 2000) == (1024, 410)
    assert decimated_shape(800, 600) == (800, 600)


def test_resampled_mask_keeps_nodata(tmp_path: Path) -> None:
    data = np.full((1, 64, 64), 1000, np.uint16)
    data[0, :, :32] = 0
    with open_scene(make_tif(tmp_path / "u.tif", data, nodata=0), target_gsd_m=1.0) as scene:
        assert (scene.width, scene.height) == (32, 32)
        image, valid = scene.read_window(Window(-2, 0, 36, 36))
    assert not valid[:, :16].any() and valid[2:34, 16:32].all() and not valid[:, 32:].any()
    assert not valid[:2].any() and not image[:, ~valid].any()


# ---------------------------------------------------------------- non-georeferenced input


def test_no_crs_requires_gsd(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "plain_sat.png"
    Image.fromarray(np.full((40, 60, 3), 77, np.uint8)).save(path)
    with pytest.raises(SceneError, match=r"plain_sat\.png has no CRS/geotransform; pass --gsd M"):
        open_scene(path)
    with caplog.at_level(logging.WARNING, logger="roadx"), open_scene(path, gsd_m=0.5) as scene:
        assert not scene.georeferenced and scene.crs is None
        # GDAL/QGIS place a plain image at x = col, y = -row; roadx scales that to metres
        assert scene.transform == Affine(0.5, 0, 0, 0, -0.5, 0)
        assert scene.pixel_size_m == (0.5, 0.5) and (scene.width, scene.height) == (60, 40)
    assert "pixel coordinates" in caplog.text and "y = −row × 0.5" in caplog.text
    with open_scene(path, gsd_m=1.0, target_gsd_m=0.5) as scene:  # upsampled, pixel coords
        assert (scene.width, scene.height) == (120, 80)
        assert scene.transform == Affine(0.5, 0, 0, 0, -0.5, 0)
        image, valid = scene.read_window(Window(0, 0, 80, 120))
    assert valid.all() and (image == 77).all()


def test_identity_transform_geotiff_is_not_georeferenced(tmp_path: Path) -> None:
    data = np.ones((3, 8, 8), np.uint8)
    path = make_tif(tmp_path / "ident.tif", data, transform=Affine.identity())
    with pytest.raises(SceneError, match="--gsd"):
        open_scene(path)


# ---------------------------------------------------------------- errors


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.tif not found"):
        open_scene(tmp_path / "nope.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.tif is not a raster GDAL can read"):
        open_scene(text)


@pytest.mark.parametrize("bands", [(4,), (1, 2), (0, 1, 2), (1, 2, 3, 1)])
def test_bad_bands(tmp_path: Path, bands: tuple[int, ...]) -> None:
    path = rgb_constant(tmp_path / "rgb.tif", size=8)
    with pytest.raises(SceneError, match=r"rgb\.tif has 3 band"):
        open_scene(path, bands=bands)


def test_empty_scene(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "empty.tif", np.zeros((3, 16, 16), np.uint8), nodata=0)
    with pytest.raises(SceneError, match=r"empty\.tif has no valid pixels"):
        open_scene(path)
    nan = make_tif(tmp_path / "nan.tif", np.full((1, 16, 16), np.nan, np.float32))
    with pytest.raises(SceneError, match=r"nan\.tif has no valid pixels"):
        open_scene(nan)


# ---------------------------------------------------------------- probability rasters


def test_probability_round_trip(tmp_path: Path) -> None:
    height, width = 200, 150
    rng = np.random.default_rng(0)
    prob = rng.random((height, width)).astype(np.float32)
    prob[:10, :20] = np.nan
    out = tmp_path / "prob.tif"
    with ProbabilityWriter(out, width=width, height=height, crs=UTM, transform=T05) as writer:
        assert writer._partial.exists() and not out.exists()
        for row0 in range(0, 160, 64):  # rows 160..199 are never written
            rows = min(64, 160 - row0)
            writer.write(Window(row0, 0, rows, width), prob[row0 : row0 + rows])
    assert out.exists() and not list(tmp_path.glob("*.partial"))
    with rasterio.open(out) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert src.crs == rasterio.crs.CRS.from_string(UTM) and src.transform == T05
        assert (src.width, src.height) == (width, height)
        assert src.block_shapes == [(512, 512)]
        assert src.compression.name == "deflate"
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert src.scales == (1 / 254,) and src.offsets == (0.0,)
        assert "ROADX_PROBABILITY" in src.tags()
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # a Cloud-Optimized GeoTIFF
        stored = src.read(1)
    expected = np.where(np.isnan(prob), 255, np.rint(np.nan_to_num(prob) * 254)).astype(np.uint8)
    assert (stored[:160] == expected[:160]).all() and (stored[160:] == 255).all()
    with open_probability(out) as raster:
        assert raster.kind == "roadx" and raster.crs == rasterio.crs.CRS.from_string(UTM)
        assert raster.gsd_m == 0.5 and raster.transform == T05
        back = raster.read_rows(-5, 160)
    assert np.isnan(back[:5]).all()
    back = back[5:]
    assert (np.isnan(back) == np.isnan(prob[:160])).all()
    assert np.nanmax(np.abs(back - prob[:160])) <= 0.5 / 254 + 1e-6


def test_probability_writer_overwrite_and_abort(tmp_path: Path) -> None:
    out = tmp_path / "p.tif"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        ProbabilityWriter(out, width=8, height=8, crs=UTM, transform=T05)
    with pytest.raises(RuntimeError), ProbabilityWriter(
        out, width=8, height=8, crs=UTM, transform=T05, overwrite=True
    ) as writer:
        writer.write(Window(0, 0, 8, 8), np.zeros((8, 8), np.float32))
        raise RuntimeError("model crashed")
    assert out.read_bytes() == b"precious" and not list(tmp_path.glob("*.partial"))
    with ProbabilityWriter(out, width=8, height=8, crs=UTM, transform=T05, overwrite=True) as w:
        w.write(Window(0, 0, 8, 8), np.ones((8, 8), np.float32))
    with rasterio.open(out) as src:
        assert (src.read(1) == 254).all()


def test_probability_overviews(tmp_path: Path) -> None:
    out = tmp_path / "wide.tif"
    with ProbabilityWriter(out, width=512, height=16, crs=UTM, transform=T05) as writer:
        writer.write(Window(0, 0, 16, 512), np.full((16, 512), 0.5, np.float32))
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2]
        assert (src.read(1, out_shape=(8, 256)) == 127).all()
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_probability_raster_is_a_valid_cog(tmp_path: Path) -> None:
    """GDAL's own COG validator (osgeo_utils, Debian python3-gdal) accepts the file."""
    import subprocess

    out = tmp_path / "big.tif"
    with ProbabilityWriter(out, width=1300, height=1100, crs=UTM, transform=T05) as writer:
        ramp = np.linspace(0, 1, 1300, dtype=np.float32)[None].repeat(1100, 0)
        writer.write(Window(0, 0, 1100, 1300), ramp)
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2, 4] and src.block_shapes == [(512, 512)]
        assert src.scales == (1 / 254,) and "ROADX_PROBABILITY" in src.tags()
    check = "from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate"
    probe = subprocess.run(["/usr/bin/python3", "-c", check], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("GDAL's Python validator (python3-gdal) is not installed")
    result = subprocess.run(
        ["/usr/bin/python3", "-c", f"{check}; w, e, _ = validate({str(out)!r}, full_check=True); "
         "print(w, e); assert not e"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dtype", "values", "kind", "expected"),
    [
        ("float32", [0.0, 0.25, 1.0], "float", [0.0, 0.25, 1.0]),
        ("uint8", [0, 255, 0], "uint8", [0.0, 1.0, 0.0]),
        ("uint8", [0, 1, 1], "mask01", [0.0, 1.0, 1.0]),
    ],
)
def test_open_probability_encodings(tmp_path: Path, dtype: str, values: list[float], kind: str,
                                    expected: list[float]) -> None:
    data = np.tile(np.array(values, dtype=dtype), (4, 1))[None]
    with open_probability(make_tif(tmp_path / "p.tif", data)) as raster:
        assert raster.kind == kind
        rows = raster.read_rows(0, 4)
    assert rows.dtype == np.float32 and rows.shape == (4, 3)
    assert rows == pytest.approx(np.tile(expected, (4, 1)))


def test_open_probability_errors(tmp_path: Path) -> None:
    logits = make_tif(tmp_path / "logits.tif", np.array([[[-3.0, 4.0]]], np.float32))
    with pytest.raises(InputError, match=r"logits\.tif has float values in \[-3, 4\]"):
        open_probability(logits)
    plain = make_tif(tmp_path / "plain.tif", np.zeros((1, 4, 4), np.uint8), crs=None)
    with pytest.raises(SceneError, match="--gsd"):
        open_probability(plain)
    with open_probability(plain, gsd_m=2.0) as raster:
        assert not raster.georeferenced and raster.pixel_size_m == (2.0, 2.0)


def test_two_writers_of_the_same_output_do_not_share_a_temporary_file(tmp_path: Path) -> None:
    """Two runs with the same --prob: each writes its own temporary file; the one that
    finishes last is the output, complete, with normal file permissions; nothing is left."""
    import stat

    out = tmp_path / "prob.tif"
    first = ProbabilityWriter(out, width=64, height=32, crs=UTM, transform=T05)
    second = ProbabilityWriter(out, width=64, height=32, crs=UTM, transform=T05, overwrite=True)
    assert first._partial != second._partial and first._partial.parent == tmp_path
    first.write(Window(0, 0, 32, 64), np.full((32, 64), 0.25, np.float32))
    second.write(Window(0, 0, 32, 64), np.full((32, 64), 0.75, np.float32))
    first.close()
    second.close()
    with rasterio.open(out) as src:
        assert np.all(src.read(1) == round(0.75 * 254))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.qml", "prob.tif"]  # + style
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o044 == 0o044 & ~_umask()  # group/other read as for any new file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
