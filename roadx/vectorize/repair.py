"""Network repair: gap bridging and T-junction snapping on the skeleton, junction merging and
duplicate collapsing on the graph.

Occlusions (trees, shadows, cars) cut a road's probability below the threshold for a few
metres; every such gap splits the network, and a road stopping just short of another one
misses its T-junction. Both are repaired on the *skeleton pixels*, before tracing, so the
bridged pixels become part of the pixel graph and every later step (seams, pruning,
contraction, geometry) treats them like any other road pixel, flagged ``bridged``:

1. **Dead ends** (:func:`find_dead_ends`): the skeleton of a region is traced and
   spur-pruned on its own (as :func:`~roadx.vectorize.graph.prune` would); degree-1 nodes
   that are not cut ends are dead ends, also those of small fragments (a stretch of road
   between two gaps). A fragment shorter than ``min_component_m`` that ends up bridged at
   one end only is pruned with its bridge, as it would have been without repair. The direction of travel is the chord over the last
   ``min(10 m, branch)`` of the branch. Pruning first matters: the blunt end of a road
   skeletonises into a small fork whose prongs are spurs; the dead end is the fork's root.
2. **Snapping** (``snap_m``): a dead end with another road within ``snap_m`` ahead of it
   (within 60° of its direction; the distance counted from the end of the road surface, i.e.
   plus twice the road's half-width from its centreline) is joined to the nearest such road
   pixel, whatever the probability: a T-junction.
3. **Bridging** (``bridge_m``): otherwise the least-cost path (``skimage.graph.MCP_Geometric``,
   4-connected, step cost ``-log p``) runs from the dead end to the first road pixel reached
   inside a cone of half-angle ``bridge_angle_deg`` around its direction, at most ``bridge_m``
   away; it is accepted when the geometric-mean probability along its gap (the pixels at or
   below ``threshold_low``, i.e. outside the road mask) reaches ``bridge_min_prob``
   (DeepRoadMapper's least-cost gap search; SAM-Road++'s probability sampling along a
   candidate edge).

Which road pixels may be joined: pixels of the dead end's *own* road (pixel-graph geodesic
distance at most ``3x`` the straight distance, e.g. the branch it ends and the spurs near it)
are never targets and cannot be crossed; all other road pixels (including earlier bridges) are
targets. The path is 4-connected and stops at the first pixel 8-adjacent to a target, so it
can never cross another road: it joins the first road it meets. Dead ends are processed one at
a time in (row, col) order, and a dead end that an earlier bridge already reached is skipped,
so each gap is bridged once and the result does not depend on how the raster was cut into row
bands (each dead end sees the same pixels within its reach either way).

On the merged graph, after pruning:

4. **Junction merging** (``merge_junctions_m``): two junctions joined by an edge shorter than
   ``merge_junctions_m``, or than 1.5 times its own width, merge into one node (a crossing
   skeletonises into two degree-3 nodes joined by a link about ``w / tan(θ / 2)`` long).
5. **Duplicate collapsing** (``duplicate_m``): two edges between the same two nodes that stay
   within ``duplicate_m`` of each other (Hausdorff distance) are one road drawn twice, e.g. the
   two carriageways around a median; they are replaced by their mean centreline.

References:
    Máttyus, Luo & Urtasun, "DeepRoadMapper", ICCV 2017 (least-cost gap bridging);
    Van Etten, "City-scale road extraction from satellite imagery v2", WACV 2020 (CRESI);
    Hetang et al., "Segment Anything Model for Road Network Graph Extraction", CVPRW 2024
    (SAM-Road; candidate edges scored by probability sampled along them);
    pipeline-anchors.md §4–§5.
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from skimage.graph import MCP_Geometric

from roadx.vectorize.geometry import path_lengths_m
from roadx.vectorize.graph import GraphStitcher, contract, prune
from roadx.vectorize.params import PixelSize, VectorizeParams
from roadx.vectorize.skeleton import SkeletonPixels
from roadx.vectorize.trace import pixel_pairs, trace_band

# A road pixel belongs to the dead end's own road when its pixel-graph distance from the
# dead end is at most this many times the straight distance.
GEODESIC_FACTOR = 3.0
# Length of branch (metres) over which a dead end's direction of travel is measured.
DIRECTION_M = 10.0
# A link between two junctions shorter than this many times its width is a crossing.
CROSSING_WIDTHS = 1.5
# Half-angle (degrees) of the cone ahead of a dead end in which it snaps to a road.
SNAP_ANGLE_DEG = 60.0
_EIGHT = np.ones((3, 3), dtype=bool)
# Lowest probability used in -log p (keeps the path cost finite on p = 0 pixels).
_P_FLOOR = 1e-3


@dataclass(frozen=True, slots=True)
class DeadEnd:
    """A dead end of the skeleton: where a road stops without reaching another one.

    Attributes:
        row: global pixel row of the end pixel.
        col: global pixel column.
        direction_m: ``(d_row, d_col)`` unit vector of the direction of travel out of the
            end, in metric pixel space (rows scaled by the row size in metres).
        edge_m: half-width of the road near the end, metres (as
            :attr:`SkeletonPixels.edge_m`).
    """

    row: int
    col: int
    direction_m: tuple[float, float]
    edge_m: float


def skeleton_repair_on(params: VectorizeParams) -> bool:
    """True when bridging or snapping is on (the skeleton-level repairs)."""
    return params.bridge_m > 0 or params.snap_m > 0


def repair_reach_px(params: VectorizeParams, pixel: PixelSize) -> int:
    """Rows of skeleton and probability a dead end's repair reads above and below it.

    Bridging, snapping, the spur pruning that finds dead ends and the direction estimate
    all look at most this far from a dead end; a band vectoriser keeps this many rows of context
    (0 when bridging and snapping are off).
    """
    if not skeleton_repair_on(params):
        return 0
    reach_m = max(params.bridge_m, params.snap_m, params.min_spur_m, DIRECTION_M)
    return math.ceil(reach_m / min(pixel.row_m, pixel.col_m)) + 3


def find_dead_ends(
    px: SkeletonPixels,
    *,
    region: tuple[int, int],
    rows: tuple[int, int],
    width: int,
    params: VectorizeParams,
    pixel: PixelSize,
) -> list[DeadEnd]:
    """Find the dead ends of a skeleton region whose end pixel lies in ``rows``.

    Args:
        px: skeleton pixels of global rows ``region``, sorted by (row, col); pixels added by
            earlier repairs (``bridged``) are ignored, so the result depends on the
            thresholded skeleton only.
        region: ``(start, stop)`` global rows ``px`` covers; a road crossing the first or last
            row continues beyond it, so ends there are treated as cut ends.
        rows: ``(start, stop)`` global rows of the dead ends to return; should lie at least
            :func:`repair_reach_px` inside ``region`` unless ``region`` meets the scene edge.
        width: scene width in pixels.
        params: the pruning parameters (``min_spur_m``, ``min_loop_m``, ``min_edge_prob``):
            the end of a spur that pruning removes is not a dead end. Small fragments are
            kept here: a stretch of road between two gaps must be bridged at both ends
            (a fragment bridged at one end only is pruned later, see
            :func:`~roadx.vectorize.graph.prune`).
        pixel: ground pixel size in metres.

    Returns:
        Dead ends sorted by (row, col).
    """
    raw = px.take(~px.bridged)
    if len(raw) == 0:
        return []
    top, bottom = region
    at_border = (raw.rows == top) | (raw.rows == bottom - 1)
    raw = dataclasses.replace(raw, cut=raw.cut | at_border)
    band = trace_band(raw, own_start=top, own_stop=bottom, width=width)
    stitcher = GraphStitcher(pixel)
    stitcher.add(band, raw)
    graph = stitcher.graph()
    prune(graph, params=dataclasses.replace(params, min_component_m=0.0))
    ends: list[DeadEnd] = []
    for node in graph.nodes:
        if graph.degree(node) != 1 or graph.nodes[node]["cut"]:
            continue
        ((_, _, data),) = graph.edges(node, data=True)
        path = data["path"] if data["start"] == node else data["path"].reversed()
        row, col = int(path.rows[0]), int(path.cols[0])
        if not rows[0] <= row < rows[1]:
            continue
        direction, reach = _direction(path, pixel)
        if direction is None:
            continue
        edge_m = float(np.median(path.edge_m[: reach + 1]))
        ends.append(DeadEnd(row, col, direction, edge_m))
    ends.sort(key=lambda e: (e.row, e.col))
    return ends


def _direction(
    path: SkeletonPixels, pixel: PixelSize
) -> tuple[tuple[float, float] | None, int]:
    """Unit direction out of ``path[0]`` (chord over the first ``DIRECTION_M``), and the
    index of the chord's far point."""
    pts = _metric_points(path, pixel)
    step = np.hypot(*np.diff(pts, axis=0).T)
    run = np.concatenate([[0.0], np.cumsum(step)])
    k = int(min(np.searchsorted(run, DIRECTION_M), len(pts) - 1))
    vec = pts[0] - pts[k]
    norm = float(np.hypot(*vec))
    if norm == 0:
        return None, k
    return (float(vec[0] / norm), float(vec[1] / norm)), k


