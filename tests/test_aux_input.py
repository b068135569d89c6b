"""``roadx predict --aux nir.tif`` (issue #11): a separate NIR raster warped onto the scene's
processing grid supplies the NIR channel of ``d3fnet34-mm``; the scene supplies R,G,B.

All on a 256 × 256 px crop of the real 4-band NAIP tile (R,G,B,NIR uint8, EPSG:26914, 5 m,
nodata 0), written to ``tmp_path`` as an RGB file and separate NIR files: on the same grid,
reprojected to EPSG:4326, covering half the scene. The model is a seeded ``d3fnet34-mm``
warm-started from the shipped ``d3fnet34`` (a tiny one for the CLI runs) whose fusion gates
are opened (they start at 0, where the auxiliary band would have no effect at all), with a
card at 5 m so the scene is not resampled and runs as one window, TTA none.
"""

import dataclasses
import math
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window as RioWindow

from roadx.cli import main
from roadx.errors import InputError
from roadx.io import open_scene
from roadx.models import create_model, get_card, save_checkpoint
from roadx.tiling import Window

CROP = RioWindow(300, 200, 256, 256)  # col, row, width, height in the NAIP tile
SIZE = 256
ORDER = ("B", "G", "R", "NIR")  # d3fnet34-mm's card bands
NODATA_BLOCK = (slice(40, 60), slice(20, 50))  # rows, cols set to nodata in the half NIR file


