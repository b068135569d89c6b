"""Outputs for images without georeferencing overlay the image (issue #14 item 1).

GDAL reports a plain image (a Massachusetts tile) with the identity transform and y growing
down, but QGIS and GDAL's tools place it at x = col, y = -row. roadx writes its lines and
probability raster in that convention, scaled to metres by --gsd
(``Affine(gsd, 0, 0, 0, -gsd, 0)``); world files and ``.aux.xml`` beside an image are honoured;
and ``roadx eval --gsd`` compares such outputs with the tile's road mask.

The real tile is a held-out crop of the shipped weights (``weights/d3fnet34.val.txt``),
read in place from ``$ROADX_DATA`` (Massachusetts Roads: never copied into the repository).
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from PIL import Image
from scipy.ndimage import binary_dilation

from roadx.cli import main
from roadx.errors import SceneError
from roadx.io import open_scene

Cli = Callable[..., tuple[int, str, str]]

TILE = "10378735_15_1_0"  # 750 x 750 px at about 1 m, 7.9 % road; held out from training
SYSTEM_PYTHON = "/usr/bin/python3"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m roadx`` in a process of its own (for module-scoped fixtures); stderr
    is returned with rich's line wrapping undone."""
    proc = subprocess.run(
        [sys.executable, "-m", "roadx", *args], capture_output=True, text=True, timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )
    proc.stderr = " ".join(proc.stderr.split())
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``roadx ARGS`` in this process through ``main()`` (as a user's shell would, less
    the start-up); return (exit code, stdout, stderr with line wrapping undone)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["roadx", *args])
        monkeypatch.setenv("COLUMNS", "400")
        code: int | str | None = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return (code if isinstance(code, int) else 1), out, " ".join(err.split())

    return run


@pytest.fixture(scope="module")
def tile(shared_data: Path) -> dict[str, Path]:
    root = shared_data / "massachusetts_lorudarku"
    return {"image": root / "images" / f"{TILE}.jpg", "mask": root / "masks" / f"{TILE}.png"}


