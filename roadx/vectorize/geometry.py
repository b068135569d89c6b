"""Pixel paths → lengths in metres and georeferenced LineString / Point layers.

Coordinates: a pixel path is a list of ``(row, col)`` pixel indices. It is smoothed with a
short moving average (5 px, end points fixed) to remove the staircase of an 8-connected
skeleton, which otherwise makes lengths of oblique roads up to ~8 % too long. Lengths are
measured on the smoothed path with the per-axis pixel size, so they are metres whatever the
CRS (also for EPSG:4326, where a degree is not a metre).

Simplification (Douglas–Peucker, tolerance ``simplify_m``) is done in *metric pixel space*
(``x = col * col_m``, ``y = row * row_m``), where the tolerance is in metres for any CRS, and
only then are the kept vertices mapped through the affine ``transform`` at pixel centres
(``col + 0.5``, ``row + 0.5``). DP keeps each line's first and last vertex, and the nodes go
through the same arithmetic, so an edge's end points equal its nodes' points exactly.

References:
    Douglas & Peucker, Cartographica 1973 (via ``shapely.simplify``); pipeline-anchors.md §5
    items 8, 10 and 11.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely

from roadx.vectorize.params import PixelSize
from roadx.vectorize.skeleton import SkeletonPixels

EDGE_COLUMNS = (
    "id", "u", "v", "length_m", "prob_mean", "prob_min", "width_m", "bridged", "bridged_m"
)
NODE_COLUMNS = ("id", "degree", "kind", "cut")
_SMOOTH_HALF_PX = 2


class AffineLike(Protocol):
    """An affine pixel → CRS transform with the coefficient names of ``affine.Affine``.

    ``x = a * col + b * row + c`` and ``y = d * col + e * row + f`` (GDAL/rasterio order).
    """

    @property
    def a(self) -> float: ...
    @property
    def b(self) -> float: ...
    @property
    def c(self) -> float: ...
    @property
    def d(self) -> float: ...
    @property
    def e(self) -> float: ...
    @property
    def f(self) -> float: ...


@dataclass
class RoadNetwork:
    """A vectorised road network: one LineString per edge and one Point per node.

    Attributes:
        edges: columns ``id, u, v`` (int64; ``u``/``v`` are node ids), ``length_m``
            (float64, metres along the skeleton path before simplification), ``prob_mean``,
            ``prob_min`` (float64 road probability along the path), ``width_m`` (float64,
            metres: 2 x median distance from the path to the mask edge - 1 pixel),
            ``bridged`` (bool: the line was inferred across a gap or snapped onto a road by
            :mod:`~roadx.vectorize.repair`; each bridge is a line of its own),
            ``bridged_m`` (float64, metres of the line that were inferred), ``geometry`` (LineString from node ``u`` to node ``v``; closed when u == v).
        nodes: columns ``id`` (int64), ``degree`` (int64; a self-loop counts 2), ``kind``
            (``"junction"`` for degree >= 3, ``"end"`` for 1, ``"other"`` for degree 2: the
            node of a ring, or where a bridged line meets the road it continues), ``cut`` (bool, a node on the scene edge or nodata: the road was cut
            there), ``geometry`` (Point).
    """

    edges: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame

    @property
    def length_m(self) -> float:
        """Total road length in metres."""
        return float(self.edges["length_m"].sum()) if len(self.edges) else 0.0


def smooth_paths(rows: np.ndarray, cols: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Moving-average concatenated pixel paths (window 5, shrinking at path ends).

    Each path's first and last point stay fixed and no window crosses into the next path.

    Args:
        rows: ``(N,)`` pixel rows of all paths, one after another.
        cols: ``(N,)`` pixel columns.
        sizes: ``(P,)`` number of points of each path (``sizes.sum() == N``).

    Returns:
        ``(N, 2)`` float64 ``(row, col)`` coordinates.

    Example:
        >>> pts = smooth_paths(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 2, 3, 4]), np.array([5]))
        >>> pts[:, 0].tolist()
        [0.0, 0.3333333333333333, 0.8, 1.3333333333333333, 2.0]
    """
    pts = np.column_stack([rows, cols]).astype(np.float64)
    starts = np.cumsum(sizes) - sizes
    at = np.arange(pts.shape[0])
    idx = at - np.repeat(starts, sizes)  # position inside its own path
    half = np.minimum(np.minimum(idx, np.repeat(sizes, sizes) - 1 - idx), _SMOOTH_HALF_PX)
    csum = np.vstack([np.zeros((1, 2)), np.cumsum(pts, axis=0)])
    return (csum[at + half + 1] - csum[at - half]) / (2 * half + 1)[:, None]


