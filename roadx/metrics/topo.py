"""TOPO, the holes-and-marbles road-map metric (Biagioni & Eriksson 2012; Sat2Graph variant).

Definition, as implemented here on the metric-CRS graphs of
:func:`roadx.metrics.graph.lines_to_graph` (all distances in metres):

1. Both graphs are sampled every ``interval_m`` metres along each edge (at most that far
   apart: an edge of length L gets ``ceil(L / interval_m)`` equal pieces); graph nodes are
   samples too. Ground-truth samples are *holes*, proposal samples are *marbles*. Each sample
   carries the direction of its edge (graph nodes, i.e. junctions and dead ends, match any
   direction).
2. *Seeds* are placed on the ground truth every ``seed_spacing_m`` metres (``n = max(1,
   floor(L / seed_spacing_m))`` evenly spaced inner points per edge; edges shorter than half
   the spacing get none), snapped to the nearest hole. Above ``max_seeds`` seeds, that many
   are sampled with ``seed``.
3. Each seed is paired with the nearest proposal segment within ``match_m`` whose direction
   differs by less than ``seed_angle_deg``; a seed without a partner is *unmatched*.
4. From a matched seed, the ground truth is walked along the graph up to ``radius_m``: the holes
   reached are the seed's holes; the proposal is walked from the paired point up to
   ``radius_m``: the marbles reached are its marbles. Marbles and holes closer than
   ``match_m`` whose directions differ by less than ``max_angle_deg`` may match; a maximum
   one-to-one matching (Hopcroft-Karp) gives ``k`` matches. The seed's precision is
   ``k / marbles``, its recall ``k / holes``.
5. **precision** = mean seed precision over matched seeds; **recall** = sum of seed recalls /
   all seeds (an unmatched seed has recall 0: the "overall recall" of Sat2Graph);
   **F1** = 2PR / (P + R).

Because the walks follow the graphs, TOPO scores local geometry *and* local connectivity: a
gap in the proposal hides the marbles behind it from seeds on the other side (recall drops),
a spurious road within ``radius_m`` of a seed adds unmatched marbles (precision drops).

Differences from the Sat2Graph reference code (``metrics/topo/topo.py``), all deliberate:
one matching serves precision and recall (Sat2Graph doubles every hole of a two-way edge for
the precision matching, so two parallel predicted lines can both match one true road);
seeds snap to holes (up to ``interval_m / 2`` away); its de-duplication of seeds whose
proposal start points lie within ~20 m of each other (``TOPO121``) is not done; and it
excludes seeds within 7 % of the region's border, which is not done either. Parameters in
Sat2Graph/SAM-Road are degrees at 111 111 m per degree: interval 0.00005 (5.6 m), matching
0.0001 (11.1 m), seed density 0.0005 (55.6 m), radius 0.003 (333 m; 0.0015 = 167 m for
SpaceNet's 400 m tiles); marble-hole angle ``1 - |cos| < 0.29`` (45 degrees; its README says
30), seed angle ``1 - |cos| < 0.04`` (16 degrees).
"""

import logging
import math
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np
import shapely
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra, maximum_bipartite_matching
from scipy.spatial import cKDTree

from roadx.errors import InputError

logger = logging.getLogger(__name__)

# Seeds per Dijkstra batch (memory: 2 x _CHUNK x samples float64).
_CHUNK = 64


