"""The global window grid: pure geometry, no I/O, no torch.

One grid is defined per scene, with its origin at pixel (0, 0). Window ``i`` along an axis
starts at ``i * stride_px`` and is ``tile_px`` long, where ``stride_px = tile_px - overlap_px``.
The last window may run past the scene edge; it is read *boundless* (padded), never shifted,
so the grid of a scene does not depend on how it is processed.

Each window owns a *core*: the pixels it alone writes when stitching by crop. Cores discard
``overlap_px // 2`` pixels on every side that has a neighbour window and keep the full extent
on sides that touch the scene edge, so the cores tile the scene exactly (every pixel belongs
to exactly one core). The same geometry gives the cosine-blending weights in
:func:`blend_weights_1d` (tapered only towards neighbours, never at the scene edge).

Background: ``../shared/specs/pipeline-anchors.md`` §4.1–4.2 (global grid, crop or cosine
blending, no taper at scene boundaries; TorchGeo issues #431/#1329 show what goes wrong when
the last window is shifted).

Example:
    >>> grid = TileGrid(height=1792, width=1000, tile_px=1024, overlap_px=256)
    >>> grid.n_rows, grid.n_cols, len(grid)
    (2, 1, 2)
    >>> [t.core for t in grid]  # doctest: +NORMALIZE_WHITESPACE
    [Window(row_off=0, col_off=0, height=896, width=1000),
     Window(row_off=896, col_off=0, height=896, width=1000)]
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from roadx.errors import InputError


@dataclass(frozen=True, slots=True)
class Window:
    """A rectangle of pixels: rows ``[row_off, row_off + height)``, cols ``[col_off, col_off + width)``.

    Offsets are in pixels of the scene grid and may be negative or run past the scene (a
    boundless window). Unlike ``rasterio.windows.Window`` the order is (row, col), matching
    numpy's ``(H, W)`` arrays; :mod:`roadx.io` converts.
    """

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise ValueError(f"window size must be non-negative, got {self.height}x{self.width}")

    @property
    def row_end(self) -> int:
        """One past the last row (exclusive)."""
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        """One past the last column (exclusive)."""
        return self.col_off + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    def intersection(self, other: "Window") -> "Window":
        """Return the overlap of two windows (zero-sized when they do not overlap)."""
        r0, c0 = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        r1, c1 = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        return Window(r0, c0, max(0, r1 - r0), max(0, c1 - c0))

    def relative_to(self, outer: "Window") -> tuple[slice, slice]:
        """Return the ``(rows, cols)`` slices that index this window inside an array of ``outer``.

        Raises:
            ValueError: if this window is not contained in ``outer``.
        """
        if not (
            outer.row_off <= self.row_off
            and outer.col_off <= self.col_off
            and self.row_end <= outer.row_end
            and self.col_end <= outer.col_end
        ):
            raise ValueError(f"{self} is not inside {outer}")
        r, c = self.row_off - outer.row_off, self.col_off - outer.col_off
        return slice(r, r + self.height), slice(c, c + self.width)


@dataclass(frozen=True, slots=True)
class Tile:
    """One window of the grid.

    Attributes:
        row: grid row index (0-based).
        col: grid column index (0-based).
        read: the full ``tile_px x tile_px`` window to read (may extend past the scene).
        core: the pixels this tile owns when stitching by crop (always inside the scene).
    """

    row: int
    col: int
    read: Window
    core: Window


def _axis_starts(size_px: int, tile_px: int, stride_px: int) -> list[int]:
    """Window start offsets along one axis: ``0, stride, 2*stride, ...`` until the axis is covered."""
    n = 1 if size_px <= tile_px else 1 + -(-(size_px - tile_px) // stride_px)
    return [i * stride_px for i in range(n)]


def _axis_cores(size_px: int, tile_px: int, overlap_px: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each window's core along one axis; the cores partition ``[0, size_px)``."""
    stride_px = tile_px - overlap_px
    starts = _axis_starts(size_px, tile_px, stride_px)
    lo, hi = overlap_px // 2, overlap_px - overlap_px // 2
    cores = []
    for i, s in enumerate(starts):
        a = 0 if i == 0 else s + lo
        b = size_px if i == len(starts) - 1 else s + tile_px - hi
        cores.append((a, min(b, size_px)))
    return cores