def bridge_dead_ends(
    px: SkeletonPixels,
    dead_ends: list[DeadEnd],
    *,
    prob: np.ndarray,
    prob_row_off: int,
    scene_shape: tuple[int, int],
    params: VectorizeParams,
    pixel: PixelSize,
) -> SkeletonPixels:
    """Snap and bridge dead ends; return the new skeleton pixels (``bridged`` set).

    Args:
        px: skeleton pixels around the dead ends, sorted by (row, col) (at least the rows
            within :func:`repair_reach_px` of every dead end that lie in the scene).
        dead_ends: from :func:`find_dead_ends`, in (row, col) order.
        prob: ``(h, W)`` float32 road probability of global rows ``prob_row_off ..``, full
            width; NaN = nodata (never crossed). Must cover the reach of every dead end.
        prob_row_off: global row of ``prob[0]``.
        scene_shape: ``(H, W)`` of the scene in pixels.
        params: ``snap_m``, ``bridge_m``, ``bridge_min_prob``, ``bridge_angle_deg``.
        pixel: ground pixel size in metres.

    Returns:
        The added pixels, sorted by (row, col); never a pixel of ``px``.
    """
    height, width = scene_shape
    reach = repair_reach_px(params, pixel)
    added: list[SkeletonPixels] = []
    spans: list[tuple[int, int]] = []  # (first row, last row) of each added path
    added_keys: set[int] = set()
    for end in dead_ends:
        # an earlier bridge already ends at this road end (within its half-width)
        near = max(1, math.ceil(end.edge_m / min(pixel.row_m, pixel.col_m)))
        if added_keys and any(
            (end.row + dr) * width + end.col + dc in added_keys
            for dr in range(-near, near + 1) for dc in range(-near, near + 1)
        ):
            continue
        r0 = max(end.row - reach, prob_row_off, 0)
        r1 = min(end.row + reach + 1, prob_row_off + prob.shape[0], height)
        c0, c1 = max(end.col - reach, 0), min(end.col + reach + 1, width)
        local = _pixels_in(px, added, spans, r0, r1, c0, c1)
        patch = prob[r0 - prob_row_off : r1 - prob_row_off, c0:c1]
        path = _repair_path(end, local, patch, (r0, c0), params, pixel)
        if path is None:
            continue
        rows, cols = path[:, 0] + r0, path[:, 1] + c0
        p = patch[path[:, 0], path[:, 1]]
        new = SkeletonPixels(
            rows.astype(np.int64), cols.astype(np.int64),
            np.where(np.isnan(p), 0.0, p).astype(np.float32),
            np.full(rows.size, end.edge_m, np.float32), np.zeros(rows.size, bool),
            np.ones(rows.size, bool),
        )
        added.append(new)
        spans.append((int(rows.min()), int(rows.max())) if rows.size else (0, -1))
        added_keys.update((rows * width + cols).tolist())
    if not added:
        return SkeletonPixels.empty()
    out = SkeletonPixels.concat(added)
    return out.take(np.lexsort((out.cols, out.rows)))