@dataclass(frozen=True, slots=True)
class TopoParams:
    """Parameters of TOPO, distances in metres (defaults: Sat2Graph's, rounded to metres).

    Attributes:
        radius_m: propagation distance of the walks from each seed, metres (Sat2Graph: 300 m
            on 2 km tiles, 150 m on SpaceNet's 400 m tiles).
        interval_m: largest spacing of marbles and holes along edges, metres.
        match_m: largest marble-hole distance of a match, and largest seed-proposal distance
            of a seed pairing, metres.
        max_angle_deg: largest direction difference of a matching marble and hole, degrees
            (roads are undirected: 0-90).
        seed_spacing_m: spacing of seeds along ground-truth edges, metres.
        seed_angle_deg: largest direction difference of a seed and its proposal segment,
            degrees.
        max_seeds: seeds used; more are sampled with ``seed``.
        seed: seed of the seed sample.
    """

    radius_m: float = 300.0
    interval_m: float = 5.0
    match_m: float = 10.0
    max_angle_deg: float = 45.0
    seed_spacing_m: float = 50.0
    seed_angle_deg: float = 15.0
    max_seeds: int = 1000
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TopoResult:
    """TOPO precision / recall / F1 with the counts behind them (0.0 when undefined).

    Attributes:
        precision, recall, f1: see the module docstring (aggregated over seeds).
        n_seeds: seeds on the ground truth (after sampling).
        n_seeds_matched: seeds paired with a proposal segment (those score precision).
        n_marbles, n_marbles_matched: marbles summed over matched seeds, and those matched.
        n_holes, n_holes_matched: holes summed over all seeds, and those matched.
        sampled: True when more than ``max_seeds`` seeds were available.
        params: the parameters used.
    """

    precision: float
    recall: float
    f1: float
    n_seeds: int
    n_seeds_matched: int
    n_marbles: int
    n_marbles_matched: int
    n_holes: int
    n_holes_matched: int
    sampled: bool
    params: TopoParams

    def to_dict(self) -> dict[str, object]:
        """As a JSON-able dict (parameters nested under ``params``)."""
        out = asdict(self)
        out["params"] = asdict(self.params)
        return out


@dataclass(frozen=True, slots=True)
class _Samples:
    """Points every <= ``interval_m`` along a graph, chained into a weighted graph.

    ``xy`` (N, 2) float64 metres; ``tangent`` (N, 2) unit direction (zeros at graph nodes:
    matches any direction); ``seg`` (M, 2) int64 consecutive sample pairs with along-line
    lengths ``seg_m`` (M,); ``adj`` the symmetric (N, N) CSR matrix of those lengths;
    ``seeds`` sample indices of the seed points (empty unless requested).
    """

    xy: np.ndarray
    tangent: np.ndarray
    seg: np.ndarray
    seg_m: np.ndarray
    adj: csr_matrix
    seeds: np.ndarray