@dataclass(frozen=True, slots=True)
class TileGrid:
    """The global grid of overlapping windows over a ``height x width`` scene.

    Args:
        height: scene height in pixels (> 0).
        width: scene width in pixels (> 0).
        tile_px: window side in pixels (default 1024; a multiple of 32 for the models).
        overlap_px: overlap between neighbouring windows in pixels (default 256, i.e.
            stride 768). It should be about the receptive-field margin the model needs
            near a window edge; ``0 <= overlap_px < tile_px``.

    Raises:
        roadx.errors.InputError: on a non-positive size or an overlap outside ``[0, tile_px)``.

    Notes:
        ``len(grid) == n_rows * n_cols`` with ``n = 1 + ceil((size - tile_px) / stride_px)``
        (1 when the scene is smaller than a window). Iteration is row-major, so all windows
        of grid row ``r`` come before those of row ``r + 1``.
    """

    height: int
    width: int
    tile_px: int = 1024
    overlap_px: int = 256

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"scene size must be positive, got {self.height}x{self.width} px")
        if self.tile_px <= 0:
            raise InputError(f"tile size must be positive, got {self.tile_px} px")
        if not 0 <= self.overlap_px < self.tile_px:
            raise InputError(
                f"overlap must be in [0, {self.tile_px}) px for {self.tile_px} px tiles, "
                f"got {self.overlap_px}"
            )

    @property
    def stride_px(self) -> int:
        """Distance between window origins in pixels (``tile_px - overlap_px``)."""
        return self.tile_px - self.overlap_px

    @property
    def row_starts(self) -> list[int]:
        """Row offset of each grid row's windows."""
        return _axis_starts(self.height, self.tile_px, self.stride_px)

    @property
    def col_starts(self) -> list[int]:
        """Column offset of each grid column's windows."""
        return _axis_starts(self.width, self.tile_px, self.stride_px)

    @property
    def n_rows(self) -> int:
        """Number of grid rows."""
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        """Number of grid columns."""
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def row_cores(self) -> list[tuple[int, int]]:
        """``(start, end)`` rows owned by each grid row; they partition ``[0, height)``."""
        return _axis_cores(self.height, self.tile_px, self.overlap_px)

    def col_cores(self) -> list[tuple[int, int]]:
        """``(start, end)`` columns owned by each grid column; they partition ``[0, width)``."""
        return _axis_cores(self.width, self.tile_px, self.overlap_px)

    @property
    def halo_rows(self) -> int:
        """Grid rows before a grid row whose windows still reach into its first row:
        ``ceil(tile_px / stride_px) - 1`` (1 for overlaps up to half a window).

        A part of the scene that owns the bands of grid rows ``[r0, r1)`` (see
        :meth:`stripes`) must also run the windows of the ``halo_rows`` grid rows before
        ``r0`` to blend them exactly as a whole-scene run does.
        """
        return -(-self.tile_px // self.stride_px) - 1

    def stripes(self, rows_per_stripe: int) -> list[tuple[int, int]]:
        """Split the grid rows into consecutive stripes of ``rows_per_stripe`` grid rows.

        Args:
            rows_per_stripe: grid rows per stripe (>= 1); the last stripe may be shorter.

        Returns:
            ``[(r0, r1), ...]``: half-open grid-row ranges covering ``[0, n_rows)`` in order.

        Raises:
            roadx.errors.InputError: ``rows_per_stripe < 1``.
        """
        if rows_per_stripe < 1:
            raise InputError(f"a stripe needs at least 1 grid row, got {rows_per_stripe}")
        n = self.n_rows
        return [(r, min(r + rows_per_stripe, n)) for r in range(0, n, rows_per_stripe)]

    def tiles_in_row(self, row: int) -> list[Tile]:
        """All tiles of grid row ``row``, left to right."""
        r0 = self.row_starts[row]
        ra, rb = self.row_cores()[row]
        tiles = []
        for col, (c0, (ca, cb)) in enumerate(zip(self.col_starts, self.col_cores(), strict=True)):
            tiles.append(
                Tile(
                    row=row,
                    col=col,
                    read=Window(r0, c0, self.tile_px, self.tile_px),
                    core=Window(ra, ca, rb - ra, cb - ca),
                )
            )
        return tiles

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.n_rows):
            yield from self.tiles_in_row(row)


def blend_weights_1d(
    start_px: int, tile_px: int, overlap_px: int, *, first: bool, last: bool
) -> np.ndarray:
    """Cosine (Hann) blending weights along one axis of one window.

    Inside the overlap with a neighbour the weight falls as ``cos^2`` while the neighbour's
    rises as ``sin^2``, so the weights of all windows sum to exactly 1 at every pixel of the
    scene. Sides without a neighbour (``first`` / ``last``: the scene edge) keep weight 1,
    so the outermost scene pixels are never left with zero weight.

    Args:
        start_px: offset of the window along the axis (unused except for documentation of
            the global grid; weights depend only on the window's position flags).
        tile_px: window length in pixels.
        overlap_px: overlap with each neighbour in pixels.
        first: the window is the first on this axis (no neighbour before it).
        last: the window is the last on this axis (no neighbour after it).

    Returns:
        ``(tile_px,)`` float32 weights in ``[0, 1]``.

    References:
        Pielawski & Wählby, "Introducing Hann windows for reducing edge-effects in
        patch-based image segmentation", PLOS ONE 2020.
    """
    del start_px
    w = np.ones(tile_px, dtype=np.float64)
    if overlap_px > 0:
        t = (np.arange(overlap_px) + 0.5) / overlap_px  # (overlap,) in (0, 1)
        rise = np.sin(0.5 * np.pi * t) ** 2
        if not first:
            w[:overlap_px] = rise
        if not last:
            w[tile_px - overlap_px :] = rise[::-1]
    return w.astype(np.float32)