def merge_sorted(a: SkeletonPixels, b: SkeletonPixels) -> SkeletonPixels:
    """Merge two disjoint pixel lists sorted by (row, col) into one sorted list."""
    if len(b) == 0:
        return a
    both = SkeletonPixels.concat([a, b])
    return both.take(np.lexsort((both.cols, both.rows)))


def _pixels_in(
    px: SkeletonPixels, added: list[SkeletonPixels], spans: list[tuple[int, int]],
    r0: int, r1: int, c0: int, c1: int,
) -> SkeletonPixels:
    """Skeleton pixels (``px`` and ``added``, whose row spans are ``spans``) inside rows
    ``[r0, r1)`` and cols ``[c0, c1)``."""
    lo, hi = np.searchsorted(px.rows, [r0, r1])
    parts = [px.take(np.arange(lo, hi))]
    parts += [a for a, (first, last) in zip(added, spans, strict=True)
              if first < r1 and last >= r0]
    both = SkeletonPixels.concat(parts)
    inside = (both.rows >= r0) & (both.rows < r1) & (both.cols >= c0) & (both.cols < c1)
    return both.take(inside)


def _repair_path(
    end: DeadEnd,
    local: SkeletonPixels,
    patch: np.ndarray,
    origin: tuple[int, int],
    params: VectorizeParams,
    pixel: PixelSize,
) -> np.ndarray | None:
    """The snap or bridge path of one dead end in patch coordinates (without the dead-end
    pixel, ending next to a target road pixel), or None."""
    h, w = patch.shape
    r0, c0 = origin
    lr, lc = local.rows - r0, local.cols - c0
    order = np.lexsort((lc, lr))
    lr, lc = lr[order], lc[order]
    start = np.nonzero((lr == end.row - r0) & (lc == end.col - c0))[0]
    if start.size == 0:
        return None
    sr, sc = int(lr[start[0]]), int(lc[start[0]])

    # Own road: pixel-graph distance <= GEODESIC_FACTOR x straight distance.
    i, j = pixel_pairs(lr, lc, w)
    step_m = np.hypot((lr[i] - lr[j]) * pixel.row_m, (lc[i] - lc[j]) * pixel.col_m)
    graph = sparse.coo_matrix((step_m, (i, j)), shape=(lr.size, lr.size)).tocsr()
    straight_m = np.hypot((lr - sr) * pixel.row_m, (lc - sc) * pixel.col_m)
    geodesic_m = csgraph.dijkstra(
        graph, directed=False, indices=int(start[0]),
        limit=GEODESIC_FACTOR * float(straight_m.max()) + 2 * pixel.gsd_m,
    )
    own = geodesic_m <= GEODESIC_FACTOR * straight_m + 1.5 * pixel.gsd_m
    own_img = np.zeros((h, w), bool)
    own_img[lr[own], lc[own]] = True
    target_img = np.zeros((h, w), bool)
    target_img[lr[~own], lc[~own]] = True
    if not target_img.any():
        return None
    zone = _dilate8(target_img)
    if zone[sr, sc]:
        return None  # already touching another road
    near_own = _dilate8(own_img)

    # Geometry of the patch relative to the dead end, metres, and the direction of travel.
    dy = (np.arange(h)[:, None] - sr) * pixel.row_m
    dx = (np.arange(w)[None, :] - sc) * pixel.col_m
    dist_m = np.hypot(dy, dx)
    along = dy * end.direction_m[0] + dx * end.direction_m[1]
    # the end of the road surface: the fork a blunt road end skeletonises into lies inside it
    start_disk = dist_m <= max(1.5 * pixel.gsd_m, end.edge_m + pixel.gsd_m)
    blocked = (own_img | (near_own & ~start_disk) | np.isnan(patch)) & ~start_disk
    blocked[sr, sc] = False

    if params.snap_m > 0:
        # snap_m is counted from the road's end, not its skeleton: add both half-widths
        cos_snap = math.cos(math.radians(SNAP_ANGLE_DEG))
        with np.errstate(invalid="ignore"):
            region = (dist_m <= params.snap_m + 2 * end.edge_m) & (along >= cos_snap * dist_m)
        cost = np.where((region | start_disk) & ~blocked, 1.0, -1.0)
        path = _least_cost(cost, (sr, sc), zone & region & ~blocked)
        if path is not None:
            return _finish(path, target_img)
    if params.bridge_m > 0:
        cos_max = math.cos(math.radians(params.bridge_angle_deg))
        with np.errstate(invalid="ignore", divide="ignore"):
            in_cone = along >= cos_max * dist_m
        region = (dist_m <= params.bridge_m) & in_cone
        p = np.clip(np.nan_to_num(patch, nan=0.0), _P_FLOOR, 1.0)
        neg_log = -np.log(p)
        cost = np.where((region | start_disk) & ~blocked, neg_log, -1.0)
        path = _least_cost(cost, (sr, sc), zone & region & ~blocked)
        if path is not None:
            p_path = p[path[1:, 0], path[1:, 1]]
            gap = p_path <= params.threshold_low  # the part outside the road mask
            score = float(np.exp(np.log(p_path[gap]).mean())) if gap.any() else 1.0
            if score >= params.bridge_min_prob:
                return _finish(path, target_img)
    return None


