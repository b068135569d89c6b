"""All road-network metrics of a prediction against ground truth in one call.

:func:`compare_networks` nodes both line sets into graphs and computes centreline CCQ, APLS,
junction precision / recall / F1, network summaries and the missed / spurious / matched
lines. Inputs are shapely lines in one metric CRS (metres), already clipped to the area of
interest; reading, reprojection and clipping are the caller's job (``roadx.evaluation``).
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shapely.geometry.base import BaseGeometry

from roadx.metrics.apls import AplsParams, AplsResult, apls
from roadx.metrics.ccq import CcqResult, LineDiff, ccq, diff_lines
from roadx.metrics.graph import (
    NetworkSummary,
    junction_nodes,
    lines_to_graph,
    node_points,
    summarize,
)
from roadx.metrics.junctions import JunctionResult, junction_scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """Parameters of the network metrics (metres).

    Attributes:
        buffer_m: CCQ buffer τ (Wiedemann 1998), metres.
        apls: APLS parameters (control-node step, snap distance, node budget, seed).
        junction_radius_m: matching radius of junctions, metres.
    """

    buffer_m: float = 3.0
    apls: AplsParams = AplsParams()
    junction_radius_m: float = 10.0


@dataclass(frozen=True, slots=True)
class NetworkComparison:
    """Result of :func:`compare_networks`."""

    ccq: CcqResult
    apls: AplsResult
    junctions: JunctionResult
    gt_summary: NetworkSummary
    pred_summary: NetworkSummary
    diff: LineDiff


def compare_networks(
    gt: Iterable[BaseGeometry | None],
    pred: Iterable[BaseGeometry | None],
    params: NetworkParams = NetworkParams(),
    *,
    on_stage: Callable[[str], None] | None = None,
) -> NetworkComparison:
    """Compare predicted road centrelines with ground truth (CCQ, APLS, junctions, diff).

    An empty prediction gives 0 for every score. The cost is dominated by APLS (see
    :func:`roadx.metrics.apls.apls`): seconds for a 2 km x 2 km city network.

    Args:
        gt: ground-truth (Multi)LineStrings in a metric CRS (metres).
        pred: predicted (Multi)LineStrings, same CRS.
        params: see :class:`NetworkParams`.
        on_stage: called with the name of each stage as it starts ("graphs", "ccq", "apls",
            "junctions").

    Returns:
        :class:`NetworkComparison`.

    Raises:
        InputError: invalid parameters (non-positive buffer, step or radius).

    Example:
        >>> from shapely.geometry import LineString
        >>> roads = [LineString([(0, 0), (200, 0)]), LineString([(100, 0), (100, 100)])]
        >>> r = compare_networks(roads, roads)
        >>> r.ccq.quality, r.apls.apls, r.junctions.f1
        (1.0, 1.0, 1.0)
    """
    report = on_stage or (lambda name: None)
    gt_lines, pred_lines = list(gt), list(pred)
    report("graphs")
    g_gt, g_pred = lines_to_graph(gt_lines), lines_to_graph(pred_lines)
    report("ccq")
    ccq_result = ccq(gt_lines, pred_lines, buffer_m=params.buffer_m)
    diff = diff_lines(gt_lines, pred_lines, buffer_m=params.buffer_m)
    report("apls")
    apls_result = apls(g_gt, g_pred, params.apls)
    report("junctions")
    junctions = junction_scores(
        node_points(g_gt, junction_nodes(g_gt)),
        node_points(g_pred, junction_nodes(g_pred)),
        radius_m=params.junction_radius_m,
    )
    logger.info(
        "CCQ quality %.3f, APLS %.3f, junction F1 %.3f",
        ccq_result.quality, apls_result.apls, junctions.f1,
    )
    return NetworkComparison(
        ccq=ccq_result,
        apls=apls_result,
        junctions=junctions,
        gt_summary=summarize(g_gt),
        pred_summary=summarize(g_pred),
        diff=diff,
    )
