"""Streaming vectorisation over full-width row bands, and the whole-array entry point.

Design (pipeline-anchors.md §5 item 9). The caller feeds consecutive row bands of any
height. The vectoriser keeps a float32 buffer of at most ``band + 2 * halo_px`` rows and
emits *final* skeleton rows with a lag of ``halo_px``: rows ``[done, end - halo_px)`` are
skeletonised from a buffer that holds at least ``halo_px`` rows of context above and below
them (the scene edges are mirrored instead). Only the skeleton pixels of the emitted rows are
kept, as a sparse list. Those rows are traced into a band graph (the last emitted row waits
for the next band, because its pixel degrees depend on the row below); pixels with a
neighbour across the seam are forced to be nodes, and
:class:`~roadx.vectorize.graph.GraphStitcher` joins consecutive band graphs by exact global
pixel coordinates. Spur pruning and degree-2 contraction run once, in
:meth:`BandVectorizer.finish`, on the merged graph, so a road crossing any number of seams
ends up as one edge. :func:`vectorize` is the same machine fed one band.

Network repair (:mod:`~roadx.vectorize.repair`): when gap bridging or snapping is on, dead
ends are repaired on the pending skeleton pixels before they are traced. Rows wait until the
skeleton and probability within the repair reach (``repair_reach_px``: the bridge length in
pixels plus a margin) below them are final, and the buffer keeps that many rows above the
rows being repaired, so every dead end sees the same pixels as in a whole-scene run.

Approximations of band processing (all local to ``halo_px`` around a seam):

* Hysteresis: a weak (``threshold_low``) pixel counts as road only if its low-threshold
  component reaches a strong pixel *within the buffer*; a weak stretch longer than the
  halo, connected to strong road only on the far side of a seam, may be lost.
* Mask components touching a cut buffer edge are never removed as small.
* Zhang–Suen thinning, the hole filling and the half-width are local, so with a halo wider
  than the widest road the skeleton of the emitted rows equals the whole-scene skeleton.
"""

import logging
from typing import Any

import numpy as np

from roadx.errors import InputError
from roadx.vectorize.geometry import AffineLike, RoadNetwork, network_from_graph
from roadx.vectorize.graph import GraphStitcher, prune
from roadx.vectorize.params import PixelSize, VectorizeParams
from roadx.vectorize.repair import (
    bridge_dead_ends,
    find_dead_ends,
    merge_sorted,
    repair_graph,
    repair_reach_px,
    split_bridges,
)
from roadx.vectorize.skeleton import SkeletonPixels, skeleton_rows
from roadx.vectorize.trace import trace_band

logger = logging.getLogger(__name__)