def polyline_lengths_m(pts: np.ndarray, sizes: np.ndarray, pixel: PixelSize) -> np.ndarray:
    """Lengths in metres of concatenated ``(row, col)`` polylines in pixel units.

    Args:
        pts: ``(N, 2)`` float ``(row, col)`` points of all polylines, one after another.
        sizes: ``(P,)`` number of points of each polyline.
        pixel: ground pixel size in metres.

    Returns:
        ``(P,)`` float64 lengths in metres (0 for a polyline of one point).
    """
    step = np.diff(pts, axis=0) * np.array([pixel.row_m, pixel.col_m])
    run = np.concatenate([[0.0], np.cumsum(np.hypot(step[:, 0], step[:, 1]))])
    starts = np.cumsum(sizes) - sizes
    return run[starts + sizes - 1] - run[starts]


def path_lengths_m(paths: list[SkeletonPixels], pixel: PixelSize) -> np.ndarray:
    """Lengths in metres of pixel paths, measured on the smoothed paths (batched)."""
    if not paths:
        return np.empty(0)
    sizes = np.array([len(p) for p in paths])
    rows = np.concatenate([p.rows for p in paths])
    cols = np.concatenate([p.cols for p in paths])
    return polyline_lengths_m(smooth_paths(rows, cols, sizes), sizes, pixel)


def network_from_graph(
    graph: nx.MultiGraph,
    *,
    transform: AffineLike | None,
    crs: Any,
    pixel: PixelSize,
    simplify_m: float,
) -> RoadNetwork:
    """Turn a pruned pixel graph into georeferenced edge and node layers.

    Args:
        graph: nodes with ``row``/``col`` (float pixel position) and ``cut``; edges with
            ``path`` (:class:`SkeletonPixels`) and ``start`` (the node the path begins at).
        transform: pixel → CRS affine (``None``: pixel coordinates, x = col, y = row).
        crs: CRS of ``transform`` (anything pyproj accepts, or ``None``).
        pixel: ground pixel size in metres.
        simplify_m: Douglas–Peucker tolerance in metres (0: no simplification).

    Returns:
        The network; node ids are ``0..N-1`` in (row, col) order, edges are ordered by
        ``(u, v)``.
    """
    order = sorted(graph.nodes, key=lambda n: (graph.nodes[n]["row"], graph.nodes[n]["col"]))
    node_id = {n: k for k, n in enumerate(order)}
    node_pos = np.array([[graph.nodes[n]["row"], graph.nodes[n]["col"]] for n in order])
    node_pos = node_pos.reshape(-1, 2)
    ends, paths = [], []
    for a, b, data in graph.edges(data=True):
        u, v = (a, b) if data["start"] == a else (b, a)
        ends.append((node_id[u], node_id[v]))
        paths.append(data["path"])
    by_ends = sorted(range(len(ends)), key=lambda k: ends[k])
    uv = np.array([ends[k] for k in by_ends], dtype=np.int64).reshape(-1, 2)
    paths = [paths[k] for k in by_ends]
    edges = _edge_frame(
        uv, paths, node_pos, transform=transform, crs=crs, pixel=pixel, simplify_m=simplify_m
    )
    degree = np.array([graph.degree(n) for n in order], dtype=np.int64)
    kind = np.where(degree >= 3, "junction", np.where(degree == 1, "end", "other"))
    nodes = gpd.GeoDataFrame(
        {
            "id": np.arange(len(order), dtype=np.int64),
            "degree": degree,
            "kind": pd.Series(kind, dtype=object),
            "cut": np.array([bool(graph.nodes[n]["cut"]) for n in order], dtype=bool),
        },
        geometry=gpd.GeoSeries(
            _to_crs(shapely.points(_metric(node_pos, pixel)), transform, pixel), crs=crs
        ),
        crs=crs,
    )
    return RoadNetwork(edges=edges, nodes=nodes)


