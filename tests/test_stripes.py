"""Stripes of the window grid (the Ray backend's unit of work) give bit-identical bands.

``predict_scene(rows=(r0, r1))`` runs the windows of grid rows ``[r0, r1)`` plus the halo
rows above, and must yield exactly the bands a whole-scene run yields for those rows: same
windows, same batches, same blending weights, same order of summation. Checked with a real
(tiny, randomly initialised) D3FNet on a real SpaceNet scene (Atlanta, UTM, 1 m), for both
blend modes and for an overlap above half a window (two halo rows).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from roadx.io import open_scene
from roadx.models import create_model, get_card
from roadx.predict import PredictOptions, predict_scene
from roadx.predict.stitch import Stitcher
from roadx.tiling import TileGrid

ATLANTA = "spacenet_solaris/sample_geotiff.tif"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """Width-8 D3FNet with He-initialised convolutions (outputs vary with the input)."""
    torch.manual_seed(0)
    net = create_model("d3fnet34", width=8).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 4 and "bias" not in name:
                torch.nn.init.kaiming_normal_(p)
    return net


def _bands(scene, grid, model, options, rows=None) -> list[tuple[int, int, np.ndarray]]:
    return [(w.row_off, w.height, p) for w, p in predict_scene(
        scene.read_window, grid, model, get_card("d3fnet34"), options, rows=rows)]


@pytest.mark.parametrize(("blend", "tile", "overlap", "batch", "sizes"), [
    ("cosine", 96, 32, 3, (1, 3)), ("crop", 96, 32, 2, (2,)), ("cosine", 128, 80, 3, (2,)),
])
def test_stripes_equal_the_whole_scene_bit_for_bit(shared_data: Path, model, blend, tile,
                                                   overlap, batch, sizes) -> None:
    options = PredictOptions(tta="none", blend=blend, batch_size=batch, device="cpu",
                             precision="fp32")
    with open_scene(shared_data / ATLANTA, band_order=get_card("d3fnet34").band_names,
                    target_gsd_m=1.0) as scene:
        grid = TileGrid(scene.height, scene.width, tile_px=tile, overlap_px=overlap)
        assert grid.n_rows >= 4 and grid.n_cols % batch  # batches would span rows
        whole = _bands(scene, grid, model, options)
        for rows_per_stripe in sizes:
            parts = []
            for rows in grid.stripes(rows_per_stripe):
                part = _bands(scene, grid, model, options, rows=rows)
                assert len(part) == rows[1] - rows[0]  # one band per owned grid row
                parts += part
            assert [(r, h) for r, h, _ in parts] == [(r, h) for r, h, _ in whole]
            for (_, _, a), (_, _, b) in zip(parts, whole, strict=True):
                np.testing.assert_array_equal(a, b)  # bit-identical, NaN where nodata
    assert grid.halo_rows == (2 if overlap > tile // 2 else 1)
    assert np.isfinite(np.concatenate([b for _, _, b in whole])).mean() > 0.9
    assert np.nanstd(np.concatenate([b for _, _, b in whole])) > 0.05  # not a constant map


def test_stripes_cover_the_rows_and_a_stitcher_refuses_rows_outside_the_grid() -> None:
    grid = TileGrid(1000, 300, tile_px=160, overlap_px=64)
    assert grid.stripes(4) == [(0, 4), (4, 8), (8, 10)]
    assert grid.stripes(100) == [(0, grid.n_rows)]
    with pytest.raises(ValueError, match="at least 1 grid row"):
        grid.stripes(0)
    with pytest.raises(ValueError, match="not a range inside"):
        Stitcher(grid, rows=(3, 11))