def _sample(graph: nx.Graph, interval_m: float, seed_spacing_m: float | None) -> _Samples:
    """Sample ``graph`` (from ``lines_to_graph``) every <= ``interval_m`` metres."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    n_nodes = len(index)
    node_xy = np.array([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in graph.nodes],
                       dtype=float).reshape(-1, 2)
    edges = list(graph.edges(data=True))
    if not edges:
        empty = np.zeros((0, 2), dtype=np.int64)
        return _Samples(node_xy, np.zeros_like(node_xy), empty, np.zeros(0),
                        csr_matrix((n_nodes, n_nodes)), np.zeros(0, dtype=np.int64))
    lines = np.array([d["geometry"] for *_, d in edges], dtype=object)
    length = np.array([d["length_m"] for *_, d in edges], dtype=float)
    start = np.array([index[d["start"]] for *_, d in edges], dtype=np.int64)
    end = np.array([index[v if d["start"] == u else u] for u, v, d in edges], dtype=np.int64)
    pieces = np.maximum(1, np.ceil(length / interval_m - 1e-9)).astype(np.int64)
    # Positions k * L / n, k = 0..n, of every edge (ends included, for the tangents).
    n_pos = pieces + 1
    edge_of = np.repeat(np.arange(len(edges)), n_pos)
    first = np.cumsum(n_pos) - n_pos
    k = np.arange(len(edge_of)) - first[edge_of]
    dist = k * (length / pieces)[edge_of]
    pts = shapely.get_coordinates(shapely.line_interpolate_point(lines[edge_of], dist))
    # Central differences along each chain (one-sided at the ends) give the tangents.
    prev = np.where(k == 0, np.arange(len(k)), np.arange(len(k)) - 1)
    nxt = np.where(k == pieces[edge_of], np.arange(len(k)), np.arange(len(k)) + 1)
    tangent = pts[nxt] - pts[prev]
    norm = np.hypot(tangent[:, 0], tangent[:, 1])
    tangent = np.divide(tangent, norm[:, None], out=np.zeros_like(tangent),
                        where=norm[:, None] > 0)
    # Sample ids: graph nodes keep 0..V-1, inner points get V, V+1, ...
    inner = (k > 0) & (k < pieces[edge_of])
    ids = np.empty(len(k), dtype=np.int64)
    ids[k == 0] = start
    ids[k == pieces[edge_of]] = end
    ids[inner] = n_nodes + np.arange(int(inner.sum()))
    xy = np.vstack([node_xy, pts[inner]])
    tangents = np.vstack([np.zeros_like(node_xy), tangent[inner]])
    last = k == pieces[edge_of]
    seg = np.column_stack([ids[~last], ids[np.flatnonzero(~last) + 1]])
    seg_m = (length / pieces)[edge_of[~last]]
    n = len(xy)
    adj = coo_matrix((np.concatenate([seg_m, seg_m]),
                      (np.concatenate([seg[:, 0], seg[:, 1]]),
                       np.concatenate([seg[:, 1], seg[:, 0]]))), shape=(n, n)).tocsr()
    seeds = np.zeros(0, dtype=np.int64)
    if seed_spacing_m is not None:
        n_seed = np.where(length >= seed_spacing_m / 2,
                          np.maximum(1, np.floor(length / seed_spacing_m)), 0).astype(np.int64)
        e = np.repeat(np.arange(len(edges)), n_seed)
        j = np.arange(len(e)) - (np.cumsum(n_seed) - n_seed)[e]
        frac = (j + 1) / (n_seed[e] + 1)
        kk = np.rint(frac * pieces[e]).astype(np.int64)  # nearest sample on the chain
        seeds = ids[first[e] + kk]
    return _Samples(xy, tangents, seg, seg_m, adj, seeds)


def _directions_agree(a: np.ndarray, b: np.ndarray, max_angle_deg: float) -> np.ndarray:
    """True where unit directions (K, 2) differ by <= the angle, ignoring orientation.

    A zero direction (a graph node) agrees with everything.
    """
    cos = np.abs(np.einsum("ij,ij->i", a, b))
    wild = ~(a.any(axis=1) & b.any(axis=1))
    agree: np.ndarray = wild | (cos >= math.cos(math.radians(max_angle_deg)) - 1e-12)
    return agree


def _seed_directions(gt: _Samples, seeds: np.ndarray) -> np.ndarray:
    """(S, 2, 2) unit directions of the two chords meeting at each seed (zeros at nodes).

    A seed agrees with a proposal segment if either chord does, so a seed on a sharp bend
    (where the central-difference tangent points nowhere useful) still finds its road.
    """
    out = np.zeros((len(seeds), 2, 2))
    for row, s in enumerate(seeds.tolist()):
        nbrs = gt.adj.indices[gt.adj.indptr[s] : gt.adj.indptr[s + 1]]
        if gt.tangent[s].any() and len(nbrs) == 2:
            for col, n in enumerate(nbrs.tolist()):
                d = gt.xy[s] - gt.xy[n]
                norm = float(np.hypot(*d))
                out[row, col] = d / norm if norm > 0 else 0.0
    return out


def _pair_seeds(
    seeds_xy: np.ndarray, seeds_dir: np.ndarray, prop: _Samples, params: TopoParams
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest proposal segment of each seed within ``match_m`` and ``seed_angle_deg``.

    Args:
        seeds_xy: (S, 2) seed coordinates, metres.
        seeds_dir: (S, 2, 2) from :func:`_seed_directions`.
        prop: the proposal's samples.
        params: see :class:`TopoParams`.

    Returns:
        The segment index (-1: none) and the position along it as a fraction from its first
        sample, for each seed.
    """
    seg_idx = np.full(len(seeds_xy), -1, dtype=np.int64)
    frac = np.zeros(len(seeds_xy))
    if len(prop.seg) == 0 or len(seeds_xy) == 0:
        return seg_idx, frac
    a, b = prop.xy[prop.seg[:, 0]], prop.xy[prop.seg[:, 1]]
    half = float(np.max(np.hypot(*(b - a).T))) / 2
    hits = cKDTree((a + b) / 2).query_ball_point(seeds_xy, params.match_m + half + 1e-9)
    counts = np.array([len(h) for h in hits], dtype=np.int64)
    if counts.sum() == 0:
        return seg_idx, frac
    si = np.repeat(np.arange(len(seeds_xy)), counts)
    sj = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits if h])
    d = b[sj] - a[sj]
    dd = np.einsum("ij,ij->i", d, d)
    t = np.clip(np.einsum("ij,ij->i", seeds_xy[si] - a[sj], d) / np.where(dd > 0, dd, 1), 0, 1)
    dist = np.hypot(*(a[sj] + t[:, None] * d - seeds_xy[si]).T)
    unit = d / np.where(dd > 0, np.sqrt(dd), 1)[:, None]
    angle = params.seed_angle_deg
    ok = (dist <= params.match_m) & (_directions_agree(seeds_dir[si, 0], unit, angle)
                                     | _directions_agree(seeds_dir[si, 1], unit, angle))
    si, sj, t, dist = si[ok], sj[ok], t[ok], dist[ok]
    order = np.lexsort((sj, dist, si))  # per seed, nearest first (ties: lowest segment)
    si, sj, t = si[order], sj[order], t[order]
    first = np.flatnonzero(np.r_[True, si[1:] != si[:-1]]) if len(si) else np.zeros(0, int)
    seg_idx[si[first]] = sj[first]
    frac[si[first]] = t[first]
    return seg_idx, frac


