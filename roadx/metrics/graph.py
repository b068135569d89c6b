"""Road lines to a noded networkx graph, and summary statistics of a road network.

Lines are noded at every intersection and shared endpoint (``shapely.unary_union``), chains
through degree-2 points are merged (``shapely.line_merge``), and each resulting piece becomes
one edge between its two end nodes. The graph is a simple :class:`networkx.Graph`: a second
edge between the same two nodes (parallel roads, a loop) is split at its midpoint so that no
geometry is lost. Coordinates must be in a metric CRS: edge weights are lengths in metres.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.ops import substring
from shapely.geometry.base import BaseGeometry

# Node keys are coordinates rounded to this many decimals (1 µm in a metric CRS), so pieces
# that end at the same point after floating-point noise share one node.
_KEY_DECIMALS = 6
# Noding precision (metres): snap-rounding on this grid makes an end point that lies on
# another line (up to floating-point error) a node of that line.
_GRID_M = 1e-3


def explode_lines(geoms: Iterable[BaseGeometry | None]) -> list[LineString]:
    """Return the non-empty LineString parts of (Multi)LineStrings, polygons' rings ignored.

    Args:
        geoms: shapely geometries (None, empty and non-line geometries are dropped).

    Returns:
        Single LineStrings with a length > 0.

    Example:
        >>> from shapely.geometry import MultiLineString
        >>> len(explode_lines([MultiLineString([[(0, 0), (1, 0)], [(2, 0), (3, 0)]]), None]))
        2
    """
    out: list[LineString] = []
    for geom in geoms:
        if geom is None or geom.is_empty:
            continue
        for part in shapely.get_parts(geom):
            if isinstance(part, LineString) and part.length > 0:
                out.append(part)
            elif part.geom_type in ("MultiLineString", "GeometryCollection"):
                out.extend(explode_lines([part]))
    return out


def _key(x: float, y: float) -> tuple[float, float]:
    return (round(x, _KEY_DECIMALS), round(y, _KEY_DECIMALS))


class _Builder:
    """Adds line pieces to a graph, creating nodes at rounded end coordinates."""

    def __init__(self) -> None:
        self.graph = nx.Graph()
        self._ids: dict[tuple[float, float], int] = {}

    def node(self, x: float, y: float) -> int:
        key = _key(x, y)
        if key not in self._ids:
            nid = len(self._ids)
            self._ids[key] = nid
            self.graph.add_node(nid, x=float(x), y=float(y))
        return self._ids[key]

    def add(self, line: LineString) -> None:
        (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
        u, v = self.node(x0, y0), self.node(x1, y1)
        if u == v or self.graph.has_edge(u, v):
            # A loop or a parallel edge: split so the simple graph keeps both geometries.
            length = line.length
            cuts = [length / 3, 2 * length / 3] if u == v else [length / 2]
            for piece in _split_at(line, cuts):
                if piece.length > 0:
                    self.add(piece)
            return
        self.graph.add_edge(u, v, geometry=line, length_m=float(line.length), start=u)


def _split_at(line: LineString, cuts_m: list[float]) -> list[LineString]:
    """Split a line at distances ``cuts_m`` (sorted, metres from its start)."""
    bounds = [0.0, *cuts_m, line.length]
    return [
        substring(line, a, b)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b - a > 0
    ]


def snap_endpoints(lines: list[LineString], tolerance_m: float) -> list[LineString]:
    """Move line end points lying within ``tolerance_m`` of another line onto that line.

    This joins T-junctions broken by coordinate rounding (GeoJSON's 7 decimals of a degree are
    about 1 cm) or by a vectoriser stopping just short of a road.

    Args:
        lines: LineStrings in a metric CRS.
        tolerance_m: largest gap closed, metres (0 disables snapping).

    Returns:
        New list of LineStrings (unchanged lines are the same objects).

    Example:
        >>> a, b = LineString([(0, 0), (10, 0)]), LineString([(5, 0.05), (5, 8)])
        >>> snap_endpoints([a, b], 0.1)[1].coords[0]
        (5.0, 0.0)
    """
    if tolerance_m <= 0 or len(lines) < 2:
        return list(lines)
    starts = shapely.points([line.coords[0] for line in lines])
    ends = shapely.points([line.coords[-1] for line in lines])
    tree = shapely.STRtree(lines)
    coords = [list(line.coords) for line in lines]
    changed = set()
    for k, points in ((0, starts), (-1, ends)):
        i_pt, i_line = tree.query(points, predicate="dwithin", distance=tolerance_m)
        best: dict[int, tuple[float, int]] = {}
        for i, j in zip(i_pt.tolist(), i_line.tolist(), strict=True):
            if i == j:
                continue
            d = float(shapely.distance(points[i], lines[j]))
            if d > 0 and (i not in best or d < best[i][0]):
                best[i] = (d, j)
        for i, (_, j) in best.items():
            target = lines[j]
            q = shapely.line_interpolate_point(target, shapely.line_locate_point(target, points[i]))
            coords[i][k] = q.coords[0]
            changed.add(i)
    return [LineString(coords[i]) if i in changed else line for i, line in enumerate(lines)]


def lines_to_graph(geoms: Iterable[BaseGeometry | None], *, snap_m: float = 0.25) -> nx.Graph:
    """Build a road graph from lines, noded at intersections and shared endpoints.

    Crossings (including bridges drawn as crossing lines) become junctions; an end point
    within ``snap_m`` of another line is joined to it first (:func:`snap_endpoints`). Degree-2
    chains are merged, so nodes are junctions (degree >= 3), dead ends (degree 1) or
    loop/parallel split points (degree 2). Coordinates are noded on a 1 mm grid.

    Args:
        geoms: (Multi)LineStrings in a metric CRS (metres). None/empty geometries are ignored.
        snap_m: end points closer than this to another line are joined to it, metres.

    Returns:
        ``networkx.Graph`` with integer nodes (attributes ``x``, ``y`` in CRS units) and edges
        with ``geometry`` (LineString starting at node ``start``) and ``length_m``.

    Example:
        >>> from shapely.geometry import LineString
        >>> g = lines_to_graph([LineString([(0, 0), (100, 0)]), LineString([(50, -50), (50, 50)])])
        >>> g.number_of_nodes(), g.number_of_edges(), sorted(d for _, d in g.degree())
        (5, 4, [1, 1, 1, 1, 4])
    """
    lines = explode_lines(geoms)
    builder = _Builder()
    if not lines:
        return builder.graph
    lines = snap_endpoints(lines, snap_m)
    noded = shapely.unary_union(
        shapely.MultiLineString([list(line.coords) for line in lines]), grid_size=_GRID_M
    )
    merged = shapely.line_merge(noded)
    for piece in explode_lines([merged]):
        builder.add(piece)
    return builder.graph


def node_points(graph: nx.Graph, nodes: Iterable[int] | None = None) -> np.ndarray:
    """Return node coordinates as an (N, 2) float64 array (x, y) in the graph's CRS units."""
    ids = list(graph.nodes) if nodes is None else list(nodes)
    if not ids:
        return np.zeros((0, 2))
    return np.array([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in ids], dtype=float)