def _bridged_lengths_m(
    pts: np.ndarray, bridged: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
    pixel: PixelSize,
) -> np.ndarray:
    """Metres of each polyline along steps that touch a bridged pixel."""
    step = np.diff(pts, axis=0) * np.array([pixel.row_m, pixel.col_m])
    step_m = np.hypot(step[:, 0], step[:, 1]) * (bridged[:-1] | bridged[1:])
    run = np.concatenate([[0.0], np.cumsum(step_m)])
    return run[starts + sizes - 1] - run[starts]


def _metric(pts: np.ndarray, pixel: PixelSize) -> np.ndarray:
    """``(K, 2)`` (row, col) pixels → ``(K, 2)`` (x, y) metres in pixel space."""
    return np.column_stack([pts[:, 1] * pixel.col_m, pts[:, 0] * pixel.row_m])


def _to_crs(geoms: np.ndarray, transform: AffineLike | None, pixel: PixelSize) -> np.ndarray:
    """Map geometries from metric pixel space to the CRS through pixel centres."""

    def forward(xy: np.ndarray) -> np.ndarray:
        col = xy[:, 0] / pixel.col_m + 0.5
        row = xy[:, 1] / pixel.row_m + 0.5
        if transform is None:
            return np.column_stack([col, row])
        t = transform
        return np.column_stack([t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f])

    return shapely.transform(geoms, forward)


def _edge_frame(
    uv: np.ndarray,
    paths: list[SkeletonPixels],
    node_pos: np.ndarray,
    *,
    transform: AffineLike | None,
    crs: Any,
    pixel: PixelSize,
    simplify_m: float,
) -> gpd.GeoDataFrame:
    """Build the edges layer: smooth, snap ends to nodes, measure, simplify, georeference."""
    n = len(paths)
    frame: dict[str, np.ndarray] = {
        "id": np.arange(n, dtype=np.int64), "u": uv[:, 0], "v": uv[:, 1]
    }
    if n == 0:
        for name in EDGE_COLUMNS[3:]:
            frame[name] = np.empty(0, dtype=bool if name == "bridged" else np.float64)
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    sizes = np.array([len(p) for p in paths])
    starts = np.cumsum(sizes) - sizes
    joined = SkeletonPixels.concat(paths)
    pts = smooth_paths(joined.rows, joined.cols, sizes)
    pts[starts] = node_pos[uv[:, 0]]
    pts[starts + sizes - 1] = node_pos[uv[:, 1]]
    frame["length_m"] = polyline_lengths_m(pts, sizes, pixel)
    prob = joined.prob.astype(np.float64)
    frame["prob_mean"] = np.add.reduceat(prob, starts) / sizes
    frame["prob_min"] = np.minimum.reduceat(prob, starts)
    owner = np.repeat(np.arange(n), sizes)
    edge_sorted = joined.edge_m[np.lexsort((joined.edge_m, owner))].astype(np.float64)
    median = 0.5 * (edge_sorted[starts + (sizes - 1) // 2] + edge_sorted[starts + sizes // 2])
    frame["width_m"] = np.maximum(2.0 * median - pixel.gsd_m, pixel.gsd_m)
    # a line is bridged when its inner pixels are (its end pixels may be a junction on a bridge)
    inner = joined.bridged.copy()
    inner[starts] = inner[starts + sizes - 1] = False
    two_px = sizes <= 2
    frame["bridged"] = np.logical_or.reduceat(inner, starts)
    frame["bridged"][two_px] = np.logical_and.reduceat(joined.bridged, starts)[two_px]
    frame["bridged_m"] = _bridged_lengths_m(pts, joined.bridged, starts, sizes, pixel)
    geoms = shapely.linestrings(_metric(pts, pixel), indices=owner)
    if simplify_m > 0:
        simple = shapely.simplify(geoms, simplify_m, preserve_topology=False)
        collapsed = shapely.is_closed(geoms) & (shapely.get_num_coordinates(simple) < 4)
        simple[collapsed] = shapely.simplify(geoms[collapsed], simplify_m, preserve_topology=True)
        geoms = simple
    geoms = _to_crs(geoms, transform, pixel)
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)
