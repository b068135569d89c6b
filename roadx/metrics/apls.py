"""APLS, the Average Path Length Similarity of two road graphs (SpaceNet road metric).

Definition (Van Etten et al. 2018), as implemented here on networkx 3 + scipy:

1. Both graphs (from :func:`roadx.metrics.graph.lines_to_graph`, metric CRS) get *control
   nodes* every ``step_m`` metres along each edge, in addition to junctions and end points.
2. For the direction source → target (first GT → prediction, then prediction → GT), every
   source control node is snapped onto the nearest target edge if it lies within ``snap_m``
   metres; a node is inserted there into a copy of the target graph. Farther nodes stay
   unmatched.
3. For each unordered pair (a, b) of source control nodes joined by a source path of length
   ``L_s >= min_path_m``, the target path ``L_t`` between their snapped nodes scores
   ``1 - min(1, |L_s - L_t| / L_s)``; an unmatched node or a missing target path scores 0.
   Pairs with no source path are not scored. The direction score ``C`` is the mean.
4. ``APLS = 2 C(gt→prop) C(prop→gt) / (C(gt→prop) + C(prop→gt))`` (harmonic mean).

GT → prediction penalises missed roads and broken connections; prediction → GT penalises
hallucinated roads. When a graph has more than ``max_nodes`` control nodes, that many are
sampled (seeded) for the pairs; :class:`AplsResult` reports it.

:func:`apls_tiled` scores APLS the way the SpaceNet 3 challenge did: per square tile
(400 m, one 1300 px image at 0.3 m), with fixed rules for tiles whose ground truth and/or
proposal is empty, averaged over tiles. :func:`apls` itself is the whole-area score.
"""

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import networkx as nx
import numpy as np
import shapely
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from roadx.errors import InputError
from roadx.metrics.graph import explode_lines, lines_to_graph

logger = logging.getLogger(__name__)

# Projections closer than this (metres) to an edge end reuse the end node.
_MERGE_M = 1e-3
# Dijkstra sources per batch (memory: _CHUNK x nodes float64).
_CHUNK = 128


@dataclass(frozen=True, slots=True)
class AplsParams:
    """Parameters of APLS (defaults of the SpaceNet 3/5 implementation).

    Attributes:
        step_m: spacing of control nodes along edges, metres (``linestring_delta``).
        snap_m: largest distance at which a control node snaps onto the other graph, metres.
        min_path_m: source paths shorter than this are not scored, metres.
        max_nodes: control nodes per graph used for pairs; more are sampled with ``seed``.
        seed: seed of the node sample.
    """

    step_m: float = 50.0
    snap_m: float = 4.0
    min_path_m: float = 10.0
    max_nodes: int = 1000
    seed: int = 0


@dataclass(frozen=True, slots=True)
class AplsResult:
    """APLS and its two directional scores, with counts and the parameters used."""

    apls: float
    gt_to_prop: float
    prop_to_gt: float
    n_pairs_gt: int
    n_pairs_prop: int
    n_control_nodes_gt: int
    n_control_nodes_prop: int
    sampled: bool
    params: AplsParams

    def to_dict(self) -> dict[str, object]:
        """As a JSON-able dict (parameters nested under ``params``)."""
        out = asdict(self)
        out["params"] = asdict(self.params)
        return out


def insert_control_nodes(graph: nx.Graph, step_m: float) -> nx.Graph:
    """Return a copy of ``graph`` with extra nodes every ``step_m`` metres along each edge.

    Args:
        graph: graph from :func:`roadx.metrics.graph.lines_to_graph` (metric CRS).
        step_m: spacing in metres (> 0), measured from each edge's ``start`` node.

    Returns:
        New graph with the same node ids plus new integer ids; edge lengths in metres.

    Raises:
        InputError: ``step_m`` <= 0.

    Example:
        >>> from roadx.metrics.graph import lines_to_graph
        >>> g = insert_control_nodes(lines_to_graph([LineString([(0, 0), (120, 0)])]), 50)
        >>> g.number_of_nodes(), sorted(round(d["length_m"]) for *_, d in g.edges(data=True))
        (4, [20, 50, 50])
    """
    if step_m <= 0:
        raise InputError(f"APLS step is {step_m} m; expected a spacing > 0 m.")
    splits: dict[tuple[int, int], list[float]] = {}
    for u, v, data in graph.edges(data=True):
        length = data["length_m"]
        splits[(u, v)] = list(np.arange(step_m, length - _MERGE_M, step_m))
    out, _ = _split_edges(graph, splits)
    return out


