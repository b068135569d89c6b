"""Stitch band graphs at seams, then prune spurs and contract degree-2 nodes.

Stitching: each band's :class:`~roadx.vectorize.trace.BandGraph` lists the steps that cross
its upper seam (from a pixel of the previous band's last row to one of its own first row).
Both pixels are nodes of their bands, so a step becomes a two-pixel edge between them, except
when both are junction pixels: then they belong to one junction cluster and their nodes are
merged (union-find). After degree-2 contraction a road that crosses a seam is one edge, and
the result equals tracing the whole skeleton at once.

Pruning (on the merged graph, at the end), after CRESI ``04_skeletonize`` / ``05_wkt_to_G``:

1. contract degree-2 nodes, so every edge runs junction/end to junction/end;
2. repeat until nothing changes (at most 16 rounds): remove self-loops shorter than
   ``min_loop_m``; remove terminal edges (an end node of degree 1 whose other node is a
   junction) shorter than ``min_spur_m`` or, when ``min_edge_prob > 0``, with a mean
   probability below it, or, when they contain bridged pixels (gap bridging, see
   :mod:`~roadx.vectorize.repair`), with less than ``min_component_m`` of found road (a
   fragment bridged at one end only), unless the end is a cut end (scene edge or nodata: a
   cut road is not a spur); contract again;
3. drop connected pieces shorter than ``min_component_m`` in total (``min_spur_m`` for
   pieces that touch a cut end), and pieces without a cut end whose mean probability is
   below ``min_edge_prob``. Lines with bridged pixels are never dropped for probability.

References:
    Van Etten, "City-scale Road Extraction from Satellite Imagery v2", WACV 2020 (CRESI);
    pipeline-anchors.md §5 items 5, 7 and 9.
"""

import logging

import networkx as nx
import numpy as np

from roadx.vectorize.geometry import path_lengths_m
from roadx.vectorize.params import PixelSize, VectorizeParams
from roadx.vectorize.skeleton import SkeletonPixels
from roadx.vectorize.trace import BandGraph

logger = logging.getLogger(__name__)

_MAX_ROUNDS = 16


class GraphStitcher:
    """Collect band graphs in row order and join them at the seams.

    Memory is the graph itself (node arrays and edge pixel paths), never a raster.
    """

    def __init__(self, pixel: PixelSize) -> None:
        self._pixel = pixel
        self._node_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._edges: list[tuple[int, int, SkeletonPixels]] = []
        self._n_nodes = 0
        self._parent: dict[int, int] = {}
        self._bottom = np.empty((0, 3), dtype=np.int64)

    def add(self, band: BandGraph, px: SkeletonPixels) -> None:
        """Add the next band's graph (``px``: the pixel list it was traced from)."""
        off = self._n_nodes
        self._node_parts.append((band.node_row_sum, band.node_col_sum, band.node_px, band.node_cut))
        self._n_nodes += band.node_px.size
        for u, v, idx in band.edges:
            self._edges.append((u + off, v + off, px.take(idx)))
        cols = self._bottom[:, 0]
        for p, q, q_label, q_junction in band.top_links:
            k = int(np.searchsorted(cols, px.cols[p]))
            if k >= cols.size or cols[k] != px.cols[p]:
                logger.warning(
                    "seam pixel (%d, %d) has no node above; left open", px.rows[p], px.cols[p]
                )
                continue
            p_node, p_junction = int(self._bottom[k, 1]), bool(self._bottom[k, 2])
            if p_junction and q_junction:
                self._union(p_node, int(q_label) + off)
            else:
                self._edges.append((p_node, int(q_label) + off, px.take(np.array([p, q]))))
        bottom = band.bottom.copy()
        bottom[:, 1] += off
        self._bottom = bottom

    def _find(self, x: int) -> int:
        root = x
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while x != root:
            self._parent[x], x = root, self._parent[x]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def graph(self) -> nx.MultiGraph:
        """The stitched pixel graph.

        Returns:
            MultiGraph; nodes carry ``row``, ``col`` (float pixel centroid) and ``cut``;
            edges carry ``path`` (:class:`SkeletonPixels` from the ``start`` node to the
            other), ``start`` and ``length_m``.
        """
        n = self._n_nodes
        root = np.arange(n)
        for x in list(self._parent):
            root[x] = self._find(x)
        parts = list(zip(*self._node_parts, strict=True)) if self._node_parts else [[]] * 4
        row_sum, col_sum, count, cut = (np.concatenate(p) if p else np.empty(0) for p in parts)
        rows = np.bincount(root, weights=row_sum, minlength=n)
        cols = np.bincount(root, weights=col_sum, minlength=n)
        px = np.bincount(root, weights=count, minlength=n)
        cuts = np.bincount(root, weights=cut.astype(np.float64), minlength=n) > 0
        lengths = path_lengths_m([path for _, _, path in self._edges], self._pixel)
        g = nx.MultiGraph()
        for (u, v, path), length_m in zip(self._edges, lengths, strict=True):
            ru, rv = int(root[u]), int(root[v])
            g.add_edge(ru, rv, path=path, start=ru, length_m=float(length_m))
        for node in g.nodes:
            attrs = g.nodes[node]
            attrs.update(row=rows[node] / px[node], col=cols[node] / px[node], cut=bool(cuts[node]))
        return g


