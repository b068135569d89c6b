"""Merge the road networks of several scenes into one, joining lines across scene borders.

Each scene's network ends where the scene ends: a road that runs on into the next scene
stops at a *cut* node (``cut`` True, degree 1: on the scene edge or at nodata). In the
neighbouring scene the same road starts at its own cut node, about one pixel away (the
pixel centres on either side of the common border). :func:`merge_networks` pairs such cut
ends of different scenes that lie within ``join_m`` of each other (mutual nearest
neighbours, so a cut end joins at most one other), moves both to their midpoint, and then
merges the two lines meeting there into one line (as the vectorizer's degree-2 contraction
does within a scene), repeatedly, so a road crossing several scenes becomes one line.

The within-scene row-band join (:class:`~roadx.vectorize.graph.GraphStitcher`) does not fit
here: it joins pixel paths on one shared pixel grid, whereas separate scenes have their
own grids (and may have been written with simplified geometry); the join here works on the
written lines in their common CRS.
"""

import math
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from roadx.errors import InputError
from roadx.vectorize.geometry import EDGE_COLUMNS, NODE_COLUMNS, RoadNetwork

DEFAULT_JOIN_M = 3.0
"""Default distance (metres) within which cut ends of adjacent scenes are joined."""


def merge_networks(networks: Sequence[RoadNetwork], *, join_m: float = DEFAULT_JOIN_M,
                   names: Sequence[str] | None = None) -> RoadNetwork:
    """One network from the networks of several scenes.

    Args:
        networks: per-scene networks (``edges``/``nodes`` as :class:`RoadNetwork`). The
            result is in the CRS of the first; networks in other CRSs (neighbouring UTM
            zones) are reprojected into it. A geographic CRS is joined in its UTM zone and
            returned in itself. Networks without CRS (pixel space) merge only with each
            other.
        join_m: cut ends (``cut`` True, degree 1) of different scenes closer than this, in
            metres, are joined (>= 0; 0 joins only identical points).
        names: one name per network, stored in the column ``scene`` of edges and nodes
            (joined lines: the names of their parts, ``+``-separated); default ``0, 1, ...``.

    Returns:
        The merged network: edges and nodes renumbered (``id``, ``u``, ``v``), joined lines
        with ``length_m`` and ``bridged_m`` summed (plus the join gap), ``prob_mean`` and
        ``width_m`` length-weighted, ``prob_min`` the minimum, ``bridged`` if any part was;
        the columns of :data:`~roadx.vectorize.geometry.EDGE_COLUMNS` plus ``scene``.

    Raises:
        roadx.errors.InputError: networks with and without CRS, ``join_m < 0``, or
            ``names`` of another length.
    """
    if join_m < 0 or not math.isfinite(join_m):
        raise InputError(f"join distance must be >= 0 m, got {join_m}")
    names = [str(i) for i in range(len(networks))] if names is None else list(names)
    if len(names) != len(networks):
        raise InputError(f"{len(names)} names for {len(networks)} networks")
    crs = _common_crs(networks, names)
    edge_parts, node_parts, offset = [], [], 0
    for net, name in zip(networks, names, strict=True):
        nodes, edges = net.nodes.copy(), net.edges.copy()
        if crs is not None and not edges.crs.equals(crs):  # another zone: reproject
            nodes, edges = nodes.to_crs(crs), edges.to_crs(crs)
        nodes["scene"], edges["scene"] = name, name
        nodes["id"] = nodes["id"].astype("int64") + offset
        edges["u"] = edges["u"].astype("int64") + offset
        edges["v"] = edges["v"].astype("int64") + offset
        offset = int(nodes["id"].max()) + 1 if len(nodes) else offset
        edge_parts.append(edges)
        node_parts.append(nodes)
    edges = _concat(edge_parts, crs, [*EDGE_COLUMNS, "scene"])
    nodes = _concat(node_parts, crs, [*NODE_COLUMNS, "scene"])
    metric = crs is not None and gpd.GeoSeries([], crs=crs).crs.is_geographic
    work_crs = nodes.estimate_utm_crs() if metric and len(nodes) else None
    pairs = _join_pairs(nodes.to_crs(work_crs) if work_crs else nodes, join_m)
    return _apply_joins(edges, nodes, pairs, work_crs)