def _split_edges(
    graph: nx.Graph, cuts: dict[tuple[int, int], list[float]]
) -> tuple[nx.Graph, dict[tuple[tuple[int, int], float], int]]:
    """Copy ``graph`` splitting edge (u, v) at distances from its ``start`` node.

    Returns the new graph and a map (edge, distance) -> node at that distance.
    """
    out = nx.Graph()
    out.add_nodes_from(graph.nodes(data=True))
    next_id = max(graph.nodes, default=-1) + 1
    where: dict[tuple[tuple[int, int], float], int] = {}
    for u, v, data in graph.edges(data=True):
        line: LineString = data["geometry"]
        length = data["length_m"]
        start = data["start"]
        end = v if start == u else u
        positions = sorted({float(d) for d in cuts.get((u, v), ()) or cuts.get((v, u), ())})
        chain: list[tuple[float, int]] = [(0.0, start)]
        for d in positions:
            if d <= _MERGE_M:
                where[((u, v), d)] = start
            elif d >= length - _MERGE_M:
                where[((u, v), d)] = end
            elif d - chain[-1][0] <= _MERGE_M:
                where[((u, v), d)] = chain[-1][1]
            else:
                x, y = shapely.line_interpolate_point(line, d).coords[0]
                out.add_node(next_id, x=float(x), y=float(y))
                chain.append((d, next_id))
                where[((u, v), d)] = next_id
                next_id += 1
        chain.append((length, end))
        for (d0, a), (d1, b) in zip(chain[:-1], chain[1:], strict=True):
            piece = substring(line, d0, d1)
            if out.has_edge(a, b):  # two pieces between the same nodes: keep the shorter
                if out.edges[a, b]["length_m"] <= d1 - d0:
                    continue
            out.add_edge(a, b, geometry=piece, length_m=float(d1 - d0), start=a)
    return out, where


def _snap(
    source: nx.Graph, nodes: list[int], target: nx.Graph, snap_m: float
) -> tuple[nx.Graph, np.ndarray]:
    """Snap source ``nodes`` onto target edges; return the augmented target and node map.

    The map holds, for each source node, its node id in the augmented target or -1.
    """
    mapped = np.full(len(nodes), -1, dtype=np.int64)
    edges = list(target.edges(data=True))
    if not nodes or not edges:
        return target, mapped
    lines = [d["geometry"] for _, _, d in edges]
    tree = shapely.STRtree(lines)
    pts = shapely.points([(source.nodes[n]["x"], source.nodes[n]["y"]) for n in nodes])
    (i_pt, i_line) = tree.query_nearest(pts, max_distance=snap_m, all_matches=False)
    cuts: dict[tuple[int, int], list[float]] = {}
    requests: list[tuple[int, tuple[int, int], float]] = []
    for ip, il in zip(i_pt.tolist(), i_line.tolist(), strict=True):
        u, v, data = edges[il]
        d = float(shapely.line_locate_point(data["geometry"], pts[ip]))
        cuts.setdefault((u, v), []).append(d)
        requests.append((ip, (u, v), d))
    augmented, where = _split_edges(target, cuts)
    for ip, edge, d in requests:
        mapped[ip] = where[(edge, float(d))]
    return augmented, mapped


def _path_lengths(graph: nx.Graph, nodes: list[int]) -> np.ndarray:
    """(n, n) float64 shortest-path lengths in metres between ``nodes`` (inf: no path).

    Dijkstra runs from a chunk of sources at a time so that memory stays at
    ``_CHUNK x graph size`` floats however large the graph is.
    """
    order = list(graph.nodes)
    index = {n: i for i, n in enumerate(order)}
    matrix = nx.to_scipy_sparse_array(graph, nodelist=order, weight="length_m", format="csr")
    idx = np.array([index[n] for n in nodes], dtype=np.int64)
    out = np.empty((len(idx), len(idx)))
    for start in range(0, len(idx), _CHUNK):
        rows = dijkstra(matrix, directed=False, indices=idx[start : start + _CHUNK])
        out[start : start + _CHUNK] = rows[:, idx]
    return out