def _candidate_pairs(prop: _Samples, gt: _Samples, params: TopoParams) -> np.ndarray:
    """(P, 2) int64 (marble, hole) pairs within ``match_m`` and ``max_angle_deg``."""
    if len(prop.xy) == 0 or len(gt.xy) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    near = cKDTree(prop.xy).sparse_distance_matrix(cKDTree(gt.xy), params.match_m,
                                                   output_type="ndarray")
    i, j = near["i"].astype(np.int64), near["j"].astype(np.int64)
    ok = _directions_agree(prop.tangent[i], gt.tangent[j], params.max_angle_deg)
    return np.column_stack([i[ok], j[ok]])


def _match_count(pairs: np.ndarray, marbles: np.ndarray, holes: np.ndarray) -> int:
    """Size of a maximum one-to-one matching among the active marbles and holes."""
    keep = marbles[pairs[:, 0]] & holes[pairs[:, 1]]
    if not keep.any():
        return 0
    rows, r_inv = np.unique(pairs[keep, 0], return_inverse=True)
    cols, c_inv = np.unique(pairs[keep, 1], return_inverse=True)
    graph = csr_matrix((np.ones(len(r_inv)), (r_inv, c_inv)), shape=(len(rows), len(cols)))
    match = maximum_bipartite_matching(graph, perm_type="column")
    return int((match >= 0).sum())


def _check(params: TopoParams) -> None:
    for name in ("radius_m", "interval_m", "match_m", "seed_spacing_m"):
        if getattr(params, name) <= 0:
            raise InputError(f"TOPO {name} is {getattr(params, name)}; expected a distance > 0 m.")
    for name in ("max_angle_deg", "seed_angle_deg"):
        if not 0 < getattr(params, name) <= 90:
            raise InputError(f"TOPO {name} is {getattr(params, name)}; expected an angle in "
                             "(0, 90] degrees.")
    if params.max_seeds < 1:
        raise InputError(f"TOPO max_seeds is {params.max_seeds}; expected at least 1.")