@dataclasses.dataclass(frozen=True)
class Crops:
    """The files written from the NAIP crop (see :func:`crops`)."""

    all4: Path  # R,G,B,NIR in one file, the reference for --bands 1,2,3,4
    rgb: Path
    nir: Path  # same grid as rgb
    nir_4326: Path  # reprojected to EPSG:4326
    nir_half: Path  # the left half of the grid only, with a nodata block
    naip: np.ndarray  # (4, SIZE, SIZE) uint8 pixels of the crop
    crs: rasterio.crs.CRS
    transform: Affine


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Crops:
    """Write the crop as RGB + NIR files (uint8, nodata 0) into a temporary folder."""
    naip = shared_data / "opengeos_naip" / "m_4709963_se_14_1_20200831.tif"
    root = tmp_path_factory.mktemp("aux")
    with rasterio.open(naip) as src:
        data = src.read(window=CROP)
        crs, transform, interp = src.crs, src.window_transform(CROP), src.colorinterp
    assert data.shape == (4, SIZE, SIZE) and data.min() > 0  # no nodata inside the crop
    profile = {"driver": "GTiff", "height": SIZE, "width": SIZE, "dtype": "uint8",
               "crs": crs, "transform": transform, "nodata": 0}

    def write(name: str, pixels: np.ndarray, **extra) -> Path:
        path = root / name
        with rasterio.open(path, "w", **(profile | {"count": len(pixels)} | extra)) as dst:
            dst.write(pixels)
        return path

    # the 4-band copy keeps NAIP's colour interpretation (GDAL would make band 4 alpha)
    all4 = write("naip4.tif", data, photometric="MINISBLACK")
    with rasterio.open(all4, "r+") as dst:
        dst.colorinterp = interp
    rgb = write("rgb.tif", data[:3])
    nir = write("nir.tif", data[3:])
    half = data[3:, :, : SIZE // 2].copy()
    half[(0, *NODATA_BLOCK)] = 0
    nir_half = write("nir_half.tif", half, width=SIZE // 2)

    bounds = rasterio.transform.array_bounds(SIZE, SIZE, transform)  # west, south, east, north
    dst_t, w, h = calculate_default_transform(crs, "EPSG:4326", SIZE, SIZE, *bounds)
    geo = np.zeros((1, h, w), np.uint8)
    reproject(data[3:], geo, src_transform=transform, src_crs=crs, src_nodata=0,
              dst_transform=dst_t, dst_crs="EPSG:4326", dst_nodata=0,
              resampling=Resampling.bilinear)
    nir_4326 = write("nir_4326.tif", geo, crs="EPSG:4326", transform=dst_t, width=w, height=h)
    return Crops(all4, rgb, nir, nir_4326, nir_half, data, crs, transform)


def _open_gates(model: torch.nn.Module) -> None:
    """Open every fusion gate: γ, β start at 0, where the aux stream has no effect at all."""
    with torch.no_grad():
        for dgf in model.fusions:
            dgf.gamma_r.fill_(0.5)
            dgf.gamma_a.fill_(0.5)
            dgf.beta.fill_(0.5)


@pytest.fixture(scope="module")
def warm_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full-size d3fnet34-mm warm-started from the shipped d3fnet34 (RGB stream, decoder and,
    by spec B5, the aux stream), gates opened, card at 5 m (NAIP: no resampling), int8.

    Its probabilities have real structure (on the crop: 0 to 0.98, std 0.07, 0.6 % above 0.5)
    and depend on the NIR (an all-NaN NIR changes them by up to 0.84), unlike a random
    model's (0.529 to 0.531), so the tolerances below mean something. About 10 s to build.
    """
    from roadx.models.d3fnet_mm import init_from_d3fnet

    shipped = Path(__file__).resolve().parents[1] / "weights" / "d3fnet34.safetensors"
    path = tmp_path_factory.mktemp("w") / "mm.safetensors"
    torch.manual_seed(0)  # the fusion blocks are not warm-started
    model = create_model("d3fnet34-mm", aux_heads=False)
    init_from_d3fnet(model, shipped, aux_stream=True)
    _open_gates(model)
    card = dataclasses.replace(get_card("d3fnet34-mm"), gsd_m=5.0)
    save_checkpoint(path, model, card=card, model_kwargs={"aux_heads": False}, storage="int8")
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded width-8 d3fnet34-mm (gates open), card at 5 m: quick CLI runs."""
    path = tmp_path_factory.mktemp("w") / "tiny_mm.safetensors"
    torch.manual_seed(0)
    model = create_model("d3fnet34-mm", width=8)
    _open_gates(model)
    card = dataclasses.replace(get_card("d3fnet34-mm"), gsd_m=5.0)
    save_checkpoint(path, model, card=card, model_kwargs={"width": 8})
    return path


@dataclasses.dataclass
class Run:
    """What one run fed the model and got back (one 256² window, TTA none)."""

    inputs: torch.Tensor  # (1, 4, 256, 256) float32 network input
    prob: np.ndarray  # (256, 256) float32 sigmoid of the model's logits
    prob_tif: Path


@pytest.fixture(scope="module")
def predictor(warm_weights: Path):
    import roadx

    return roadx.Predictor(weights=warm_weights, model="d3fnet34-mm", tta="none", device="cpu",
                           precision="fp32")


@pytest.fixture
def run(predictor, tmp_path: Path) -> Iterator:
    """``run(scene, **settings) -> Run`` with the module's predictor; hooks record the model's
    input and output."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, output) -> None:
        seen.append((args[0].detach().clone(), output.detach().float().clone()))

    handle = predictor.model.register_forward_hook(hook)
    count = [0]

    def go(scene: Path, **settings) -> Run:
        seen.clear()
        count[0] += 1
        prob_tif = tmp_path / f"prob{count[0]}.tif"
        predictor.predict_roads(scene, probability_path=prob_tif, **settings)
        assert len(seen) == 1  # one window, one forward
        x, logits = seen[0]
        assert x.shape == (1, 4, SIZE, SIZE)
        return Run(x, torch.sigmoid(logits)[0, 0].numpy(), prob_tif)

    yield go
    handle.remove()


def test_same_grid_nir_file_equals_the_four_band_scene_exactly(run, crops: Crops) -> None:
    """The RGB file + a NIR file on the same grid feed the model exactly the input that
    ``--bands 1,2,3,4`` on the 4-band crop does, so the probabilities are identical."""
    four = run(crops.all4, bands=(1, 2, 3, 4))
    aux = run(crops.rgb, aux=crops.nir)
    assert torch.isfinite(four.inputs).all()
    assert torch.equal(aux.inputs, four.inputs)
    np.testing.assert_array_equal(aux.prob, four.prob)
    with rasterio.open(four.prob_tif) as a, rasterio.open(aux.prob_tif) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert (b.crs, b.transform) == (crops.crs, crops.transform)
    # the NIR matters (open fusion gates): where it is missing the output differs
    half = run(crops.rgb, aux=crops.nir_half)
    assert np.abs(half.prob - aux.prob).max() > 0.1


def test_reprojected_nir_gives_close_probabilities_on_the_same_grid(run, crops: Crops) -> None:
    """A NIR raster in EPSG:4326 is warped back onto the scene's UTM grid: its values differ by
    the two bilinear resamplings, the probabilities only slightly, the outputs' grid not at
    all."""
    same = run(crops.rgb, aux=crops.nir)
    geo = run(crops.rgb, aux=crops.nir_4326)
    nir_same, nir_geo = same.inputs[0, 3].numpy(), geo.inputs[0, 3].numpy()
    inside = np.isfinite(nir_geo)
    # the 4326 raster's footprint covers the scene; only a thin edge may fall on its nodata
    assert inside.mean() > 0.99
    dn = np.abs(nir_geo[inside] - nir_same[inside]) / get_card("d3fnet34-mm").bands[3].scale
    assert np.median(dn) <= 2 and np.percentile(dn, 99) <= 40  # DN (0-255) after 2 warps
    diff = np.abs(geo.prob - same.prob)
    flipped = (geo.prob > 0.5) != (same.prob > 0.5)
    # Measured (seeded, deterministic): max 0.107 at one borderline road pixel (0.55 -> 0.44),
    # mean 0.00028, 99th percentile 0.006; the road decision (p > 0.5) flips on 16 of 65,536
    # pixels (0.024 %; 0.63 % are road). Why not 0: two bilinear resamplings (UTM -> EPSG:4326
    # at about 5 m and back) smooth the NIR (median 1 DN, 99th percentile 23 DN at sharp
    # edges), and 64 px of the bottom row fall on the EPSG:4326 raster's nodata border (NaN:
    # RGB-only there). Bounds: about twice the measured values.
    assert diff.max() < 0.2 and diff.mean() < 0.001, (diff.max(), diff.mean())
    assert flipped.mean() < 0.001, flipped.mean()
    with rasterio.open(same.prob_tif) as a, rasterio.open(geo.prob_tif) as b:
        assert (b.crs, b.transform, b.shape) == (a.crs, a.transform, a.shape)
        assert (b.crs, b.transform) == (crops.crs, crops.transform)


def test_aux_covering_half_the_scene_is_nan_outside_it(run, crops: Crops) -> None:
    """Outside the auxiliary raster's extent and on its nodata the model gets NaN in the NIR
    channel (its "no auxiliary data"), elsewhere the NIR values; the scene's own validity is
    untouched, so the probability is finite everywhere."""
    full = run(crops.rgb, aux=crops.nir)
    half = run(crops.rgb, aux=crops.nir_half)
    nir = half.inputs[0, 3].numpy()
    expect_missing = np.zeros((SIZE, SIZE), bool)
    expect_missing[:, SIZE // 2:] = True
    expect_missing[NODATA_BLOCK] = True
    np.testing.assert_array_equal(np.isnan(nir), expect_missing)
    np.testing.assert_array_equal(nir[~expect_missing], full.inputs[0, 3].numpy()[~expect_missing])
    assert torch.equal(half.inputs[0, :3], full.inputs[0, :3])  # RGB from the scene, finite
    assert np.isfinite(half.prob).all()
    with rasterio.open(half.prob_tif) as out:
        assert out.read_masks(1).all()  # no nodata in the outputs: the scene is valid
    assert np.abs(half.prob - full.prob)[:, SIZE // 2:].max() > 0.1  # the NaN path was taken


def test_a_scene_without_nir_runs_the_model_without_it(run, crops: Crops) -> None:
    """The card marks NIR optional: an RGB scene (no --aux) is not refused; the NIR channel
    is NaN everywhere (the model's "band absent" path), R,G,B are the scene's, and the
    result equals the one where an auxiliary raster has no data anywhere."""
    rgb = run(crops.rgb)
    assert torch.isnan(rgb.inputs[0, 3]).all()
    four = run(crops.all4, bands=(1, 2, 3, 4))
    assert torch.equal(rgb.inputs[0, :3], four.inputs[0, :3])
    half = run(crops.rgb, aux=crops.nir_half)
    right = np.s_[:, SIZE // 2 + 40:]  # far from the half raster's edge: no NIR in the field
    assert np.isfinite(rgb.prob).all()
    # measured: at most 0.0007 apart there (deep receptive fields reach the NIR half); 0.84
    # at most from the run with NIR everywhere
    np.testing.assert_allclose(rgb.prob[right], half.prob[right], atol=0.005)
    assert np.abs(rgb.prob - four.prob).max() > 0.1  # the NIR mattered where it was given
    torch.testing.assert_close(run(crops.rgb, bands=(1, 2, 3)).inputs, rgb.inputs, rtol=0,
                               atol=0, equal_nan=True)


def test_reader_warps_masks_and_stretches_float_aux(tmp_path: Path, crops: Crops) -> None:
    """A float32 NIR at 2.5 m (finer than the scene: averaged when warped) with NaN holes:
    stretched with the scene bands' 2-98 % stretch, NaN pixels are "no aux data"; the
    picklable spec reopens the same scene with its auxiliary raster."""
    nir = crops.naip[3].astype(np.float32) * 3.0 + 0.25
    fine = np.repeat(np.repeat(nir, 2, axis=0), 2, axis=1)
    fine[:40, :40] = np.nan  # the scene's top-left 20 × 20 px
    path = tmp_path / "nir_float.tif"
    profile = {"driver": "GTiff", "count": 1, "height": 2 * SIZE, "width": 2 * SIZE,
               "dtype": "float32", "crs": crops.crs,
               "transform": crops.transform @ Affine.scale(0.5)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(fine[None])
    with open_scene(crops.rgb, band_order=ORDER, aux=path) as scene:
        assert scene.aux is not None and scene.aux.resampling == Resampling.average
        lo, hi = scene.aux.stretch[0]
        assert (lo, hi) == pytest.approx(tuple(np.nanpercentile(fine, [2, 98])), rel=0.02)
        window = Window(-8, -8, SIZE + 16, SIZE + 16)
        image, valid, aux_valid = scene.read_window_aux(window)
        inner = (slice(8, 8 + SIZE), slice(8, 8 + SIZE))
        assert valid[inner].all() and valid.sum() == SIZE * SIZE
        assert not aux_valid[inner][:20, :20].any() and aux_valid[inner][20:, 20:].all()
        # the scene bands' stretch; a 2 × 2 average of equal values is exact
        expected = np.rint(np.clip((nir - lo) * 255 / (hi - lo), 0, 255))
        diff = np.abs(image[3][inner].astype(int) - expected)[20:, 20:]
        assert diff.max() <= 1
        assert (image[3][inner][:20, :20] == 0).all()
        np.testing.assert_array_equal(image[2::-1][(slice(None), *inner)], crops.naip[:3])
        again = pickle.loads(pickle.dumps(scene.spec)).open()
        with again:
            assert again.spec == scene.spec and again.spec.aux == str(path)
            image2, _, aux_valid2 = again.read_window_aux(window)
        np.testing.assert_array_equal(image2, image)
        np.testing.assert_array_equal(aux_valid2, aux_valid)


def test_reader_refuses_aux_with_an_rgb_model_and_with_four_bands(crops: Crops) -> None:
    with pytest.raises(InputError, match="nir.tif.*no near-infrared or auxiliary channel"):
        open_scene(crops.rgb, band_order=("B", "G", "R"), aux=crops.nir)
    with pytest.raises(InputError, match="nir.tif.*--bands 1,2,3,4 takes 4 bands"):
        open_scene(crops.all4, bands=(1, 2, 3, 4), band_order=ORDER, aux=crops.nir)


# --- errors through the CLI ----------------------------------------------------------------


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["roadx", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    code = exc.value.code if isinstance(exc.value.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def rgb_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w3") / "d3fnet34.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("d3fnet34", width=8),
                    card=dataclasses.replace(get_card("d3fnet34"), gsd_m=5.0),
                    model_kwargs={"width": 8})
    return path


def _write(path: Path, data: np.ndarray, **profile) -> Path:
    import warnings

    count, height, width = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", count=count, height=height, width=width,
                           dtype=data.dtype.name, **profile) as dst:
            dst.write(data)
    return path


def test_cli_errors_name_the_aux_file_without_traceback(
    tmp_path: Path, crops: Crops, weights: Path, rgb_weights: Path, monkeypatch, capsys
) -> None:
    nir = crops.naip[3:]
    garbage = tmp_path / "garbage_nir.tif"
    garbage.write_bytes(b"not a raster at all\n" * 10)
    plain = _write(tmp_path / "plain_nir.tif", nir)  # no CRS, no geotransform
    far = _write(tmp_path / "far_nir.tif", nir, crs=crops.crs,
                 transform=Affine.translation(200_000, 0) @ crops.transform, nodata=0)
    plain_scene = _write(tmp_path / "plain_rgb.tif", crops.naip[:3])
    out = tmp_path / "roads.gpkg"
    mm = ["--model", "d3fnet34-mm", "--weights", str(weights), "--tta", "none", "--device",
          "cpu", "-o", str(out)]
    cases = [
        ([str(crops.rgb), "--aux", str(tmp_path / "missing_nir.tif"), *mm],
         ["missing_nir.tif", "not found"]),
        ([str(crops.rgb), "--aux", str(garbage), *mm],
         ["garbage_nir.tif", "not a raster GDAL can read"]),
        ([str(crops.rgb), "--aux", str(plain), *mm],
         ["plain_nir.tif", "has no CRS/geotransform"]),
        ([str(plain_scene), "--gsd", "5", "--aux", str(crops.nir), *mm],
         ["plain_rgb.tif", "nir.tif", "no georeferencing"]),
        ([str(crops.rgb), "--aux", str(far), *mm],
         ["far_nir.tif", "does not overlap the scene", "rgb.tif"]),
        ([str(crops.rgb), "--aux", str(crops.nir), "--weights", str(rgb_weights), "--tta",
          "none", "--device", "cpu", "-o", str(out)],
         ["nir.tif", "'d3fnet34'", "no near-infrared or auxiliary input band"]),
        ([str(crops.all4), "--aux", str(crops.nir), "--bands", "1,2,3,4", *mm],
         ["nir.tif", "--bands 1,2,3,4 takes 4 bands"]),
        ([str(crops.rgb), str(crops.all4), "--aux", str(crops.nir), *mm[:-2], "-o",
          str(tmp_path / "batch/")],
         ["nir.tif", "pairs one auxiliary raster with one scene"]),
    ]
    for args, needles in cases:
        code, err = _cli(["predict", *args], monkeypatch, capsys)
        flat = " ".join(err.split())
        assert code == 1, (args, err)
        assert "error:" in err and "Traceback" not in err, err
        for needle in needles:
            assert needle in flat, (needle, err)
        assert not out.exists()
    assert not (tmp_path / "batch").exists()


def test_cli_predict_with_aux_writes_georeferenced_outputs(
    tmp_path: Path, crops: Crops, weights: Path, monkeypatch, capsys
) -> None:
    """The whole command: exit 0, the summary names the auxiliary raster, the outputs lie on
    the scene's grid in its CRS, the provenance records the auxiliary raster."""
    import geopandas as gpd

    out, prob = tmp_path / "roads.gpkg", tmp_path / "prob.tif"
    code, err = _cli(["predict", str(crops.rgb), "--aux", str(crops.nir_4326), "--model",
                      "d3fnet34-mm", "--weights", str(weights), "--tta", "none", "--device",
                      "cpu", "-o", str(out), "--prob", str(prob), "--threshold", "0.3"],
                     monkeypatch, capsys)
    assert code == 0, err
    assert "nir_4326.tif" in " ".join(err.split())
    with rasterio.open(prob) as p:
        assert (p.crs, p.transform, p.shape) == (crops.crs, crops.transform, (SIZE, SIZE))
        assert p.tags().get("aux") == str(crops.nir_4326)
        assert math.isclose(p.read_masks(1).mean(), 255)
    roads = gpd.read_file(out, layer="roads")
    assert roads.crs == crops.crs