def _least_cost(
    cost: np.ndarray, start: tuple[int, int], ends: np.ndarray
) -> np.ndarray | None:
    """4-connected least-cost path from ``start`` to the cheapest pixel of ``ends``.

    Negative costs are impassable. Returns ``(N, 2)`` int (row, col) from ``start``, or None.
    """
    end_px = np.argwhere(ends)
    if end_px.size == 0:
        return None
    mcp = MCP_Geometric(cost, fully_connected=False)
    acc, _ = mcp.find_costs([start], ends=[tuple(e) for e in end_px], find_all_ends=False)
    reached = acc[end_px[:, 0], end_px[:, 1]]
    k = int(np.argmin(reached))
    if not np.isfinite(reached[k]):
        return None
    return np.asarray(mcp.traceback(tuple(end_px[k])), dtype=np.int64)


def _finish(path: np.ndarray, target_img: np.ndarray) -> np.ndarray:
    """Drop the dead-end pixel; drop the last pixel if it is a target road pixel itself."""
    path = path[1:]
    if path.size and target_img[path[-1, 0], path[-1, 1]]:
        path = path[:-1]
    return path


def _dilate8(mask: np.ndarray) -> np.ndarray:
    """8-neighbour binary dilation (the array border counts as background)."""
    return ndi.binary_dilation(mask, structure=_EIGHT)


