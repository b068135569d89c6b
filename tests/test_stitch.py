"""Stitcher: exact reassembly, cosine normalisation, nodata, band order and bounded memory."""

import numpy as np
import pytest

from roadx.errors import InputError
from roadx.predict.stitch import Band, Stitcher
from roadx.tiling import TileGrid, Window

GARBAGE = 7.0  # value read past the scene edge: must never reach the output


def window_of(field: np.ndarray, window: Window, fill: float) -> np.ndarray:
    """Boundless read of a 2-D array: ``fill`` outside it."""
    out = np.full(window.shape, fill, dtype=field.dtype)
    inner = window.intersection(Window(0, 0, *field.shape))
    if inner.height and inner.width:
        rows, cols = inner.relative_to(window)
        out[rows, cols] = field[inner.row_off : inner.row_end, inner.col_off : inner.col_end]
    return out


def stitch(
    field: np.ndarray, grid: TileGrid, blend: str, valid: np.ndarray | None = None
) -> tuple[list[Band], Stitcher, int]:
    """Feed ``field`` window by window; windows without valid pixels are skipped."""
    valid = np.ones(field.shape, bool) if valid is None else valid
    stitcher = Stitcher(grid, blend=blend)  # type: ignore[arg-type]
    bands: list[Band] = []
    skipped = 0
    for tile in grid:
        v = window_of(valid, tile.read, False)
        if not v.any():
            bands += stitcher.skip(tile)
            skipped += 1
            continue
        p = window_of(field, tile.read, GARBAGE)
        p[~v] = GARBAGE  # invalid pixels carry junk: they must come out NaN anyway
        bands += stitcher.add(tile, p, v)
    assert stitcher.done
    return bands, stitcher, skipped


def assemble(bands: list[Band], grid: TileGrid) -> np.ndarray:
    """Check the band contract and glue the bands together."""
    row = 0
    for window, prob in bands:
        assert window.row_off == row and window.col_off == 0
        assert window.width == grid.width and window.height > 0
        assert prob.shape == window.shape and prob.dtype == np.float32
        row = window.row_end
    assert row == grid.height
    return np.concatenate([p for _, p in bands], axis=0)


SIZES = [(150, 333), (97, 61), (1000, 1337)]
GRIDS = [(128, 32), (256, 64), (64, 0), (96, 40)]  # tile_px, overlap_px (odd stride too)


@pytest.mark.parametrize("blend", ["crop", "cosine"])
@pytest.mark.parametrize(("tile_px", "overlap_px"), GRIDS)
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_constant_field_per_scene_is_reproduced(
    height: int, width: int, tile_px: int, overlap_px: int, blend: str
) -> None:
    rng = np.random.default_rng(height * width + tile_px)
    field = rng.random((height, width), dtype=np.float32)
    grid = TileGrid(height, width, tile_px=tile_px, overlap_px=overlap_px)
    bands, stitcher, _ = stitch(field, grid, blend)
    out = assemble(bands, grid)
    if blend == "crop":
        assert np.array_equal(out, field)
    else:
        np.testing.assert_allclose(out, field, rtol=0, atol=1e-6)
    assert stitcher.peak_rows <= min(tile_px, height)


def test_crop_takes_each_pixel_from_its_core_tile() -> None:
    grid = TileGrid(300, 250, tile_px=128, overlap_px=32)
    stitcher = Stitcher(grid, blend="crop")
    bands: list[Band] = []
    for i, tile in enumerate(grid):
        bands += stitcher.add(tile, np.full((128, 128), i, np.float32), np.ones((128, 128), bool))
    out = assemble(bands, grid)
    owner = np.full((300, 250), -1.0, np.float32)
    for i, tile in enumerate(grid):
        c = tile.core
        owner[c.row_off : c.row_end, c.col_off : c.col_end] = i
    assert np.array_equal(out, owner)