def junction_nodes(graph: nx.Graph, *, min_degree: int = 3) -> list[int]:
    """Return the nodes of degree >= ``min_degree`` (road junctions)."""
    return [n for n, d in graph.degree() if d >= min_degree]


@dataclass(frozen=True, slots=True)
class NetworkSummary:
    """Size of a road network: total length, edges, components, junctions, dead ends."""

    length_km: float
    n_edges: int
    n_components: int
    n_junctions: int
    n_dead_ends: int

    def to_dict(self) -> dict[str, float | int]:
        """As a JSON-able dict."""
        return {
            "length_km": self.length_km,
            "n_edges": self.n_edges,
            "n_components": self.n_components,
            "n_junctions": self.n_junctions,
            "n_dead_ends": self.n_dead_ends,
        }


def summarize(graph: nx.Graph) -> NetworkSummary:
    """Summarise a graph built by :func:`lines_to_graph` (lengths from ``length_m``).

    Example:
        >>> from shapely.geometry import LineString
        >>> summarize(lines_to_graph([LineString([(0, 0), (1000, 0)])]))
        NetworkSummary(length_km=1.0, n_edges=1, n_components=1, n_junctions=0, n_dead_ends=2)
    """
    length_m = sum(d["length_m"] for _, _, d in graph.edges(data=True))
    degrees = [d for _, d in graph.degree()]
    return NetworkSummary(
        length_km=float(length_m) / 1000.0,
        n_edges=graph.number_of_edges(),
        n_components=nx.number_connected_components(graph) if graph.number_of_nodes() else 0,
        n_junctions=sum(1 for d in degrees if d >= 3),
        n_dead_ends=sum(1 for d in degrees if d == 1),
    )