# --------------------------------------------------------------------------- graph level


def repair_graph(graph: nx.MultiGraph, *, params: VectorizeParams, pixel: PixelSize) -> None:
    """Merge close junctions and collapse duplicate lines (in place), then re-contract.

    Args:
        graph: a pruned graph from :func:`~roadx.vectorize.graph.prune` (nodes with
            ``row``/``col``/``cut``, edges with ``path``/``start``/``length_m``).
        params: ``merge_junctions_m``, ``duplicate_m`` (0 turns a step off).
        pixel: ground pixel size in metres.
    """
    changed = False
    if params.merge_junctions_m > 0:
        changed |= merge_close_junctions(graph, params.merge_junctions_m) > 0
    if params.duplicate_m > 0:
        changed |= collapse_duplicates(graph, params.duplicate_m, pixel) > 0
    if changed:
        contract(graph)


def merge_close_junctions(graph: nx.MultiGraph, merge_m: float) -> int:
    """Merge junction pairs (both degree >= 3) joined by a short edge.

    An edge is short when it is shorter than ``merge_m`` or than ``CROSSING_WIDTHS`` times
    its own road width: where two roads of width ``w`` cross at an angle ``θ``, the skeleton
    has two degree-3 nodes joined by a link about ``w / tan(θ / 2)`` long and ``1.4 w`` wide,
    so every crossing of 45° or more is merged whatever the road width. The merged node sits
    at the mean of the two; the short edge is removed. Candidates are taken shortest first,
    ties by position, so the result does not depend on node ids.

    Returns:
        The number of merges.
    """
    candidates = []
    for u, v, data in graph.edges(data=True):
        if u == v:
            continue
        width_m = 2.0 * float(np.median(data["path"].edge_m))
        if data["length_m"] < max(merge_m, CROSSING_WIDTHS * width_m):
            pos = sorted((graph.nodes[n]["row"], graph.nodes[n]["col"]) for n in (u, v))
            candidates.append((data["length_m"], pos, u, v, data["path"]))
    candidates.sort(key=lambda c: (c[0], c[1]))
    moved: dict[int, int] = {}  # merged-away node -> the node that absorbed it

    def current(n: int) -> int:
        while n in moved:
            n = moved[n]
        return n

    merged = 0
    for _, _, u0, v0, path in candidates:
        u, v = current(u0), current(v0)
        if u == v or graph.degree(u) < 3 or graph.degree(v) < 3:
            continue
        keys = [k for k, d in graph.get_edge_data(u, v, default={}).items() if d["path"] is path]
        if not keys:
            continue
        graph.remove_edge(u, v, key=keys[0])
        _merge_nodes(graph, u, v)
        moved[v] = u
        merged += 1
    return merged