@pytest.fixture(scope="module")
def predicted(tile: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``roadx predict TILE.jpg --gsd 1`` with the shipped weights (one 768 px window, no TTA)."""
    out = tmp_path_factory.mktemp("pixel_space")
    roads, prob = out / "roads.gpkg", out / "prob.tif"
    proc = _run("predict", str(tile["image"]), "-o", str(roads), "--prob", str(prob),
                "--gsd", "1", "--tta", "none", "--threads", "1", "--device", "cpu")
    assert "no CRS/geotransform" in proc.stderr and "y = −row × 1" in proc.stderr
    return {"roads": roads, "prob": prob, "junctions": roads}


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def _sample(mask: np.ndarray, transform: Affine, xy: np.ndarray) -> np.ndarray:
    """``mask`` at the points ``xy`` (``(n, 2)`` x, y), through rasterio's pixel convention:
    ``(col, row) = ~transform * (x, y)``, the pixel whose corner-to-corner square holds it."""
    col, row = ~transform @ (xy[:, 0], xy[:, 1])
    col, row = np.floor(col).astype(int), np.floor(row).astype(int)
    inside = (col >= 0) & (col < mask.shape[1]) & (row >= 0) & (row < mask.shape[0])
    out = np.zeros(len(xy), bool)
    out[inside] = mask[row[inside], col[inside]]
    return out


def _vertices(path: Path, layer: str = "roads") -> tuple[gpd.GeoDataFrame, np.ndarray]:
    frame = gpd.read_file(path, layer=layer)
    return frame, shapely.get_coordinates(frame.geometry.values)


# ---------------------------------------------------------------- roadx predict --gsd


def test_rasterio_reports_a_plain_image_with_the_identity(tmp_path: Path) -> None:
    """What the convention rests on: rasterio reports a plain PNG/TIFF with the identity
    transform (and a NotGeoreferencedWarning); roadx places it at Affine(gsd,0,0,0,-gsd,0)."""
    for name in ("plain.png", "plain.tiff"):
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / name)
        with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
                rasterio.open(tmp_path / name) as src:
            assert src.transform == Affine.identity() and src.crs is None
        with open_scene(tmp_path / name, gsd_m=0.3) as scene:
            assert scene.transform == Affine(0.3, 0, 0, 0, -0.3, 0) and scene.crs is None
            assert not scene.georeferenced and scene.pixel_size_m == (0.3, 0.3)


def test_predicted_lines_lie_on_the_roads_of_the_image(
    tile: dict[str, Path], predicted: dict[str, Path]
) -> None:
    """The lines, read back, sample the tile's road mask at their vertices through
    ~Affine(1, 0, 0, 0, -1, 0): most fall on labelled road. Read with y down (roadx's old
    convention) they would lie above the image, and the mask upside down misses them: the
    check does not pass on road density alone."""
    mask = _mask(tile["mask"])
    roads, xy = _vertices(predicted["roads"])
    assert roads.crs is None and len(roads) >= 10 and roads["length_m"].sum() > 3000
    assert (xy[:, 0] > 0).all() and (xy[:, 0] < 750).all()
    assert (xy[:, 1] < 0).all() and (xy[:, 1] > -750).all()  # y = -row: below the x axis
    pixel_space = Affine(1, 0, 0, 0, -1, 0)
    near_road = binary_dilation(mask, iterations=2)  # centrelines vs. label width
    on_road = _sample(near_road, pixel_space, xy).mean()
    assert on_road > 0.85, on_road  # measured 0.97 (0.92 without the 2 px dilation)
    assert _sample(near_road, Affine.identity(), xy * [1, -1]).mean() == on_road
    assert not _sample(near_road, pixel_space, xy * [1, -1]).any()  # y down: above the image
    assert _sample(near_road[::-1], pixel_space, xy).mean() < 0.4  # upside down: 0.17
    # lengths are metres of the 1 m grid: a line's length_m is about its drawn length
    assert roads["length_m"].sum() == pytest.approx(roads.length.sum(), rel=0.05)
    junctions, jxy = _vertices(predicted["junctions"], "junctions")
    assert junctions.crs is None and _sample(near_road, pixel_space, jxy).mean() > 0.85


def test_probability_raster_lies_on_the_image(
    tile: dict[str, Path], predicted: dict[str, Path], cli: Cli
) -> None:
    """The --prob GeoTIFF carries Affine(1, 0, 0, 0, -1, 0) and no CRS: it covers the
    image's footprint as QGIS shows it, pixel for pixel, and is road where the mask is."""
    with rasterio.open(predicted["prob"]) as src:
        assert src.crs is None and src.transform == Affine(1, 0, 0, 0, -1, 0)
        assert tuple(src.bounds) == (0, -750, 750, 0)
        road = src.read(1) >= 127  # p >= 0.5
    mask = _mask(tile["mask"])
    iou = (road & mask).sum() / (road | mask).sum()
    assert iou > 0.5, iou  # measured 0.67
    # roadx vectorize reads it back without --gsd (a transform without CRS: metres)
    out = predicted["prob"].parent / "again.gpkg"
    code, _, err = cli("vectorize", str(predicted["prob"]), "-o", str(out), "--overwrite")
    assert code == 0 and "no CRS" in err
    again, xy = _vertices(out)
    first = gpd.read_file(predicted["roads"], layer="roads")
    assert again.crs is None and (xy[:, 1] < 0).all()
    assert again["length_m"].sum() == pytest.approx(first["length_m"].sum(), rel=0.02)


def test_vectorize_gsd_scales_the_pixel_space_to_metres(tile: dict[str, Path], tmp_path: Path,
                                                        cli: Cli) -> None:
    """``roadx vectorize MASK.png --gsd 2``: lines at x = 2 col, y = -2 row, twice as long
    in metres as at --gsd 1, and still on the mask through ~Affine(2, 0, 0, 0, -2, 0)."""
    mask = _mask(tile["mask"])
    lengths = {}
    for gsd in (1, 2):
        out = tmp_path / f"mask_{gsd}.gpkg"
        code, _, err = cli("vectorize", str(tile["mask"]), "-o", str(out), "--gsd", str(gsd),
                           "--no-repair", "--simplify-m", str(gsd))
        assert code == 0, err
        roads, xy = _vertices(out)
        on = _sample(binary_dilation(mask), Affine(gsd, 0, 0, 0, -gsd, 0), xy).mean()
        assert on > 0.95, (gsd, on)
        assert (xy[:, 0] <= 750 * gsd).all() and (xy[:, 1] >= -750 * gsd).all()
        lengths[gsd] = roads["length_m"].sum()
    assert lengths[2] == pytest.approx(2 * lengths[1], rel=0.05)


# ---------------------------------------------------------------- world files, .aux.xml


def test_world_file_beside_a_copied_tile_places_the_outputs(
    tile: dict[str, Path], predicted: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    """A ``.wld`` (1 m pixels, upper-left corner at 300000, 5000000) beside a copy of the tile:
    GDAL reads it, roadx keeps its coordinates (no CRS, units metres), and the lines are the
    pixel-space lines moved by (300000, 5000000) exactly: same pixels, same model."""
    image = tmp_path / "tile.jpg"
    shutil.copyfile(tile["image"], image)
    # world file: x pixel size, rotations, -y pixel size, centre of the upper-left pixel
    (tmp_path / "tile.wld").write_text("1\n0\n0\n-1\n300000.5\n4999999.5\n")
    with open_scene(image) as scene:  # no --gsd needed
        assert scene.crs is None and scene.georeferenced and scene.gsd_m == 1.0
        assert scene.transform == Affine(1, 0, 300000, 0, -1, 5000000)
    out = tmp_path / "roads.gpkg"
    code, stdout, err = cli("predict", str(image), "-o", str(out), "--tta", "none",
                            "--threads", "1", "--device", "cpu", "--json")
    assert code == 0 and "tile.wld" in err and "no CRS" in err, err
    result = json.loads(stdout)
    assert result["crs"] is None and result["georeferenced"] and not result["resampled"]
    placed = gpd.read_file(out, layer="roads")
    pixel = gpd.read_file(predicted["roads"], layer="roads")
    assert placed.crs is None and len(placed) == len(pixel)
    moved = shapely.transform(pixel.geometry.values, lambda xy: xy + [300000, 5000000])
    assert np.allclose(shapely.get_coordinates(placed.geometry.values),
                       shapely.get_coordinates(moved), atol=1e-6)
    assert placed["length_m"].tolist() == pytest.approx(pixel["length_m"].tolist())
    mask = binary_dilation(_mask(tile["mask"]), iterations=2)
    world = Affine(1, 0, 300000, 0, -1, 5000000)
    assert _sample(mask, world, shapely.get_coordinates(placed.geometry.values)).mean() > 0.85
    # GeoJSON needs lon/lat: refused before any window is read, naming the missing CRS
    code, _, err = cli("predict", str(image), "-o", str(tmp_path / "r.geojson"))
    assert code == 1 and "tile.jpg has no CRS" in err and "GeoJSON" in err
    assert "Traceback" not in err


def test_world_file_scale_and_gsd_override(tile: dict[str, Path], tmp_path: Path,
                                           cli: Cli) -> None:
    """A ``.pgw`` with 0.5-unit pixels beside the mask: lines in its coordinates; lengths in
    its units taken as metres, or from --gsd (coordinates stay the world file's)."""
    mask_png = tmp_path / "mask.png"
    shutil.copyfile(tile["mask"], mask_png)
    (tmp_path / "mask.pgw").write_text("0.5\n0\n0\n-0.5\n1000.25\n1999.75\n")
    world = Affine(0.5, 0, 1000, 0, -0.5, 2000)
    lengths = {}
    for name, extra in (("units", []), ("gsd", ["--gsd", "1"])):
        out = tmp_path / f"{name}.gpkg"
        code, _, err = cli("vectorize", str(mask_png), "-o", str(out), "--no-repair", *extra)
        assert code == 0 and "mask.pgw" in err and "no CRS" in err, err
        roads, xy = _vertices(out)
        assert roads.crs is None
        assert _sample(binary_dilation(_mask(mask_png)), world, xy).mean() > 0.95
        lengths[name] = roads["length_m"].sum()
    assert lengths["gsd"] == pytest.approx(2 * lengths["units"], rel=0.05)


def test_world_file_in_degrees_without_crs_asks_for_gsd(tmp_path: Path) -> None:
    image = tmp_path / "deg.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    (tmp_path / "deg.pgw").write_text("0.00001\n0\n0\n-0.00001\n-71.0\n42.0\n")
    with pytest.raises(SceneError, match=r"deg\.pgw.*no CRS.*degrees\?.*--gsd"):
        open_scene(image)
    with open_scene(image, gsd_m=1.0) as scene:  # --gsd: lengths in metres, coordinates kept
        # a world file gives the centre of the upper-left pixel; the transform its corner
        assert scene.transform.almost_equals(Affine(1e-5, 0, -71.000005, 0, -1e-5, 42.000005))
        assert scene.pixel_size_m == (1.0, 1.0) and scene.crs is None


def test_aux_xml_geotransform_with_and_without_crs(tmp_path: Path) -> None:
    """GDAL reads an ``.aux.xml`` beside the image: with ``<SRS>`` the image is fully
    georeferenced (--gsd ignored), without it the transform is kept and no CRS is known."""
    geotransform = "<GeoTransform>500000, 0.5, 0, 4000000, 0, -0.5</GeoTransform>"
    for name, srs in (("with_crs", "<SRS>EPSG:32633</SRS>"), ("no_crs", "")):
        image = tmp_path / f"{name}.png"
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
        Path(f"{image}.aux.xml").write_text(f"<PAMDataset>{srs}{geotransform}</PAMDataset>")
        with open_scene(image, gsd_m=2.0) as scene:
            assert scene.transform == Affine(0.5, 0, 500000, 0, -0.5, 4000000)
            assert scene.georeferenced
            if srs:
                assert scene.crs == "EPSG:32633" and scene.gsd_m == pytest.approx(0.5)
            else:
                assert scene.crs is None and scene.gsd_m == 2.0


# ---------------------------------------------------------------- roadx eval --gsd


def test_eval_gsd_scores_pixel_space_output_against_the_mask(
    tile: dict[str, Path], predicted: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    """``roadx eval roads.gpkg MASK.png --gsd 1``: the mask is placed where roadx put the
    lines, so CCQ, APLS and TOPO are computed (in metres, without CRS) and are sane."""
    code, stdout, err = cli("eval", str(predicted["roads"]), str(tile["mask"]), "--gsd", "1",
                            "--image", str(tile["image"]), "--report", str(tmp_path / "rep"),
                            "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["metric_crs"].startswith("none: local metric frame")
    ccq = d["ccq"]
    assert ccq["completeness"] > 0.75 and ccq["correctness"] > 0.85, ccq  # 0.88 / 0.95
    assert 0.35 < d["apls"]["apls"] <= 1.0, d["apls"]  # measured 0.53
    assert d["topo"]["f1"] > 0.6 and d["pixel"]["relaxed"]["f1"] > 0.8
    assert 5000 < ccq["gt_length_m"] < 8000  # the mask's centrelines, metres of the 1 m grid
    diff = tmp_path / "rep" / "diff.gpkg"
    assert gpd.read_file(diff, layer="matched").crs is None
    # the probability raster, against the same mask: the same place, pixel for pixel
    code, stdout, err = cli("eval", str(predicted["prob"]), str(tile["mask"]), "--gsd", "1",
                            "--json", "--no-topo", "--no-apls-tiles")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["pixel"]["dataset"]["iou"] > 0.5 and d["ccq"]["correctness"] > 0.85


def test_eval_errors_for_inputs_in_different_frames(
    tile: dict[str, Path], predicted: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    """Without --gsd the mask cannot be placed; beside a georeferenced ground truth the
    pixel-space lines cannot be compared: one-line errors that say what to do."""
    code, _, err = cli("eval", str(predicted["roads"]), str(tile["mask"]))
    assert code == 1 and "has no georeferencing" in err and "pass --gsd" in err, err
    assert "Traceback" not in err
    gt = tmp_path / "gt.geojson"
    gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (0.001, 0)])],
                     crs="EPSG:4326").to_file(gt)
    code, _, err = cli("eval", str(predicted["roads"]), str(gt), "--gsd", "1")
    assert code == 1 and "roads.gpkg has no CRS but" in err, err
    assert "EPSG:4326 fixed" not in err and "Traceback" not in err
    # two plain masks without --gsd: still pixel metrics, with a hint at --gsd
    code, stdout, err = cli("eval", str(tile["mask"]), str(tile["mask"]), "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["pixel"]["dataset"]["iou"] == 1.0 and d["ccq"] is None
    assert any("--gsd" in note for note in d["notes"])


# ---------------------------------------------------------------- QGIS


def _has_qgis() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                              check=False,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


QGIS_EXTENTS = """
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
image, gpkg, prob = sys.argv[1:4]
layers = {"image": QgsRasterLayer(image, "image", "gdal"),
          "roads": QgsVectorLayer(gpkg + "|layername=roads", "roads", "ogr"),
          "prob": QgsRasterLayer(prob, "prob", "gdal")}
out = {}
for name, layer in layers.items():
    e = layer.extent()
    out[name] = {"valid": layer.isValid(),
                 "extent": [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()]}
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS may crash while tearing down its providers; the check is done
"""


@pytest.mark.skipif(not _has_qgis(), reason="QGIS (python3-qgis) is not installed")
def test_qgis_shows_the_outputs_on_the_image(
    tile: dict[str, Path], predicted: dict[str, Path]
) -> None:
    """In QGIS (Debian's python3-qgis, headless) the plain tile lies at x = col, y = -row;
    the road layer falls inside it and the probability raster covers it exactly."""
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", QGIS_EXTENTS, str(tile["image"]), str(predicted["roads"]),
         str(predicted["prob"])], capture_output=True, text=True, timeout=300, check=True,
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(layer["valid"] for layer in loaded.values())
    image = shapely.box(*loaded["image"]["extent"])
    roads = shapely.box(*loaded["roads"]["extent"])
    assert loaded["image"]["extent"] == [0, -750, 750, 0]  # QGIS: y = -row
    assert loaded["prob"]["extent"] == loaded["image"]["extent"]
    assert image.contains(roads) and roads.area > 0.8 * image.area