class BandVectorizer:
    """Vectorise a probability raster delivered as consecutive full-width row bands.

    Memory: ``(band + 2 * halo_px + 2 * reach) x width`` float32 (``reach``: the repair reach
    in pixels, e.g. 103 rows at 0.3 m for the 30 m default bridge length; 0 with bridging
    and snapping off) plus a few bool/int rasters of that size while a band is processed,
    plus the road graph (sparse skeleton pixel paths).

    Args:
        width: scene width in pixels.
        height: scene height in pixels.
        transform: pixel → CRS affine of the scene grid (``affine.Affine``; ``None`` gives
            pixel coordinates).
        crs: CRS of the output layers (anything pyproj/geopandas accepts, or ``None``).
        pixel_size_m: ground pixel size in metres, a number or ``(row_m, col_m)``.
        params: vectorisation parameters.

    Raises:
        roadx.errors.InputError: on a non-positive size or pixel size.

    Example:
        >>> import numpy as np
        >>> prob = np.zeros((120, 80), np.float32); prob[:, 38:43] = 0.9
        >>> vec = BandVectorizer(width=80, height=120, transform=None, crs=None, pixel_size_m=0.5)
        >>> for row in range(0, 120, 50):
        ...     vec.add_rows(row, prob[row : row + 50])
        >>> net = vec.finish()
        >>> len(net.edges), round(net.length_m)
        (1, 60)
    """

    def __init__(
        self,
        *,
        width: int,
        height: int,
        transform: AffineLike | None,
        crs: Any,
        pixel_size_m: float | tuple[float, float],
        params: VectorizeParams = VectorizeParams(),
    ) -> None:
        if width <= 0 or height <= 0:
            raise InputError(f"raster size must be positive, got {height}x{width} px")
        self._width, self._height = int(width), int(height)
        self._transform, self._crs = transform, crs
        self._pixel = PixelSize.parse(pixel_size_m)
        self._params = params
        self._buf = np.empty((0, self._width), dtype=np.float32)
        self._buf_start = 0  # global row of self._buf[0]
        self._next_row = 0  # the row the next band must start at
        self._emitted = 0  # rows [0, _emitted) have a final skeleton
        self._owned = 0  # rows [0, _owned) are traced into the graph
        self._pending = SkeletonPixels.empty()  # skeleton of rows [_owned - 1, _emitted)
        self._stitcher = GraphStitcher(self._pixel)
        self._network: RoadNetwork | None = None
        self._reach = repair_reach_px(params, self._pixel)  # 0: no skeleton repair
        self._repaired = 0  # dead ends of rows [0, _repaired) are snapped/bridged

    def add_rows(self, row_off: int, prob: np.ndarray) -> None:
        """Add the next band of rows.

        Rows skipped between bands (e.g. bands without valid data) are treated as nodata.

        Args:
            row_off: global row of ``prob[0]``; at least the end of the previous band.
            prob: ``(h, W)`` float probability in ``[0, 1]``; NaN = nodata.

        Raises:
            roadx.errors.InputError: on a wrong shape or dtype, a band that overlaps or
                precedes earlier rows, runs past the scene, or comes after :meth:`finish`.
        """
        if self._network is not None:
            raise InputError("add_rows() called after finish(); create a new BandVectorizer")
        prob = _as_probability(prob)
        h = prob.shape[0]
        if prob.shape[1] != self._width:
            raise InputError(
                f"band at row {row_off} is {prob.shape[1]} px wide, expected the scene width "
                f"{self._width}; pass full-width row bands"
            )
        if row_off < self._next_row or row_off + h > self._height:
            raise InputError(
                f"band rows [{row_off}, {row_off + h}) do not follow row {self._next_row} "
                f"inside the {self._height}-row scene; pass consecutive row bands in order"
            )
        if row_off > self._next_row:
            self._fill_nodata(row_off)
        self._append(prob)

    def finish(self) -> RoadNetwork:
        """Close the last band, stitch, prune and georeference the network.

        Rows never delivered are treated as nodata. Calling it twice returns the same result.

        Returns:
            The road network (edges and nodes layers in ``crs``).
        """
        if self._network is not None:
            return self._network
        self._fill_nodata(self._height)
        graph = self._stitcher.graph()
        n_raw = graph.number_of_edges()
        prune(graph, params=self._params)
        repair_graph(graph, params=self._params, pixel=self._pixel)
        split_bridges(graph, self._pixel)
        logger.debug("graph: %d raw edges -> %d after pruning and repair", n_raw,
                     graph.number_of_edges())
        self._network = network_from_graph(
            graph, transform=self._transform, crs=self._crs, pixel=self._pixel,
            simplify_m=self._params.simplify_m,
        )
        return self._network

    def _fill_nodata(self, stop_row: int) -> None:
        step = max(self._params.band_rows, 1)
        while self._next_row < stop_row:
            h = min(step, stop_row - self._next_row)
            self._append(np.full((h, self._width), np.nan, dtype=np.float32))

    def _append(self, prob: np.ndarray) -> None:
        # Only read while processing; what is kept afterwards (the halo) is always a copy.
        self._buf = np.concatenate([self._buf, prob]) if self._buf.size else prob
        self._next_row += prob.shape[0]
        halo = self._params.halo_px
        final = self._next_row == self._height
        emit_end = self._height if final else self._next_row - halo
        if emit_end <= self._emitted:
            if self._buf is prob:  # never keep a reference to the caller's array
                self._buf = prob.copy()
            return
        logger.debug("skeletonising rows [%d, %d)", self._emitted, emit_end)
        new = skeleton_rows(
            self._buf, row_off=self._buf_start, emit=(self._emitted, emit_end),
            scene_shape=(self._height, self._width), params=self._params, pixel=self._pixel,
            pad_px=halo // 2,
        )
        self._pending = SkeletonPixels.concat([self._pending, new])
        self._emitted = emit_end
        own_stop = self._height if final else emit_end - 1  # last row waits for its context
        if self._reach:
            self._repair_skeleton(self._height if final else emit_end - self._reach - 1)
            if not final:  # rows a later repair may still add pixels to wait
                own_stop = min(own_stop, self._repaired - self._reach - 2)
        if own_stop > self._owned:
            band = trace_band(
                self._pending, own_start=self._owned, own_stop=own_stop, width=self._width
            )
            self._stitcher.add(band, self._pending)
            self._owned = own_stop
            self._pending = self._pending.take(self._pending.rows >= own_stop - 1)
        keep_from = emit_end - halo
        if self._reach:
            keep_from = min(keep_from, self._repaired - self._reach)
        keep_from = max(self._buf_start, keep_from)
        self._buf = self._buf[keep_from - self._buf_start :].copy()
        self._buf_start = keep_from

    def _repair_skeleton(self, stop: int) -> None:
        """Snap and bridge the dead ends of rows ``[_repaired, stop)`` (see
        :mod:`~roadx.vectorize.repair`); the skeleton and probability within the repair
        reach of those rows are in ``_pending`` and ``_buf``."""
        if stop <= self._repaired:
            return
        region = (max(self._owned - 1, 0), self._emitted)
        ends = find_dead_ends(
            self._pending, region=region, rows=(self._repaired, stop), width=self._width,
            params=self._params, pixel=self._pixel,
        )
        if ends:
            added = bridge_dead_ends(
                self._pending, ends, prob=self._buf, prob_row_off=self._buf_start,
                scene_shape=(self._height, self._width), params=self._params,
                pixel=self._pixel,
            )
            logger.debug("rows [%d, %d): %d dead ends, %d bridge pixels",
                         self._repaired, stop, len(ends), len(added))
            self._pending = merge_sorted(self._pending, added)
        self._repaired = stop