def _direction(
    source: nx.Graph, target: nx.Graph, params: AplsParams
) -> tuple[float, int, int, bool]:
    """Score one direction; return (C, scored pairs, control nodes, sampled)."""
    nodes = list(source.nodes)
    n_all = len(nodes)
    sampled = n_all > params.max_nodes
    if sampled:
        rng = np.random.default_rng(params.seed)
        nodes = [nodes[i] for i in sorted(rng.choice(n_all, params.max_nodes, replace=False))]
    if len(nodes) < 2:
        return 0.0, 0, n_all, sampled
    l_src = _path_lengths(source, nodes)  # (n, n) metres
    augmented, mapped = _snap(source, nodes, target, params.snap_m)
    l_tgt = np.full_like(l_src, np.inf)
    ok = np.flatnonzero(mapped >= 0)
    if ok.size:
        l_tgt[np.ix_(ok, ok)] = _path_lengths(augmented, [int(m) for m in mapped[ok]])
    iu = np.triu_indices(len(nodes), k=1)
    ls, lt = l_src[iu], l_tgt[iu]
    scored = np.isfinite(ls) & (ls >= params.min_path_m)
    ls, lt = ls[scored], lt[scored]
    if ls.size == 0:
        return 0.0, 0, n_all, sampled
    with np.errstate(invalid="ignore"):
        score = np.where(np.isfinite(lt), 1.0 - np.minimum(1.0, np.abs(ls - lt) / ls), 0.0)
    return float(score.mean()), int(ls.size), n_all, sampled


def apls(gt: nx.Graph, prop: nx.Graph, params: AplsParams = AplsParams()) -> AplsResult:
    """Compute APLS of a proposal road graph against a ground-truth graph.

    Identical graphs score 1; an empty proposal scores 0. Cost: one Dijkstra from each
    (sampled) control node in each of the four graphs, O(n · E log V) with n <= ``max_nodes``,
    and an (n, n) float64 matrix per direction.

    Args:
        gt: ground-truth graph from :func:`roadx.metrics.graph.lines_to_graph` (metres).
        prop: proposal graph in the same CRS.
        params: see :class:`AplsParams`.

    Returns:
        :class:`AplsResult`; a direction with no scorable pair (e.g. an empty proposal)
        scores 0.

    Raises:
        InputError: invalid parameters (``step_m`` <= 0).

    References:
        A. Van Etten, D. Lindenbaum, T. M. Bacastow, "SpaceNet: A Remote Sensing Dataset and
        Challenge Series", arXiv:1807.01232, 2018 (APLS, §5); CosmiQ ``apls`` repository.

    Example:
        >>> from roadx.metrics.graph import lines_to_graph
        >>> g = lines_to_graph([LineString([(0, 0), (200, 0)]), LineString([(100, 0), (100, 150)])])
        >>> apls(g, g).apls
        1.0
    """
    g_dense = insert_control_nodes(gt, params.step_m)
    p_dense = insert_control_nodes(prop, params.step_m)
    c_gp, n_gp, nodes_g, s_g = _direction(g_dense, p_dense, params)
    c_pg, n_pg, nodes_p, s_p = _direction(p_dense, g_dense, params)
    value = 2 * c_gp * c_pg / (c_gp + c_pg) if c_gp + c_pg > 0 else 0.0
    logger.debug("APLS %.4f (gt->prop %.4f on %d pairs, prop->gt %.4f on %d pairs)",
                 value, c_gp, n_gp, c_pg, n_pg)
    return AplsResult(
        apls=value,
        gt_to_prop=c_gp,
        prop_to_gt=c_pg,
        n_pairs_gt=n_gp,
        n_pairs_prop=n_pg,
        n_control_nodes_gt=nodes_g,
        n_control_nodes_prop=nodes_p,
        sampled=s_g or s_p,
        params=params,
    )


