"""``roadx predict --preview``: a quick-look PNG whose roads lie on the scene's roads, for a
georeferenced GeoTIFF and for a plain image in pixel space; bad paths are refused up front."""

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image

ORANGE = np.array([255, 140, 0])


def _roadx(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "roadx", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert (proc.returncode == 0) == ok, proc.stderr
    return proc


def _vertices_on_drawn_lines(png: Path, gpkg: Path, to_pixel) -> float:  # noqa: ANN001
    """Share of road vertices (in preview pixels) within 1 px of an orange/cyan pixel."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    drawn = (np.abs(rgb - ORANGE).sum(-1) < 30) | (np.abs(rgb - [0, 220, 255]).sum(-1) < 30)
    roads = gpd.read_file(gpkg, layer="roads")
    hits = total = 0
    for geom in roads.geometry:
        for col, row in to_pixel(np.asarray(geom.coords)):
            r, c = int(round(row)), int(round(col))
            if 1 <= r < drawn.shape[0] - 1 and 1 <= c < drawn.shape[1] - 1:
                total += 1
                hits += bool(drawn[r - 1 : r + 2, c - 1 : c + 2].any())
    assert total > 20
    return hits / total


@pytest.mark.slow
def test_preview_of_a_geotiff_draws_the_roads_where_they_are(shared_data: Path, tmp_path: Path) -> None:
    scene = shared_data / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    png, gpkg = tmp_path / "look.png", tmp_path / "roads.gpkg"
    _roadx("predict", str(scene), "-o", str(gpkg), "--preview", str(png), "--tta", "none")
    from roadx.io import open_scene
    from roadx.pipeline import default_weights_path
    from roadx.models import load_checkpoint
    from roadx.tiling import Window

    _, card = load_checkpoint(default_weights_path())
    # the processing grid: the scene warped to the model's 1 m GSD, as roadx predict reads it
    with open_scene(scene, band_order=card.band_names, target_gsd_m=card.gsd_m) as grid:
        transform, width, height = grid.transform, grid.width, grid.height
        bgr, _ = grid.read_window(Window(0, 0, height, width))
    image = Image.open(png)
    assert image.mode == "RGB" and image.size == (width, height)  # small scene: full size

    def to_pixel(xy: np.ndarray) -> np.ndarray:
        cols, rows = ~transform @ (xy[:, 0], xy[:, 1])
        return np.stack([np.asarray(cols), np.asarray(rows)], axis=1)

    assert _vertices_on_drawn_lines(png, gpkg, to_pixel) > 0.95
    # away from the drawn lines the preview is the scene itself, in R, G, B order
    rgb = np.asarray(image.convert("RGB")).astype(int)
    drawn = (np.abs(rgb - ORANGE).sum(-1) < 60) | (np.abs(rgb - [0, 220, 255]).sum(-1) < 60)
    from scipy.ndimage import binary_dilation

    away = ~binary_dilation(drawn, iterations=2)
    assert np.abs(rgb[away] - np.moveaxis(bgr[::-1], 0, -1)[away]).mean() < 2.0


@pytest.mark.slow
def test_preview_of_a_plain_image_in_pixel_space(shared_data: Path, tmp_path: Path) -> None:
    scene = shared_data / "massachusetts_lorudarku" / "images" / "10378735_15_1_0.jpg"
    png, gpkg = tmp_path / "look.png", tmp_path / "roads.gpkg"
    _roadx("predict", str(scene), "-o", str(gpkg), "--gsd", "1", "--preview", str(png),
           "--tta", "none")
    width, height = Image.open(scene).size
    assert Image.open(png).size == (width, height)  # 750 px: drawn at full size

    def to_pixel(xy: np.ndarray) -> np.ndarray:  # x = col * 1 m, y = -row * 1 m
        return np.stack([xy[:, 0], -xy[:, 1]], axis=1)

    assert _vertices_on_drawn_lines(png, gpkg, to_pixel) > 0.95


def test_preview_path_is_checked_before_any_work(shared_data: Path, tmp_path: Path) -> None:
    scene = shared_data / "spacenet_apls" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
    bad = _roadx("predict", str(scene), "-o", str(tmp_path / "r.gpkg"), "--preview",
                 str(tmp_path / "look.jpg"), ok=False)
    assert "look.jpg" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "look.png").write_bytes(b"keep")
    taken = _roadx("predict", str(scene), "-o", str(tmp_path / "r.gpkg"), "--preview",
                   str(tmp_path / "look.png"), ok=False)
    assert "--overwrite" in taken.stderr and (tmp_path / "look.png").read_bytes() == b"keep"
    assert not (tmp_path / "r.gpkg").exists()
