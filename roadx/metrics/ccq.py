"""Centreline completeness / correctness / quality (CCQ) and the missed / spurious diff lines.

A ground-truth centreline counts as found where it lies within ``buffer_m`` of the predicted
centrelines, and a predicted one counts as correct where it lies within ``buffer_m`` of the
ground truth (Wiedemann et al. 1998). All lengths are measured on the union of the lines, so
duplicated or overlapping lines are not counted twice. Coordinates must be metric (metres).
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import shapely
from shapely.geometry.base import BaseGeometry

from roadx.errors import InputError
from roadx.metrics.graph import explode_lines


@dataclass(frozen=True, slots=True)
class CcqResult:
    """Completeness, correctness, quality (and F1 of the first two) with the lengths behind them.

    Attributes:
        completeness: matched GT length / GT length (a recall).
        correctness: matched prediction length / prediction length (a precision).
        quality: matched prediction length / (prediction length + unmatched GT length).
        f1: harmonic mean of completeness and correctness.
        gt_length_m, gt_matched_m, pred_length_m, pred_matched_m: lengths in metres.
        buffer_m: the buffer width τ used, metres.
    """

    completeness: float
    correctness: float
    quality: float
    f1: float
    gt_length_m: float
    gt_matched_m: float
    pred_length_m: float
    pred_matched_m: float
    buffer_m: float

    def to_dict(self) -> dict[str, float]:
        """As a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LineDiff:
    """Where prediction and ground truth agree and disagree, as lines in the metric CRS.

    Attributes:
        missed: GT centrelines farther than the buffer from any prediction (false negatives).
        spurious: predicted centrelines farther than the buffer from any GT (false positives).
        matched: GT centrelines covered by the prediction (true positives, GT geometry).
    """

    missed: list[BaseGeometry]
    spurious: list[BaseGeometry]
    matched: list[BaseGeometry]


def _union(geoms: Iterable[BaseGeometry | None]) -> BaseGeometry:
    lines = explode_lines(geoms)
    if not lines:
        return shapely.MultiLineString([])
    return shapely.unary_union(lines)


def _check_buffer(buffer_m: float) -> None:
    if buffer_m <= 0:
        raise InputError(f"CCQ buffer is {buffer_m} m; expected a width > 0 m (default 3 m).")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def ccq(
    gt: Iterable[BaseGeometry | None], pred: Iterable[BaseGeometry | None], *, buffer_m: float = 3.0
) -> CcqResult:
    """Compute centreline completeness, correctness and quality within a buffer.

    A prediction shifted sideways by less than ``buffer_m`` keeps all three at 1; an empty
    prediction scores 0 on all three. Cost: two buffers and two intersections of the unions.

    Args:
        gt: ground-truth (Multi)LineStrings, metric CRS.
        pred: predicted (Multi)LineStrings, same CRS.
        buffer_m: buffer width τ in metres (default 3 m).

    Returns:
        :class:`CcqResult`.

    Raises:
        InputError: ``buffer_m`` <= 0.

    References:
        C. Wiedemann, C. Heipke, H. Mayer, O. Jamet, "Empirical evaluation of automatically
        extracted road axes", in Empirical Evaluation Techniques in Computer Vision, IEEE CS
        Press, 1998, pp. 172-187.

    Example:
        >>> from shapely.geometry import LineString
        >>> r = ccq([LineString([(0, 0), (100, 0)])], [LineString([(0, 0), (50, 0)])])
        >>> r.completeness, r.correctness, r.quality
        (0.53, 1.0, 0.5154639175257731)
    """
    _check_buffer(buffer_m)
    g, p = _union(gt), _union(pred)
    g_len, p_len = float(g.length), float(p.length)
    g_hit = float(g.intersection(p.buffer(buffer_m)).length) if p_len > 0 else 0.0
    p_hit = float(p.intersection(g.buffer(buffer_m)).length) if g_len > 0 else 0.0
    comp, corr = _ratio(g_hit, g_len), _ratio(p_hit, p_len)
    return CcqResult(
        completeness=comp,
        correctness=corr,
        quality=_ratio(p_hit, p_len + g_len - g_hit),
        f1=_ratio(2 * comp * corr, comp + corr),
        gt_length_m=g_len,
        gt_matched_m=g_hit,
        pred_length_m=p_len,
        pred_matched_m=p_hit,
        buffer_m=buffer_m,
    )


def diff_lines(
    gt: Iterable[BaseGeometry | None], pred: Iterable[BaseGeometry | None], *, buffer_m: float = 3.0
) -> LineDiff:
    """Split GT and prediction into missed, spurious and matched lines (for QGIS layers).

    Args:
        gt: ground-truth (Multi)LineStrings, metric CRS.
        pred: predicted (Multi)LineStrings, same CRS.
        buffer_m: buffer width τ in metres, as in :func:`ccq`.

    Returns:
        :class:`LineDiff` of single LineStrings (the lengths of ``missed`` + ``matched`` add up
        to the GT length).

    Raises:
        InputError: ``buffer_m`` <= 0.
    """
    _check_buffer(buffer_m)
    g, p = _union(gt), _union(pred)
    p_buf = p.buffer(buffer_m) if not p.is_empty else shapely.Polygon()
    g_buf = g.buffer(buffer_m) if not g.is_empty else shapely.Polygon()
    return LineDiff(
        missed=explode_lines([g.difference(p_buf)]),
        spurious=explode_lines([p.difference(g_buf)]),
        matched=explode_lines([g.intersection(p_buf)]),
    )
