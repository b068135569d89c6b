"""Road probability → clean binary road mask (hysteresis, closing, small objects, holes).

Step 1–2 of the recipe in ``../shared/specs/pipeline-anchors.md`` §5: binarise for topology
(hysteresis low/high rather than one threshold), then clean: a light closing, removal of
small components and filling of small holes (holes would become spurious loops in the
skeleton). Areas are given in m² and converted with the pixel size.

Band processing: the mask is computed on a band of rows plus a halo. Components that touch
a cut (non-scene) edge of the band are never removed as "small" because their true size is
unknown there; components are evaluated within the band only (see
:class:`~roadx.vectorize.BandVectorizer` for what this means for hysteresis).
"""

import numpy as np
from scipy import ndimage as ndi

from roadx.vectorize.params import PixelSize, VectorizeParams

_EIGHT = np.ones((3, 3), dtype=bool)


def road_mask(
    prob: np.ndarray,
    *,
    params: VectorizeParams,
    pixel: PixelSize,
    cut_top: bool = False,
    cut_bottom: bool = False,
) -> np.ndarray:
    """Binarise and clean a road probability array.

    Args:
        prob: ``(H, W)`` float probability in ``[0, 1]``; NaN = nodata (background).
        params: thresholds and clean-up sizes (metres).
        pixel: ground pixel size in metres.
        cut_top: the first row is not the scene's first row (a band cut); components
            touching it are kept whatever their size.
        cut_bottom: likewise for the last row.

    Returns:
        ``(H, W)`` bool road mask.

    References:
        CRESI ``04_skeletonize`` (threshold, remove small objects, fill small holes);
        pipeline-anchors.md §5 items 1–2.
    """
    mask = hysteresis(prob, low=params.threshold_low, high=params.threshold)
    if not mask.any():
        return mask
    radius_px = int(round(params.closing_m / pixel.gsd_m))
    if radius_px >= 1:
        mask = _close(mask, radius_px)
    min_px = params.min_area_m2 / pixel.area_m2
    if min_px > 1:
        mask = _remove_small_objects(mask, min_px, cut_top=cut_top, cut_bottom=cut_bottom)
    max_hole_px = params.max_hole_m2 / pixel.area_m2
    if max_hole_px >= 1:
        mask = _fill_small_holes(mask, max_hole_px)
    return mask


def hysteresis(prob: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Hysteresis threshold: ``p > low`` pixels 4-connected to at least one ``p > high``.

    Same result as ``skimage.filters.apply_hysteresis_threshold`` (same connectivity and
    strict comparisons) but about 3x faster: one label pass and a lookup table instead of
    a per-label sum. NaN (nodata) compares false, i.e. background.

    Args:
        prob: ``(H, W)`` float probability; NaN = nodata.
        low: low threshold.
        high: high threshold (>= ``low``).

    Returns:
        ``(H, W)`` bool mask.

    Example:
        >>> hysteresis(np.array([[0.9, 0.4, 0.1, 0.4]]), low=0.3, high=0.5).tolist()
        [[True, True, False, False]]
    """
    with np.errstate(invalid="ignore"):
        weak, strong = prob > low, prob > high
    labels, n = ndi.label(weak)
    reached = np.zeros(n + 1, dtype=bool)
    reached[labels[strong]] = True
    reached[0] = False
    return reached[labels]


def _close(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary closing with a ``(2r+1)`` square, as separable shifted ORs then ANDs.

    Outside the array counts as background for the dilation and as road for the erosion,
    so the scene border is never eroded.
    """
    grown = mask.copy()
    for s in range(1, radius_px + 1):  # dilate rows, then columns
        grown[s:] |= mask[:-s]
        grown[:-s] |= mask[s:]
    rows_grown = grown.copy()
    for s in range(1, radius_px + 1):
        grown[:, s:] |= rows_grown[:, :-s]
        grown[:, :-s] |= rows_grown[:, s:]
    shrunk = grown.copy()
    for s in range(1, radius_px + 1):  # erode rows, then columns
        shrunk[s:] &= grown[:-s]
        shrunk[:-s] &= grown[s:]
    rows_shrunk = shrunk.copy()
    for s in range(1, radius_px + 1):
        shrunk[:, s:] &= rows_shrunk[:, :-s]
        shrunk[:, :-s] &= rows_shrunk[:, s:]
    return shrunk | mask


def _remove_small_objects(
    mask: np.ndarray, min_px: float, *, cut_top: bool, cut_bottom: bool
) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_px`` pixels (cut ones are kept)."""
    labels, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    if cut_top:
        keep[labels[0]] = True
    if cut_bottom:
        keep[labels[-1]] = True
    keep[0] = False
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    """Fill 4-connected background components of at most ``max_hole_px`` pixels.

    Background touching the array border is never a hole.
    """
    labels, n = ndi.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    hole = sizes <= max_hole_px
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        hole[edge] = False
    hole[0] = False
    return mask | hole[labels]