def _common_crs(networks: Sequence[RoadNetwork], names: Sequence[str]) -> object:
    """The CRS of the first network that has one; the others are reprojected into it.

    Raises:
        roadx.errors.InputError: some networks have a CRS and others none (pixel space).
    """
    crss = [net.edges.crs if net.edges.crs is not None else net.nodes.crs for net in networks]
    with_crs = [c for c in crss if c is not None]
    if with_crs and len(with_crs) < len(crss):
        bare = names[crss.index(None)]
        raise InputError(f"cannot merge {bare} (no CRS, pixel coordinates) with georeferenced "
                         "networks; merge only georeferenced scenes")
    return with_crs[0] if with_crs else None


def _concat(parts: list[gpd.GeoDataFrame], crs: object, columns: list[str]) -> gpd.GeoDataFrame:
    frames = [p[[c for c in columns if c in p.columns] + ["geometry"]] for p in parts if len(p)]
    if not frames:
        return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=crs)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=crs)


def _join_pairs(nodes: gpd.GeoDataFrame, join_m: float) -> list[tuple[int, int]]:
    """Node ids ``(a, b)`` of cut ends of different scenes that are mutual nearest
    neighbours within ``join_m``."""
    ends = nodes[nodes["cut"].astype(bool) & (nodes["degree"] == 1)]
    if len(ends) < 2:
        return []
    xy = np.column_stack([ends.geometry.x.to_numpy(), ends.geometry.y.to_numpy()])
    scene = ends["scene"].to_numpy()
    ids = ends["id"].to_numpy()
    tree = cKDTree(xy)
    best: dict[int, tuple[float, int]] = {}
    for i, j in sorted(tree.query_pairs(join_m + 1e-9)):
        if scene[i] == scene[j]:
            continue
        d = float(np.hypot(*(xy[i] - xy[j])))
        for a, b in ((i, j), (j, i)):
            if a not in best or d < best[a][0]:
                best[a] = (d, b)
    return [(int(ids[i]), int(ids[j])) for i, (_, j) in sorted(best.items())
            if i < j and best.get(j, (0, -1))[1] == i]


def _apply_joins(edges: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame,
                 pairs: list[tuple[int, int]], work_crs: object) -> RoadNetwork:
    """Move each joined pair to its midpoint and merge the lines through it."""
    crs = nodes.crs
    node_xy = {int(i): (g.x, g.y) for i, g in zip(nodes["id"], nodes.geometry, strict=True)}
    lines = {k: _EdgeRec.from_row(row) for k, row in enumerate(edges.itertuples(index=False))}
    at: dict[int, set[int]] = {}
    for k, e in lines.items():
        at.setdefault(e.u, set()).add(k)
        at.setdefault(e.v, set()).add(k)
    joined: set[int] = set()
    for a, b in pairs:
        mid = ((node_xy[a][0] + node_xy[b][0]) / 2, (node_xy[a][1] + node_xy[b][1]) / 2)
        (ka,), (kb,) = at.pop(a), at.pop(b)  # cut ends have degree 1
        gap = _distance(node_xy[a], node_xy[b], crs, work_crs)
        lines[ka].move_end(a, mid, gap / 2)
        lines[kb].move_end(b, mid, gap / 2)
        lines[kb].rename(b, a)
        node_xy[a] = mid
        at[a] = {ka, kb}
        joined.add(a)
        del node_xy[b]
    for n in sorted(joined):  # contract: where two lines meet, make them one
        ks = sorted(at[n])
        if len(ks) != 2:  # a ring closed by the join keeps its node
            continue
        ka, kb = ks
        merged = lines[ka].join(lines.pop(kb), n)
        del at[n], node_xy[n]
        for end in (merged.u, merged.v):
            at[end].discard(kb)
            at[end].add(ka)
        lines[ka] = merged
    return _frames(lines, nodes, node_xy, crs, joined)


def _distance(p: tuple[float, float], q: tuple[float, float], crs: object,
              work_crs: object) -> float:
    """Metres between two points of the network CRS."""
    if work_crs is None:
        return float(math.hypot(p[0] - q[0], p[1] - q[1]))
    pts = gpd.GeoSeries(shapely.points([p, q]), crs=crs).to_crs(work_crs)
    return float(pts.iloc[0].distance(pts.iloc[1]))