# --- APLS per tile, averaged (as SpaceNet scored it) -------------------------------------

TileCase = Literal["scored", "both_empty", "gt_empty", "prop_empty"]


@dataclass(frozen=True, slots=True)
class TileApls:
    """APLS of one square tile.

    Attributes:
        row, col: tile position; row 0 is the northernmost, col 0 the westernmost.
        bounds: (min x, min y, max x, max y) of the tile, metres (metric CRS).
        apls: the tile's score under the SpaceNet conventions (see :func:`apls_tiled`).
        case: "scored" (both graphs have roads), "both_empty" (scores 1), "gt_empty" or
            "prop_empty" (score 0).
        gt_length_m, prop_length_m: road length inside the tile, metres.
    """

    row: int
    col: int
    bounds: tuple[float, float, float, float]
    apls: float
    case: TileCase
    gt_length_m: float
    prop_length_m: float


@dataclass(frozen=True, slots=True)
class TiledAplsResult:
    """APLS per square tile, averaged, with the per-tile scores.

    Attributes:
        apls: mean over all tiles (empty-tile rules of the SpaceNet 3 scorer).
        apls_gt_tiles: mean over the tiles whose ground truth has roads (the CosmiQ ``apls``
            package skips tiles with empty ground truth); 0.0 when there is none.
        tile_m: tile side, metres.
        n_tiles, n_scored, n_both_empty, n_gt_empty, n_prop_empty: tile counts by case.
        tiles: every tile's :class:`TileApls`, row by row.
        params: the APLS parameters of every tile.
    """

    apls: float
    apls_gt_tiles: float
    tile_m: float
    n_tiles: int
    n_scored: int
    n_both_empty: int
    n_gt_empty: int
    n_prop_empty: int
    tiles: tuple[TileApls, ...]
    params: AplsParams

    def to_dict(self) -> dict[str, object]:
        """As a JSON-able dict (tiles as a list of dicts, parameters under ``params``)."""
        out = asdict(self)
        out["tiles"] = [asdict(t) for t in self.tiles]
        out["params"] = asdict(self.params)
        return out


def _clip_to(geoms: np.ndarray, tree: shapely.STRtree, cell: BaseGeometry) -> list[BaseGeometry]:
    """Lines of ``geoms`` inside ``cell``; lines wholly inside are kept unchanged."""
    idx = tree.query(cell)
    if idx.size == 0:
        return []
    cand = geoms[np.sort(idx)]
    inside = shapely.covered_by(cand, cell)
    clipped = cand.copy()
    if (~inside).any():
        clipped[~inside] = shapely.intersection(cand[~inside], cell)
    return [g for g in clipped if not g.is_empty]


