"""Stitch window probabilities into full-width row bands, in constant memory.

A :class:`Stitcher` serves one :class:`~roadx.tiling.TileGrid`. It receives every tile of the
grid in grid (row-major) order, each either with its ``(tile_px, tile_px)`` probability map
and valid mask, or as *skipped* (the window had no valid data and was not run). As soon as
no future window can touch a range of scene rows, those rows are emitted as one finished
band ``(Window(row0, 0, h, width), prob (h, width) float32)``. Bands come out in order,
are full-width and cover ``[0, height)`` exactly once.

Blending (``pipeline-anchors.md`` §4.2):

* ``"crop"``: every pixel is taken from the one tile whose :attr:`~roadx.tiling.Tile.core`
  contains it; one band per grid row (the grid row's core rows). Nothing is averaged, so
  the result does not depend on how the scene was cut.
* ``"cosine"``: every window is weighted by the outer product of
  :func:`~roadx.tiling.blend_weights_1d` (Hann taper towards neighbours only, weight 1 at the
  scene edge), and the weighted sum is divided by the summed weights. One band per grid row:
  rows ``[start_r, start_{r+1})`` (to ``height`` for the last row), i.e. the rows the next
  grid row no longer reaches.

Memory: the accumulators hold at most ``min(tile_px, height)`` rows of the scene width
(``"cosine"``: sum and weight, 8 B per pixel; ``"crop"``: one core band, 4 B per pixel), so
peak memory is ``O(tile_px * width)`` and independent of the scene height. It is exposed as
:attr:`Stitcher.peak_rows`.

Pixels whose valid mask is False, and pixels of skipped windows, come out NaN.
"""

from typing import Literal

import numpy as np

from roadx.errors import InputError
from roadx.tiling import Tile, TileGrid, Window, blend_weights_1d

BlendMode = Literal["crop", "cosine"]
"""How overlapping windows are combined: ``"crop"`` (window cores) or ``"cosine"`` (Hann)."""

Band = tuple[Window, np.ndarray]
"""A finished band: its full-width window and ``(h, width)`` float32 probabilities, NaN = nodata."""