def _merge_nodes(graph: nx.MultiGraph, keep: int, gone: int) -> None:
    """Move every edge of ``gone`` onto ``keep`` and place ``keep`` at their mean."""
    a, b = graph.nodes[keep], graph.nodes[gone]
    a["row"], a["col"] = (a["row"] + b["row"]) / 2, (a["col"] + b["col"]) / 2
    a["cut"] = a["cut"] or b["cut"]
    for _, other, data in list(graph.edges(gone, data=True)):
        other = keep if other == gone else other
        start = keep if data["start"] == gone else data["start"]
        graph.add_edge(keep, other, path=data["path"], start=start, length_m=data["length_m"])
    graph.remove_node(gone)


def collapse_duplicates(graph: nx.MultiGraph, duplicate_m: float, pixel: PixelSize) -> int:
    """Replace pairs of parallel edges (same two nodes, within ``duplicate_m`` of each other,
    Hausdorff distance in metres) by their mean centreline.

    Returns:
        The number of pairs collapsed.
    """
    collapsed = 0
    pairs = sorted({(min(u, v), max(u, v)) for u, v in graph.edges() if u != v})
    for u, v in pairs:
        while graph.number_of_edges(u, v) >= 2:
            edges = sorted(
                graph.get_edge_data(u, v).items(), key=lambda kv: kv[1]["length_m"]
            )
            done = False
            for x in range(len(edges)):
                for y in range(x + 1, len(edges)):
                    (ka, da), (kb, db) = edges[x], edges[y]
                    pa = da["path"] if da["start"] == u else da["path"].reversed()
                    pb = db["path"] if db["start"] == u else db["path"].reversed()
                    if _hausdorff_m(pa, pb, pixel) > duplicate_m:
                        continue
                    mid = _mean_path(pa, pb, pixel)
                    graph.remove_edge(u, v, key=ka)
                    graph.remove_edge(u, v, key=kb)
                    length_m = 0.5 * (da["length_m"] + db["length_m"])
                    graph.add_edge(u, v, path=mid, start=u, length_m=length_m)
                    collapsed += 1
                    done = True
                    break
                if done:
                    break
            if not done:
                break
    return collapsed