def test_cosine_blends_across_the_overlap_only() -> None:
    # two windows side by side with values 0 and 1: a smooth ramp over the 32-px overlap,
    # each window's own value outside it, weights summing to 1 (no normalisation artefacts)
    grid = TileGrid(64, 160, tile_px=96, overlap_px=32)  # windows at cols 0 and 64
    stitcher = Stitcher(grid, blend="cosine")
    bands: list[Band] = []
    for i, tile in enumerate(grid):
        bands += stitcher.add(tile, np.full((96, 96), i, np.float32), np.ones((96, 96), bool))
    out = assemble(bands, grid)
    assert np.all(out[:, :64] == 0.0) and np.all(out[:, 96:] == 1.0)
    ramp = out[0, 64:96]
    assert np.all(np.diff(ramp) > 0) and 0 < ramp[0] < 0.01 and 0.99 < ramp[-1] < 1
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-6)  # symmetric Hann taper


@pytest.mark.parametrize("blend", ["crop", "cosine"])
def test_invalid_pixels_and_skipped_windows_are_nan(blend: str) -> None:
    rng = np.random.default_rng(3)
    field = rng.random((400, 450), dtype=np.float32)
    valid = np.zeros(field.shape, bool)
    valid[30:170, 40:300] = True  # a valid block: most windows are empty
    valid[60:90, 100:120] = False  # with a hole
    grid = TileGrid(400, 450, tile_px=128, overlap_px=32)
    bands, _, skipped = stitch(field, grid, blend, valid)
    out = assemble(bands, grid)
    assert skipped > len(grid) // 2
    assert np.array_equal(np.isnan(out), ~valid)
    if blend == "crop":
        assert np.array_equal(out[valid], field[valid])
    else:
        np.testing.assert_allclose(out[valid], field[valid], atol=1e-6)


@pytest.mark.parametrize("blend", ["crop", "cosine"])
def test_all_windows_skipped_gives_all_nan_bands(blend: str) -> None:
    grid = TileGrid(200, 130, tile_px=64, overlap_px=16)
    stitcher = Stitcher(grid, blend=blend)  # type: ignore[arg-type]
    bands = [b for tile in grid for b in stitcher.skip(tile)]
    assert np.isnan(assemble(bands, grid)).all()


@pytest.mark.parametrize("blend", ["crop", "cosine"])
def test_bands_flush_early_and_memory_does_not_grow_with_height(blend: str) -> None:
    peaks = []
    for height in (500, 5000):
        grid = TileGrid(height, 40, tile_px=128, overlap_px=32)
        stitcher = Stitcher(grid, blend=blend)  # type: ignore[arg-type]
        ones, valid = np.ones((128, 128), np.float32), np.ones((128, 128), bool)
        n_bands = 0
        for tile in grid:  # one window per grid row: each add completes a band
            bands = stitcher.add(tile, ones, valid)
            assert len(bands) == 1
            # flushed as soon as no later window writes there: crop -> the end of this grid
            # row's cores; cosine -> the start of the next grid row's windows
            if blend == "crop":
                assert stitcher.rows_emitted == grid.row_cores()[tile.row][1]
            elif tile.row + 1 < grid.n_rows:
                assert stitcher.rows_emitted == grid.row_starts[tile.row + 1]
            n_bands += 1
        assert n_bands == grid.n_rows and stitcher.done
        peaks.append(stitcher.peak_rows)
    assert peaks[0] == peaks[1] <= 2 * 128


def test_out_of_order_and_wrong_shape_are_rejected() -> None:
    grid = TileGrid(200, 200, tile_px=128, overlap_px=32)
    tiles = list(grid)
    stitcher = Stitcher(grid, blend="crop")
    with pytest.raises(InputError, match="grid order"):
        stitcher.skip(tiles[1])
    with pytest.raises(InputError, match=r"\(128, 128\)"):
        stitcher.add(tiles[0], np.zeros((64, 64), np.float32), np.ones((64, 64), bool))
    with pytest.raises(InputError, match="blend"):
        Stitcher(grid, blend="mean")  # type: ignore[arg-type]