class Stitcher:
    """Assemble the probability maps of one grid's windows into finished row bands.

    Call :meth:`add` or :meth:`skip` once per tile, in grid order; each call returns the
    bands it completed (possibly none). After the last tile, every row has been emitted.

    Args:
        grid: the grid the tiles come from.
        blend: ``"crop"`` or ``"cosine"`` (default).
        rows: ``(first, stop)``: receive only the tiles of grid rows ``[first, stop)`` (a
            stripe of the scene, see :meth:`roadx.tiling.TileGrid.stripes`); None: all.
            Each band is emitted when its grid row is complete, as for the whole grid; the
            bands of the first ``grid.halo_rows`` rows of a stripe that does not start at
            row 0 lack the windows above them (cosine blending), so callers drop them. The
            other bands equal the whole-grid bands bit for bit (same windows, weights and
            order of summation).

    Raises:
        roadx.errors.InputError: for an unknown blend mode or rows outside the grid.

    Notes:
        Peak memory is ``peak_rows * width * 8 B`` (cosine) or ``* 4 B`` (crop), with
        ``peak_rows <= tile_px``, plus the bands the caller still holds.
    """

    def __init__(self, grid: TileGrid, *, blend: BlendMode = "cosine",
                 rows: tuple[int, int] | None = None) -> None:
        if blend not in ("crop", "cosine"):
            raise InputError(f"unknown blend mode {blend!r}; expected 'crop' or 'cosine'")
        first, stop = (0, grid.n_rows) if rows is None else rows
        if not 0 <= first < stop <= grid.n_rows:
            raise InputError(f"grid rows {rows} are not a range inside [0, {grid.n_rows})")
        self._stop = stop
        self.grid = grid
        self.blend: BlendMode = blend
        self._row_starts = grid.row_starts
        self._col_starts = grid.col_starts
        self._row_cores = grid.row_cores()
        self._next = (first, 0)  # (grid row, grid col) expected next
        self._rows_emitted = 0
        self._peak_rows = 0
        n_rows, n_cols, t = grid.n_rows, grid.n_cols, grid.tile_px
        self._wy = [
            blend_weights_1d(s, t, grid.overlap_px, first=i == 0, last=i == n_rows - 1)
            for i, s in enumerate(self._row_starts)
        ]
        self._wx = [
            blend_weights_1d(s, t, grid.overlap_px, first=j == 0, last=j == n_cols - 1)
            for j, s in enumerate(self._col_starts)
        ]
        self._acc: np.ndarray | None = None  # cosine: weighted sum, rows [row_start_r, +n)
        self._wsum: np.ndarray | None = None  # cosine: summed weights
        self._band: np.ndarray | None = None  # crop: the current grid row's core band
        self._open_row(first)

    @property
    def peak_rows(self) -> int:
        """Largest number of scene rows held in accumulators at any time (<= ``tile_px``)."""
        return self._peak_rows

    @property
    def rows_emitted(self) -> int:
        """End row of the last band emitted (bands cover ``[0, rows_emitted)`` for the
        whole grid; a stripe's bands end there)."""
        return self._rows_emitted

    @property
    def done(self) -> bool:
        """Whether every tile (of ``rows``) was received and its rows emitted."""
        return self._next == (self._stop, 0)

    def _open_row(self, row: int) -> None:
        """Prepare the accumulators for grid row ``row``."""
        width = self.grid.width
        if self.blend == "crop":
            ra, rb = self._row_cores[row]
            self._band = np.full((rb - ra, width), np.nan, dtype=np.float32)
            held = rb - ra
        elif self._acc is None:
            held = min(self.grid.tile_px, self.grid.height)
            self._acc = np.zeros((held, width), dtype=np.float32)
            self._wsum = np.zeros((held, width), dtype=np.float32)
        else:
            held = self._acc.shape[0]
        self._peak_rows = max(self._peak_rows, held)

    def _check_order(self, tile: Tile) -> None:
        if (tile.row, tile.col) != self._next:
            raise InputError(
                f"tiles must reach the Stitcher in grid order: expected tile {self._next}, "
                f"got ({tile.row}, {tile.col}); iterate the TileGrid row-major"
            )

    def skip(self, tile: Tile) -> list[Band]:
        """Record a window that was not run (no valid data); its pixels stay NaN.

        Args:
            tile: the next tile of the grid.

        Returns:
            The bands completed by this tile, in order (often empty).

        Raises:
            roadx.errors.InputError: if ``tile`` is not the next tile in grid order.
        """
        self._check_order(tile)
        return self._advance()

    def add(self, tile: Tile, prob: np.ndarray, valid: np.ndarray) -> list[Band]:
        """Blend one window's probabilities into the scene.

        Args:
            tile: the next tile of the grid.
            prob: ``(tile_px, tile_px)`` float32 probabilities in ``[0, 1]`` of ``tile.read``
                (rows/cols past the scene edge are ignored).
            valid: ``(tile_px, tile_px)`` bool, False where the input had no data.

        Returns:
            The bands completed by this tile, in order (often empty).

        Raises:
            roadx.errors.InputError: if ``tile`` is not the next tile in grid order, or
                ``prob`` / ``valid`` do not have the window's shape.
        """
        self._check_order(tile)
        t = self.grid.tile_px
        if prob.shape != (t, t) or valid.shape != (t, t):
            raise InputError(
                f"window {tile.read} needs ({t}, {t}) probability and valid arrays, got "
                f"{prob.shape} and {valid.shape}"
            )
        if self.blend == "crop":
            self._add_crop(tile, prob, valid)
        else:
            self._add_cosine(tile, prob, valid)
        return self._advance()

    def _add_crop(self, tile: Tile, prob: np.ndarray, valid: np.ndarray) -> None:
        assert self._band is not None
        core = tile.core
        rows, cols = core.relative_to(tile.read)  # the core inside the window
        dst = self._band[:, core.col_off : core.col_end]
        np.copyto(dst, prob[rows, cols], where=valid[rows, cols])

    def _add_cosine(self, tile: Tile, prob: np.ndarray, valid: np.ndarray) -> None:
        assert self._acc is not None and self._wsum is not None
        read = tile.read
        h = min(read.height, self.grid.height - read.row_off)  # rows inside the scene
        w = min(read.width, self.grid.width - read.col_off)
        weight = self._wy[tile.row][:h, None] * self._wx[tile.col][None, :w]  # (h, w)
        weight = np.where(valid[:h, :w], weight, np.float32(0.0))
        cols = slice(read.col_off, read.col_off + w)
        self._acc[:h, cols] += np.where(valid[:h, :w], prob[:h, :w], np.float32(0.0)) * weight
        self._wsum[:h, cols] += weight

    def _advance(self) -> list[Band]:
        """Move to the next tile; flush the band of a grid row that is now complete."""
        row, col = self._next
        if col + 1 < self.grid.n_cols:
            self._next = (row, col + 1)
            return []
        band = self._flush_crop(row) if self.blend == "crop" else self._flush_cosine(row)
        self._next = (row + 1, 0)
        if row + 1 < self._stop:
            self._open_row(row + 1)
        else:
            self._acc = self._wsum = self._band = None
        return [band]

    def _flush_crop(self, row: int) -> Band:
        assert self._band is not None
        ra, rb = self._row_cores[row]
        band, self._band = self._band, None
        self._rows_emitted = rb
        return Window(ra, 0, rb - ra, self.grid.width), band

    def _flush_cosine(self, row: int) -> Band:
        assert self._acc is not None and self._wsum is not None
        start = self._row_starts[row]
        last = row + 1 == self.grid.n_rows
        end = self.grid.height if last else self._row_starts[row + 1]
        n = end - start
        acc, wsum = self._acc[:n], self._wsum[:n]
        out = np.full(acc.shape, np.nan, dtype=np.float32)
        np.divide(acc, wsum, out=out, where=wsum > 0)
        if not last:  # keep rows [end, start + tile_px): shift them to the top, clear the rest
            keep = self._acc.shape[0] - n
            for buf in (self._acc, self._wsum):
                buf[:keep] = buf[n:]
                buf[keep:] = 0.0
        self._rows_emitted = end
        return Window(start, 0, n, self.grid.width), out
