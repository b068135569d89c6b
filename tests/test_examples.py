"""The synthetic quick-start scene generator (examples/make_example_scene.py).

The generator runs once through its command line (512 px at 0.8 m/px, so that a wrong pixel size
or extent would show) and once in-process for the determinism check.
"""

import hashlib
import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import box

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "make_example_scene.py"
SIZE_PX, GSD_M, SEED = 512, 0.8, 7
ARGS = ["--size", str(SIZE_PX), "--gsd", str(GSD_M), "--seed", str(SEED)]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example_scene", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example")
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), *ARGS], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("synthetic_scene.tif", "synthetic_centrelines.geojson",
                 "synthetic_centrelines.gpkg"):
        assert name in done.stdout  # it reports what it wrote
    return out


def _pixel_sha(path: Path) -> str:
    with rasterio.open(path) as ds:
        return hashlib.sha256(ds.read().tobytes()).hexdigest()


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of (..., 3) uint8 pixels."""
    rgb = rgb.astype(np.float64)
    hi, lo = rgb.max(-1), rgb.min(-1)
    return np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0.0)


def _green_excess(rgb: np.ndarray) -> np.ndarray:
    """G - (R + B) / 2 of (..., 3) uint8 pixels: high for vegetation, ~0 for grey."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 1] - (rgb[..., 0] + rgb[..., 2]) / 2


def test_scene_is_a_tiled_georeferenced_rgb_geotiff_marked_synthetic(scene_dir: Path) -> None:
    with rasterio.open(scene_dir / "synthetic_scene.tif") as ds:
        assert ds.crs.to_epsg() == 32619
        assert (ds.width, ds.height, ds.count) == (SIZE_PX, SIZE_PX, 3)
        assert ds.dtypes == ("uint8", "uint8", "uint8")
        assert ds.res == pytest.approx((GSD_M, GSD_M))
        t = ds.transform
        assert (t.a, t.b, t.d, t.e) == pytest.approx((GSD_M, 0.0, 0.0, -GSD_M))
        assert (t.c, t.f) == pytest.approx((330000.0, 4690000.0))
        assert ds.bounds.right - ds.bounds.left == pytest.approx(SIZE_PX * GSD_M)
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        tags = ds.tags()
        assert tags["SYNTHETIC"] == "yes"
        assert "synthetic" in tags["DESCRIPTION"] and "not real imagery" in tags["DESCRIPTION"]
        assert tags["SEED"] == str(SEED)
        img = ds.read()
    assert 40 < img.mean() < 200 and img.std() > 15  # an image, not a blank or saturated canvas


def test_centrelines_lie_in_the_scene_in_both_files(scene_dir: Path) -> None:
    with rasterio.open(scene_dir / "synthetic_scene.tif") as ds:
        scene = box(*ds.bounds)
    geo = gpd.read_file(scene_dir / "synthetic_centrelines.geojson")
    pkg = gpd.read_file(scene_dir / "synthetic_centrelines.gpkg", layer="centrelines")
    assert geo.crs.to_epsg() == 4326 and pkg.crs.to_epsg() == 32619
    lon_min, lat_min, lon_max, lat_max = geo.total_bounds
    assert -71.2 < lon_min < lon_max < -70.9 and 42.2 < lat_min < lat_max < 42.5  # near Boston
    back = geo.to_crs(32619)
    assert back.geometry.within(scene.buffer(0.01)).all()
    assert pkg.geometry.within(scene).all()
    assert len(geo) == len(pkg) >= 8
    assert list(geo["name"]) == list(pkg["name"]) and list(geo["width_m"]) == list(pkg["width_m"])
    for a, b in zip(back.geometry, pkg.geometry):
        assert shapely.hausdorff_distance(a, b) < 0.05  # same lines, reprojected
    assert set(pkg["kind"]) == {"arterial", "residential", "cul-de-sac", "lane"}
    assert pkg["width_m"].min() >= 5 and pkg["width_m"].max() <= 14
    assert pkg.groupby("name")["width_m"].nunique().eq(1).all()


def test_centrelines_are_noded_at_t_and_four_way_junctions(scene_dir: Path) -> None:
    pkg = gpd.read_file(scene_dir / "synthetic_centrelines.gpkg", layer="centrelines")
    ends = Counter()
    for line in pkg.geometry:
        for x, y in (line.coords[0], line.coords[-1]):
            ends[(round(x, 6), round(y, 6))] += 1
    degrees = Counter(ends.values())
    assert degrees[3] >= 3  # T-junctions (three pieces share an exact end point)
    assert degrees[4] >= 2  # crossroads


def test_roads_under_the_centrelines_are_grey_and_unlike_vegetation(scene_dir: Path) -> None:
    pkg = gpd.read_file(scene_dir / "synthetic_centrelines.gpkg", layer="centrelines")
    with rasterio.open(scene_dir / "synthetic_scene.tif") as ds:
        img = ds.read().transpose(1, 2, 0)
        transform = ds.transform
    samples = []
    for line in pkg.geometry:
        pts = shapely.line_interpolate_point(line, np.arange(0.0, line.length, 1.0))
        rows, cols = rasterio.transform.rowcol(transform, shapely.get_x(pts), shapely.get_y(pts))
        samples.append(img[np.asarray(rows), np.asarray(cols)])
    road = np.concatenate(samples)
    assert len(road) > 1000
    sat_road, sat_all = _saturation(road).mean(), _saturation(img).mean()
    assert sat_road < 0.6 * sat_all  # asphalt is grey, grass and trees are green
    assert _green_excess(road).mean() < 3.0 < _green_excess(img).mean()
    assert 70 < road.mean() < 170  # mid grey: neither shadow-black nor marking-white on average


def test_same_seed_gives_the_same_pixels_and_another_seed_does_not(
        scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = _load_generator()
    gen.main([str(tmp_path / "again"), *ARGS])
    assert "synthetic_scene.tif" in capsys.readouterr().out
    first = _pixel_sha(scene_dir / "synthetic_scene.tif")
    assert _pixel_sha(tmp_path / "again" / "synthetic_scene.tif") == first
    other, _ = gen.render(256, GSD_M, SEED + 1)
    same, _ = gen.render(256, GSD_M, SEED)
    assert not np.array_equal(other, same)


def test_too_small_a_scene_is_refused_with_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    gen = _load_generator()
    with pytest.raises(SystemExit) as exc:
        gen.main(["--size", "64"])
    assert exc.value.code == 2
    assert "--size 64 is too small" in capsys.readouterr().err


OVERLAY = REPO / "examples" / "render_overlay.py"


def _overlay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(OVERLAY), *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.slow
def test_overlay_script_draws_lines_over_the_scene_and_refuses_bad_paths(scene_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    scene, lines = scene_dir / "synthetic_scene.tif", scene_dir / "synthetic_centrelines.gpkg"
    png = tmp_path / "overlay.png"
    done = _overlay(str(scene), str(lines), str(png), "--truth", str(scene_dir / "synthetic_centrelines.geojson"))
    assert done.returncode == 0, done.stderr
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 1000  # the predicted lines are drawn in red
    assert done.stdout.strip() == str(png.resolve())
    inside = _overlay(str(scene), str(lines), str(REPO / "overlay.png"))
    assert inside.returncode == 1 and "inside the repository" in inside.stderr
    assert not (REPO / "overlay.png").exists()
    missing = _overlay(str(scene), str(tmp_path / "nope.gpkg"), str(tmp_path / "o.png"))
    assert missing.returncode == 1 and "nope.gpkg: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "o.png").exists()