def vectorize(
    prob: np.ndarray,
    *,
    transform: AffineLike | None,
    crs: Any,
    pixel_size_m: float | tuple[float, float],
    params: VectorizeParams = VectorizeParams(),
) -> RoadNetwork:
    """Vectorise a whole road probability array into a georeferenced line network.

    Threshold with hysteresis, clean the mask, skeletonise, bridge gaps and snap dead ends
    onto nearby roads, trace the pixel graph, prune spurs / short loops / small pieces, merge
    crossings, collapse doubled lines, contract degree-2 nodes, simplify and georeference.

    Args:
        prob: ``(H, W)`` float probability in ``[0, 1]`` (bool masks are accepted); NaN =
            nodata.
        transform: pixel → CRS affine (``affine.Affine``; ``None`` gives pixel coordinates).
        crs: CRS of the output layers (anything pyproj/geopandas accepts, or ``None``).
        pixel_size_m: ground pixel size in metres, a number or ``(row_m, col_m)``.
        params: vectorisation parameters.

    Returns:
        The road network; empty layers (with all columns and the CRS) when there is no road.

    Raises:
        roadx.errors.InputError: when ``prob`` is not a 2-D float/bool array or the pixel
            size is not positive.

    References:
        CRESI (Van Etten, WACV 2020); DeepRoadMapper (Máttyus et al., ICCV 2017) for the
        least-cost gap bridging; pipeline-anchors.md §5.
    """
    prob = _as_probability(prob)
    height, width = prob.shape
    vec = BandVectorizer(
        width=width, height=height, transform=transform, crs=crs, pixel_size_m=pixel_size_m,
        params=params,
    )
    vec.add_rows(0, prob)
    return vec.finish()


def _as_probability(prob: np.ndarray) -> np.ndarray:
    """Validate a probability band and return it as float32."""
    arr = np.asarray(prob)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(
            f"probability must be a non-empty 2-D (rows, cols) array, got shape {arr.shape}"
        )
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise InputError(
        f"probability must be float in [0, 1] (NaN = nodata) or bool, got dtype {arr.dtype}; "
        "divide a 0/255 mask by 255"
    )