def _metric_points(path: SkeletonPixels, pixel: PixelSize) -> np.ndarray:
    """``(N, 2)`` float64 ``(row, col)`` of a pixel path in metres (metric pixel space)."""
    return np.column_stack([path.rows * pixel.row_m, path.cols * pixel.col_m]).astype(float)


def _hausdorff_m(a: SkeletonPixels, b: SkeletonPixels, pixel: PixelSize) -> float:
    pa, pb = _metric_points(a, pixel), _metric_points(b, pixel)
    da, _ = cKDTree(pb).query(pa)
    db, _ = cKDTree(pa).query(pb)
    return float(max(da.max(), db.max()))


def _resample(pts: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along a polyline."""
    run = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    at = np.linspace(0.0, run[-1], n)
    return np.column_stack([np.interp(at, run, pts[:, 0]), np.interp(at, run, pts[:, 1])])


def _mean_path(a: SkeletonPixels, b: SkeletonPixels, pixel: PixelSize) -> SkeletonPixels:
    """The mean centreline of two paths with the same ends, as a pixel path."""
    n = max(len(a), len(b))
    ia = np.round(np.linspace(0, len(a) - 1, n)).astype(np.int64)
    ib = np.round(np.linspace(0, len(b) - 1, n)).astype(np.int64)
    pa, pb = _resample(_metric_points(a, pixel), n), _resample(_metric_points(b, pixel), n)
    mid = 0.5 * (pa + pb)
    rows = np.round(mid[:, 0] / pixel.row_m).astype(np.int64)
    cols = np.round(mid[:, 1] / pixel.col_m).astype(np.int64)
    keep = np.concatenate([[True], (np.diff(rows) != 0) | (np.diff(cols) != 0)])
    half_gap_m = 0.5 * np.hypot(*(pa - pb).T)
    edge_m = (np.maximum(a.edge_m[ia], b.edge_m[ib]) + half_gap_m).astype(np.float32)
    return SkeletonPixels(
        rows[keep], cols[keep],
        (0.5 * (a.prob[ia] + b.prob[ib])).astype(np.float32)[keep],
        edge_m[keep], (a.cut[ia] | b.cut[ib])[keep], (a.bridged[ia] | b.bridged[ib])[keep],
    )


def split_bridges(graph: nx.MultiGraph, pixel: PixelSize) -> None:
    """Cut every edge where a bridged stretch begins and ends (in place).

    Pruning and contraction treat a bridged road as one line; for the output each bridge
    becomes its own line (``bridged`` true) between two degree-2 nodes at the pixels where
    it meets the road found by thresholding, so it can be styled and audited on its own.

    Args:
        graph: a repaired graph (nodes with ``row``/``col``/``cut``, edges with ``path``,
            ``start`` and ``length_m`` in metres); new nodes get ids above the largest.
        pixel: ground pixel size in metres (lengths of the new edges).
    """
    next_node = max(graph.nodes, default=-1) + 1
    for u, v, k, data in list(graph.edges(keys=True, data=True)):
        path = data["path"]
        flags = path.bridged
        if not flags.any():
            continue
        n = len(path)
        change = np.nonzero(flags[1:] != flags[:-1])[0]  # flags[i] != flags[i + 1]
        # cut at the unbridged pixel on either side of each bridged run
        cuts = {int(i) if flags[i + 1] else int(i) + 1 for i in change}
        bounds = [0, *sorted(c for c in cuts if 0 < c < n - 1), n - 1]
        start = data["start"]
        other = v if start == u else u
        graph.remove_edge(u, v, key=k)
        prev = start
        for a, b in itertools.pairwise(bounds):
            piece = path.take(np.arange(a, b + 1))
            if b == n - 1:
                end = other
            else:
                end = next_node
                next_node += 1
                graph.add_node(end, row=float(path.rows[b]), col=float(path.cols[b]),
                               cut=False)
            length_m = float(path_lengths_m([piece], pixel)[0])
            graph.add_edge(prev, end, path=piece, start=prev, length_m=length_m)
            prev = end