def apls_tiled(
    gt: Iterable[BaseGeometry | None],
    prop: Iterable[BaseGeometry | None],
    *,
    area: BaseGeometry | None = None,
    tile_m: float = 400.0,
    params: AplsParams = AplsParams(),
) -> TiledAplsResult:
    """APLS as SpaceNet scored it: per square tile of ``tile_m`` metres, then averaged.

    The grid starts at the north-west corner of ``area``'s bounds (of all lines when
    ``area`` is None); tiles that do not overlap ``area`` are left out. Both line sets are
    clipped to each tile, noded (:func:`roadx.metrics.graph.lines_to_graph`) and scored with
    :func:`apls`. A tile where both graphs are empty scores 1, a tile where exactly one is
    empty scores 0, as in the SpaceNet 3 (Topcoder "RoadDetector") scorer; ``apls`` is the
    mean over all tiles. ``apls_gt_tiles`` leaves out tiles with empty ground truth, as the
    CosmiQ ``apls`` package does. An area that fits in one tile gives exactly :func:`apls`
    of the unclipped graphs.

    Args:
        gt: ground-truth (Multi)LineStrings in a metric CRS (metres), already clipped to
            ``area``.
        prop: proposal (Multi)LineStrings, same CRS, already clipped to ``area``.
        area: the evaluated region (polygon, metres), or None for the lines' bounding box.
        tile_m: tile side, metres (default 400 m: SpaceNet 3's 1300 px at 0.3 m).
        params: APLS parameters of every tile.

    Returns:
        :class:`TiledAplsResult`; with no tile at all (no area and no line) every score is 0.

    Raises:
        InputError: ``tile_m`` <= 0, or invalid APLS parameters.

    References:
        SpaceNet 3 scorer: ``Metrics.score`` (both graphs empty: 1; one empty: 0) and the
        per-image mean of the Topcoder RoadDetector visualizer, as republished in
        github.com/antran89/road_visualizer (``src/geom/Metrics.java``,
        ``src/visualizer/RoadVisualizer.java``); CosmiQ ``apls`` @ 4a78807, ``apls/apls.py``
        ("skip empty ground truth graphs"; an empty proposal scores 0).

    Example:
        >>> from shapely.geometry import LineString
        >>> roads = [LineString([(0, 0), (700, 0)]), LineString([(100, -50), (100, 50)])]
        >>> r = apls_tiled(roads, roads[:1], tile_m=400.0)
        >>> r.n_tiles, [t.case for t in r.tiles]
        (2, ['scored', 'scored'])
    """
    if tile_m <= 0:
        raise InputError(f"APLS tile size is {tile_m} m; expected a side > 0 m (default 400).")
    if params.step_m <= 0:
        raise InputError(f"APLS step is {params.step_m} m; expected a spacing > 0 m.")
    g_lines = np.asarray(explode_lines(gt), dtype=object)
    p_lines = np.asarray(explode_lines(prop), dtype=object)
    if area is None:
        every = np.concatenate([g_lines, p_lines])
        if every.size == 0:
            return TiledAplsResult(0.0, 0.0, tile_m, 0, 0, 0, 0, 0, (), params)
        x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(every))
    else:
        x0, y0, x1, y1 = (float(v) for v in area.bounds)
    n_cols = max(1, math.ceil((x1 - x0) / tile_m - 1e-9))
    n_rows = max(1, math.ceil((y1 - y0) / tile_m - 1e-9))
    g_tree, p_tree = shapely.STRtree(g_lines), shapely.STRtree(p_lines)
    tiles: list[TileApls] = []
    for row in range(n_rows):
        for col in range(n_cols):
            bounds = (x0 + col * tile_m, y1 - (row + 1) * tile_m,
                      x0 + (col + 1) * tile_m, y1 - row * tile_m)
            cell = shapely.box(*bounds)
            if area is not None and shapely.area(shapely.intersection(area, cell)) <= 0:
                continue
            g_graph = lines_to_graph(_clip_to(g_lines, g_tree, cell))
            p_graph = lines_to_graph(_clip_to(p_lines, p_tree, cell))
            g_len = sum(d["length_m"] for *_, d in g_graph.edges(data=True))
            p_len = sum(d["length_m"] for *_, d in p_graph.edges(data=True))
            case: TileCase
            if g_graph.number_of_edges() and p_graph.number_of_edges():
                case, value = "scored", apls(g_graph, p_graph, params).apls
            elif g_graph.number_of_edges():
                case, value = "prop_empty", 0.0
            elif p_graph.number_of_edges():
                case, value = "gt_empty", 0.0
            else:
                case, value = "both_empty", 1.0
            tiles.append(TileApls(row, col, bounds, value, case, float(g_len), float(p_len)))
    counts = {c: sum(t.case == c for t in tiles) for c in
              ("scored", "both_empty", "gt_empty", "prop_empty")}
    with_gt = [t.apls for t in tiles if t.case in ("scored", "prop_empty")]
    mean = float(np.mean([t.apls for t in tiles])) if tiles else 0.0
    logger.debug("APLS per %g m tile: mean %.4f over %d tiles %s", tile_m, mean, len(tiles),
                 counts)
    return TiledAplsResult(
        apls=mean,
        apls_gt_tiles=float(np.mean(with_gt)) if with_gt else 0.0,
        tile_m=tile_m,
        n_tiles=len(tiles),
        n_scored=counts["scored"],
        n_both_empty=counts["both_empty"],
        n_gt_empty=counts["gt_empty"],
        n_prop_empty=counts["prop_empty"],
        tiles=tuple(tiles),
        params=params,
    )