class _EdgeRec:
    """One line while merging: its end nodes, coordinates (u → v) and attributes."""

    def __init__(self, u: int, v: int, coords: np.ndarray, attrs: dict[str, object]) -> None:
        self.u, self.v, self.coords, self.attrs = u, v, coords, attrs

    @classmethod
    def from_row(cls, row: tuple) -> "_EdgeRec":
        attrs = row._asdict()  # type: ignore[attr-defined]
        coords = np.asarray(attrs.pop("geometry").coords, dtype=np.float64)
        return cls(int(attrs["u"]), int(attrs["v"]), coords, attrs)

    def move_end(self, node: int, xy: tuple[float, float], extra_m: float) -> None:
        """Move the end at ``node`` to ``xy`` (the line grows by about ``extra_m``)."""
        if self.u == node:
            self.coords[0] = xy
        if self.v == node:
            self.coords[-1] = xy
        self.attrs["length_m"] = float(self.attrs["length_m"]) + extra_m

    def rename(self, old: int, new: int) -> None:
        if self.u == old:
            self.u = new
        if self.v == old:
            self.v = new

    def join(self, other: "_EdgeRec", node: int) -> "_EdgeRec":
        """This line and ``other``, which meet at ``node``, as one line."""
        a = self.coords if self.v == node else self.coords[::-1]
        start = self.u if self.v == node else self.v
        b = other.coords if other.u == node else other.coords[::-1]
        end = other.v if other.u == node else other.u
        la, lb = float(self.attrs["length_m"]), float(other.attrs["length_m"])
        total = la + lb

        def weighted(name: str) -> float:
            return (float(self.attrs[name]) * la + float(other.attrs[name]) * lb) / total \
                if total > 0 else float(self.attrs[name])

        attrs = dict(self.attrs)
        attrs.update(
            length_m=total, prob_mean=weighted("prob_mean"), width_m=weighted("width_m"),
            prob_min=min(float(self.attrs["prob_min"]), float(other.attrs["prob_min"])),
            bridged=bool(self.attrs["bridged"]) or bool(other.attrs["bridged"]),
            bridged_m=float(self.attrs["bridged_m"]) + float(other.attrs["bridged_m"]),
            scene="+".join(dict.fromkeys(
                str(self.attrs["scene"]).split("+") + str(other.attrs["scene"]).split("+"))),
        )
        return _EdgeRec(start, end, np.concatenate([a, b[1:]]), attrs)


def _frames(lines: dict[int, _EdgeRec], nodes: gpd.GeoDataFrame,
            node_xy: dict[int, tuple[float, float]], crs: object,
            joined: set[int]) -> RoadNetwork:
    """Renumbered edges and nodes frames of the merged lines (``joined``: nodes where
    scenes were joined, no longer cut)."""
    kept = nodes[nodes["id"].isin(list(node_xy))].copy()
    degree: dict[int, int] = {}
    for e in lines.values():
        degree[e.u] = degree.get(e.u, 0) + 1
        degree[e.v] = degree.get(e.v, 0) + 1
    kept = kept[kept["id"].isin(list(degree))].sort_values("id").reset_index(drop=True)
    new_id = {int(old): i for i, old in enumerate(kept["id"])}
    kept["degree"] = [degree[int(i)] for i in kept["id"]]
    kept["kind"] = np.where(kept["degree"] >= 3, "junction",
                            np.where(kept["degree"] == 1, "end", "other"))
    kept["cut"] = kept["cut"].astype(bool) & ~kept["id"].isin(list(joined))
    kept["id"] = np.arange(len(kept), dtype=np.int64)
    kept = kept.set_geometry(shapely.points([node_xy[old] for old in new_id]), crs=crs)
    rows = []
    for i, e in enumerate(sorted(lines.values(), key=lambda e: (min(new_id[e.u], new_id[e.v]),
                                                                 e.coords[0][0], e.coords[0][1]))):
        attrs = dict(e.attrs)
        attrs.update(id=i, u=new_id[e.u], v=new_id[e.v])
        attrs["geometry"] = shapely.linestrings(e.coords)
        rows.append(attrs)
    columns = [*EDGE_COLUMNS, "scene"]
    if rows:
        edges = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
        edges = edges[[c for c in columns if c in edges.columns] + ["geometry"]]
    else:
        edges = gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=crs)
    for name in ("id", "u", "v"):
        edges[name] = edges[name].astype("int64")
    return RoadNetwork(edges=edges, nodes=kept)