def topo(gt: nx.Graph, prop: nx.Graph, params: TopoParams = TopoParams()) -> TopoResult:
    """Compute TOPO precision, recall and F1 of a proposal road graph against ground truth.

    Identical graphs score 1; an empty proposal scores 0; a proposal shifted by more than
    ``match_m`` scores 0. Deterministic: seeds are placed regularly and only sampled (with
    ``params.seed``) above ``max_seeds``. Cost: one Dijkstra per seed on each side, limited
    to ``radius_m``, and one bipartite matching per seed; about 0.1-0.3 s for a 400 m
    SpaceNet tile (5 km of road), roughly linear in seeds x road length within ``radius_m``.

    Args:
        gt: ground-truth graph from :func:`roadx.metrics.graph.lines_to_graph` (metric CRS,
            metres).
        prop: proposal graph in the same CRS.
        params: see :class:`TopoParams`.

    Returns:
        :class:`TopoResult`.

    Raises:
        InputError: a non-positive distance, an angle outside (0, 90] or ``max_seeds`` < 1.

    References:
        J. Biagioni, J. Eriksson, "Inferring road maps from GPS traces: survey and comparative
        evaluation", Transportation Research Record 2291, 2012 (TRB 2012); the variant of
        S. He et al., "Sat2Graph: road graph extraction through graph-tensor encoding", ECCV
        2020 (``metrics/topo``), also used by C. Hetang et al., "Segment anything model for
        road network graph extraction" (SAM-Road), CVPRW 2024.

    Example:
        >>> from shapely.geometry import LineString
        >>> from roadx.metrics.graph import lines_to_graph
        >>> g = lines_to_graph([LineString([(0, 0), (400, 0)]), LineString([(200, -100), (200, 100)])])
        >>> r = topo(g, g)
        >>> r.precision, r.recall, r.f1
        (1.0, 1.0, 1.0)
    """
    _check(params)
    g = _sample(gt, params.interval_m, params.seed_spacing_m)
    p = _sample(prop, params.interval_m, None)
    seeds = g.seeds
    n_all = len(seeds)
    sampled = n_all > params.max_seeds
    if sampled:
        rng = np.random.default_rng(params.seed)
        seeds = seeds[np.sort(rng.choice(n_all, params.max_seeds, replace=False))]
    seg_idx, frac = _pair_seeds(g.xy[seeds], _seed_directions(g, seeds), p, params)
    pairs = _candidate_pairs(p, g, params)
    r = params.radius_m
    prec_sum = rec_sum = 0.0
    n_matched_seeds = n_marbles = n_marbles_hit = n_holes = n_holes_hit = 0
    for lo in range(0, len(seeds), _CHUNK):
        chunk = np.arange(lo, min(lo + _CHUNK, len(seeds)))
        holes = dijkstra(g.adj, directed=False, indices=seeds[chunk], limit=r) <= r
        n_holes += int(holes.sum())
        paired = chunk[seg_idx[chunk] >= 0]
        if paired.size == 0:
            continue
        s = seg_idx[paired]
        a, b, w, t = p.seg[s, 0], p.seg[s, 1], p.seg_m[s], frac[paired]
        from_ab = dijkstra(p.adj, directed=False, indices=np.concatenate([a, b]), limit=r)
        d_prop = np.minimum(from_ab[: len(s)] + (t * w)[:, None],
                            from_ab[len(s):] + ((1 - t) * w)[:, None])
        for row, i in enumerate(paired):
            marbles = d_prop[row] <= r
            hole_row = holes[i - lo]
            n_m, n_h = int(marbles.sum()), int(hole_row.sum())
            if n_m == 0 or n_h == 0:
                continue
            k = _match_count(pairs, marbles, hole_row)
            n_matched_seeds += 1
            prec_sum += k / n_m
            rec_sum += k / n_h
            n_marbles += n_m
            n_marbles_hit += k
            n_holes_hit += k
    precision = prec_sum / n_matched_seeds if n_matched_seeds else 0.0
    recall = rec_sum / len(seeds) if len(seeds) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    logger.debug("TOPO P %.4f R %.4f F1 %.4f (%d of %d seeds matched)",
                 precision, recall, f1, n_matched_seeds, len(seeds))
    return TopoResult(
        precision=precision,
        recall=recall,
        f1=f1,
        n_seeds=len(seeds),
        n_seeds_matched=n_matched_seeds,
        n_marbles=n_marbles,
        n_marbles_matched=n_marbles_hit,
        n_holes=n_holes,
        n_holes_matched=n_holes_hit,
        sampled=sampled,
        params=params,
    )
