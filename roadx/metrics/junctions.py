"""Junction precision / recall / F1: one-to-one matching of road junctions within a radius.

Junctions are graph nodes of degree >= 3 (:func:`roadx.metrics.graph.junction_nodes`). Pairs
of a predicted and a true junction closer than ``radius_m`` are matched greedily, nearest
pair first, each junction at most once; precision = matched / predicted junctions, recall =
matched / true junctions. This is the position-only variant of the junction metric of the
RoadTracer / Sat2Graph line of work (no comparison of incident edge directions).
"""

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from roadx.errors import InputError


@dataclass(frozen=True, slots=True)
class JunctionResult:
    """Junction matching scores (0.0 when undefined, e.g. no predicted junction)."""

    precision: float
    recall: float
    f1: float
    n_gt: int
    n_pred: int
    n_matched: int
    radius_m: float

    def to_dict(self) -> dict[str, float | int]:
        """As a JSON-able dict."""
        return asdict(self)


def match_points(a: np.ndarray, b: np.ndarray, radius_m: float) -> list[tuple[int, int]]:
    """Match points of ``a`` to points of ``b`` one-to-one, nearest pairs first.

    Args:
        a: (N, 2) float64 coordinates in metres.
        b: (M, 2) float64 coordinates in metres.
        radius_m: largest matching distance, metres (inclusive).

    Returns:
        Pairs (i, j) of matched rows of ``a`` and ``b``, in order of increasing distance.

    Example:
        >>> match_points(np.array([[0.0, 0], [10, 0]]), np.array([[1.0, 0], [4, 0]]), 5)
        [(0, 0)]
    """
    if len(a) == 0 or len(b) == 0:
        return []
    dist = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius_m, output_type="ndarray")
    order = np.lexsort((dist["j"], dist["i"], dist["v"]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        i, j = int(dist["i"][k]), int(dist["j"][k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def junction_scores(
    gt_xy: np.ndarray, pred_xy: np.ndarray, *, radius_m: float = 10.0
) -> JunctionResult:
    """Score predicted junctions against true junctions within ``radius_m``.

    Args:
        gt_xy: (N, 2) float64 true junction coordinates, metric CRS (metres).
        pred_xy: (M, 2) float64 predicted junction coordinates, same CRS.
        radius_m: matching radius in metres (default 10 m).

    Returns:
        :class:`JunctionResult`.

    Raises:
        InputError: ``radius_m`` <= 0.

    References:
        F. Bastani et al., "RoadTracer", CVPR 2018 (junction metric); S. He et al.,
        "Sat2Graph", ECCV 2020.

    Example:
        >>> gt = np.array([[0.0, 0], [100, 0]]); pred = np.array([[3.0, 4], [300, 0]])
        >>> r = junction_scores(gt, pred)
        >>> r.precision, r.recall, r.f1
        (0.5, 0.5, 0.5)
    """
    if radius_m <= 0:
        raise InputError(f"junction radius is {radius_m} m; expected a radius > 0 m.")
    gt_xy = np.asarray(gt_xy, dtype=float).reshape(-1, 2)
    pred_xy = np.asarray(pred_xy, dtype=float).reshape(-1, 2)
    n_match = len(match_points(gt_xy, pred_xy, radius_m))
    p = n_match / len(pred_xy) if len(pred_xy) else 0.0
    r = n_match / len(gt_xy) if len(gt_xy) else 0.0
    return JunctionResult(
        precision=p,
        recall=r,
        f1=2 * p * r / (p + r) if p + r > 0 else 0.0,
        n_gt=len(gt_xy),
        n_pred=len(pred_xy),
        n_matched=n_match,
        radius_m=radius_m,
    )
