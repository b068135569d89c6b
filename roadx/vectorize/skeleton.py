"""Mask → one-pixel-wide skeleton, kept as a sparse list of pixels with samples.

The skeleton is never stored as a raster beyond one band: :func:`skeleton_rows` thins the
mask of a band (plus halo) and returns only the skeleton pixels of the rows the band emits,
as :class:`SkeletonPixels` (global row/col, probability, distance to the road edge and a
"cut end" flag). Downstream everything (graph tracing, stitching, pruning, geometry) works
on these sparse pixel lists and on the pixel paths cut from them.

Scene edges are mirrored (``symmetric`` padding) before thinning, so a road that leaves the
scene is skeletonised right up to the edge instead of stopping half a road-width short.
The distance to the road edge (half-width) is computed exactly, but only at skeleton pixels,
with a k-d tree of the background pixels that touch the mask; a full Euclidean distance
transform of the band costs several times more.

References:
    Zhang & Suen, "A fast parallel algorithm for thinning digital patterns", CACM 1984
    (``skimage.morphology.skeletonize``); pipeline-anchors.md §5 items 3 and 10.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from roadx.vectorize.mask import road_mask
from roadx.vectorize.params import PixelSize, VectorizeParams


@dataclass(frozen=True, slots=True)
class SkeletonPixels:
    """A list of skeleton pixels (or one ordered pixel path) with per-pixel samples.

    Attributes:
        rows: ``(N,)`` int64 global row of each pixel (scene pixel grid).
        cols: ``(N,)`` int64 global column.
        prob: ``(N,)`` float32 road probability at the pixel (nodata read as 0).
        edge_m: ``(N,)`` float32 distance in metres from the pixel centre to the nearest
            non-road pixel centre (about half the road width plus half a pixel).
        cut: ``(N,)`` bool, the pixel lies within ``edge_m + boundary_px`` of the scene edge
            or of nodata, so a road ending there was cut, not a spur.
        bridged: ``(N,)`` bool, the pixel was added by gap bridging or junction snapping
            (:mod:`~roadx.vectorize.repair`), not found by thresholding.
    """

    rows: np.ndarray
    cols: np.ndarray
    prob: np.ndarray
    edge_m: np.ndarray
    cut: np.ndarray
    bridged: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def empty(cls) -> "SkeletonPixels":
        """A list with no pixels."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float32)
        return cls(i, i.copy(), f, f.copy(), np.empty(0, bool), np.empty(0, bool))

    def take(self, index: np.ndarray) -> "SkeletonPixels":
        """Return the pixels at ``index`` (int array or bool mask), in that order."""
        return SkeletonPixels(
            self.rows[index], self.cols[index], self.prob[index], self.edge_m[index],
            self.cut[index], self.bridged[index],
        )

    @classmethod
    def concat(cls, parts: list["SkeletonPixels"]) -> "SkeletonPixels":
        """Concatenate pixel lists (or path pieces) in order."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.prob for p in parts]),
            np.concatenate([p.edge_m for p in parts]),
            np.concatenate([p.cut for p in parts]),
            np.concatenate([p.bridged for p in parts]),
        )

    def reversed(self) -> "SkeletonPixels":
        """The same path walked backwards."""
        return self.take(np.arange(len(self) - 1, -1, -1))


def skeleton_rows(
    prob: np.ndarray,
    *,
    row_off: int,
    emit: tuple[int, int],
    scene_shape: tuple[int, int],
    params: VectorizeParams,
    pixel: PixelSize,
    pad_px: int,
) -> SkeletonPixels:
    """Skeletonise a band of rows and return the skeleton pixels of the emitted rows.

    Args:
        prob: ``(h, W)`` float32 probability in ``[0, 1]`` of scene rows
            ``[row_off, row_off + h)``, full width; NaN = nodata.
        row_off: global row of ``prob[0]``.
        emit: ``(start, stop)`` global rows whose skeleton pixels are returned; should lie
            at least the halo away from any edge of ``prob`` that is not a scene edge.
        scene_shape: ``(H, W)`` of the whole scene in pixels.
        params: vectorisation parameters.
        pixel: ground pixel size in metres.
        pad_px: rows/columns mirrored beyond each scene edge before thinning.

    Returns:
        The skeleton pixels of rows ``emit``, sorted by (row, col).
    """
    height, width = scene_shape
    h = prob.shape[0]
    at_top, at_bottom = row_off == 0, row_off + h == height
    mask = road_mask(
        prob, params=params, pixel=pixel, cut_top=not at_top, cut_bottom=not at_bottom
    )
    r0, r1 = emit[0] - row_off, emit[1] - row_off
    if not mask[max(r0 - 2, 0) : r1 + 2].any():
        return SkeletonPixels.empty()
    top, bottom = (pad_px if at_top else 0), (pad_px if at_bottom else 0)
    padded = np.pad(mask, ((top, bottom), (pad_px, pad_px)), mode="symmetric")
    skel = skeletonize(padded)[top + r0 : top + r1, pad_px : pad_px + width]
    rr, cc = np.nonzero(skel)
    if rr.size == 0:
        return SkeletonPixels.empty()
    rows, cols = rr.astype(np.int64) + emit[0], cc.astype(np.int64)
    local = rr + r0
    edge_m = _distance_to_background(padded, rr + r0 + top, cc + pad_px, pixel)
    p = prob[local, cc]
    p = np.where(np.isnan(p), np.float32(0.0), p).astype(np.float32)
    tol_m = edge_m + params.boundary_px * pixel.gsd_m
    to_edge_m = np.minimum(
        np.minimum(rows, height - 1 - rows) * pixel.row_m,
        np.minimum(cols, width - 1 - cols) * pixel.col_m,
    )
    cut = to_edge_m <= tol_m
    nodata = np.isnan(prob)
    if nodata.any():
        cut |= _distance_to_background(~nodata, local, cc, pixel) <= tol_m
    return SkeletonPixels(
        rows, cols, p, edge_m.astype(np.float32), cut, np.zeros(rows.shape[0], dtype=bool)
    )


def _distance_to_background(
    fg: np.ndarray, rows: np.ndarray, cols: np.ndarray, pixel: PixelSize
) -> np.ndarray:
    """Euclidean distance in metres from each query pixel to the nearest ``False`` pixel.

    Only background pixels that touch the foreground can be nearest, so the k-d tree holds
    just those. Outside the array counts as background one pixel beyond the border, so the
    distance is always finite.

    Args:
        fg: ``(h, w)`` bool foreground.
        rows: ``(N,)`` query rows (array coordinates of ``fg``).
        cols: ``(N,)`` query columns.
        pixel: ground pixel size in metres.

    Returns:
        ``(N,)`` float64 distances in metres.
    """
    grown = fg.copy()
    grown[1:] |= fg[:-1]
    grown[:-1] |= fg[1:]
    rim = grown.copy()
    rim[:, 1:] |= grown[:, :-1]
    rim[:, :-1] |= grown[:, 1:]
    rim &= ~fg  # background pixels with a road pixel among their 8 neighbours
    h, w = fg.shape
    border_m = np.minimum(
        np.minimum(rows + 1, h - rows) * pixel.row_m, np.minimum(cols + 1, w - cols) * pixel.col_m
    )
    br, bc = np.nonzero(rim)
    if br.size == 0:
        return border_m.astype(np.float64)
    tree = cKDTree(
        np.column_stack([br * pixel.row_m, bc * pixel.col_m]),
        balanced_tree=False,
        compact_nodes=False,
    )
    dist, _ = tree.query(np.column_stack([rows * pixel.row_m, cols * pixel.col_m]))
    return np.minimum(np.asarray(dist, dtype=np.float64), border_m)