def prune(graph: nx.MultiGraph, *, params: VectorizeParams) -> None:
    """Prune spurs, short loops and small pieces, and contract degree-2 nodes (in place).

    Args:
        graph: a graph from :meth:`GraphStitcher.graph` (edge ``length_m`` in metres).
        params: ``min_spur_m``, ``min_loop_m``, ``min_component_m``, ``min_edge_prob``.

    References:
        CRESI spur pruning (border-aware, iterative) and small-subgraph removal;
        pipeline-anchors.md §5 items 5 and 7.
    """
    contract(graph)
    for round_ in range(_MAX_ROUNDS):
        removed = _remove_short_loops(graph, params.min_loop_m)
        removed += _remove_spurs(graph, params)
        logger.debug("prune round %d: removed %d edges", round_, removed)
        if removed == 0:
            break
        contract(graph)
    _remove_small_components(graph, params)
    graph.remove_nodes_from([n for n, d in graph.degree() if d == 0])


def contract(graph: nx.MultiGraph) -> None:
    """Merge the two edges at every degree-2 node into one (rings keep one node).

    The merged length is the sum of the two (the final length is re-measured on the
    merged path when the geometry is built).
    """
    for n in [n for n, d in graph.degree() if d == 2]:
        ends = list(graph.edges(n, keys=True, data=True))
        if len(ends) != 2:  # a single self-loop: the node of a ring
            continue
        (_, a, _, da), (_, b, _, db) = ends
        first = da["path"] if da["start"] == a else da["path"].reversed()  # a -> n
        second = db["path"] if db["start"] == n else db["path"].reversed()  # n -> b
        same = first.rows[-1] == second.rows[0] and first.cols[-1] == second.cols[0]
        tail = second.take(np.arange(1, len(second))) if same else second
        path = SkeletonPixels.concat([first, tail])
        graph.remove_node(n)
        graph.add_edge(a, b, path=path, start=a, length_m=da["length_m"] + db["length_m"])


def _remove_short_loops(graph: nx.MultiGraph, min_loop_m: float) -> int:
    loops = [
        (u, k)
        for u, v, k, length_m in graph.edges(keys=True, data="length_m")
        if u == v and length_m < min_loop_m
    ]
    for u, k in loops:
        graph.remove_edge(u, u, key=k)
    return len(loops)


def _remove_spurs(graph: nx.MultiGraph, params: VectorizeParams) -> int:
    deg = dict(graph.degree())
    spurs = []
    for u, v, k, d in graph.edges(keys=True, data=True):
        if u == v:
            continue
        path = d["path"]
        short = d["length_m"] < params.min_spur_m
        faint = params.min_edge_prob > 0 and _unbridged_mean_prob(path) < params.min_edge_prob
        # a fragment hanging on a bridge: without the bridge it would be a small piece
        found_m = d["length_m"] * float(np.mean(~path.bridged))
        hanging = bool(path.bridged.any()) and found_m < params.min_component_m
        if not (short or faint or hanging):
            continue
        for end, other in ((u, v), (v, u)):
            if deg[end] == 1 and deg[other] >= 3 and not graph.nodes[end]["cut"]:
                spurs.append((u, v, k, end))
                break
    for u, v, k, end in spurs:
        graph.remove_edge(u, v, key=k)
        graph.remove_node(end)
    return len(spurs)


def _unbridged_mean_prob(path: SkeletonPixels) -> float:
    """Mean probability along a path; 1.0 for a path with bridged pixels (never faint)."""
    if path.bridged.any():
        return 1.0
    return float(path.prob.mean())


def _remove_small_components(graph: nx.MultiGraph, params: VectorizeParams) -> None:
    comp_of: dict[int, int] = {}
    comps = list(nx.connected_components(graph))
    for k, comp in enumerate(comps):
        comp_of.update(dict.fromkeys(comp, k))
    total_m = np.zeros(len(comps))
    prob_sum = np.zeros(len(comps))
    px = np.zeros(len(comps))
    bridged = np.zeros(len(comps), dtype=bool)
    for u, _, d in graph.edges(data=True):
        k = comp_of[u]
        total_m[k] += d["length_m"]
        prob_sum[k] += float(d["path"].prob.sum())
        px[k] += len(d["path"])
        bridged[k] |= bool(d["path"].bridged.any())
    drop = []
    for k, comp in enumerate(comps):
        touches_cut = any(graph.nodes[n]["cut"] for n in comp)
        limit = params.min_component_m
        if touches_cut:
            limit = min(params.min_spur_m, params.min_component_m)
        faint = (params.min_edge_prob > 0 and not bridged[k] and not touches_cut
                 and prob_sum[k] < params.min_edge_prob * px[k])
        if total_m[k] < limit or faint:
            drop.extend(comp)
    graph.remove_nodes_from(drop)
