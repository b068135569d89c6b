"""Tests for network repair (roadx.vectorize.repair): gap bridging, T-junction snapping,
junction merging, duplicate collapsing, pruning by probability, and band-seam equivalence.

Probability maps are drawn at 0.5 m per pixel: road 0.95, background 0.02, a faint road
(under a canopy) 0.2.
"""

import dataclasses
import math

import networkx as nx
import numpy as np
import pytest

import geopandas as gpd

from roadx.vectorize import BandVectorizer, RoadNetwork, VectorizeParams, vectorize

GSD_M = 0.5
ROAD, BACKGROUND, FAINT = 0.95, 0.02, 0.2
ON = VectorizeParams()
OFF = ON.without_repair()


def blank(height: int, width: int) -> np.ndarray:
    return np.full((height, width), BACKGROUND, np.float32)


def paint_road(
    prob: np.ndarray, start: tuple[float, float], end: tuple[float, float],
    half_width_px: float, value: float = ROAD,
) -> np.ndarray:
    """Paint a straight road (row, col) ``start`` → ``end`` of the given half-width."""
    yy, xx = np.mgrid[0 : prob.shape[0], 0 : prob.shape[1]].astype(float)
    d = np.array([end[0] - start[0], end[1] - start[1]], float)
    length = float(np.hypot(*d))
    d /= length
    along = (yy - start[0]) * d[0] + (xx - start[1]) * d[1]
    across = np.abs((yy - start[0]) * d[1] - (xx - start[1]) * d[0])
    prob[(along >= 0) & (along <= length) & (across <= half_width_px)] = value
    return prob


def run(prob: np.ndarray, params: VectorizeParams = ON) -> RoadNetwork:
    return vectorize(prob, transform=None, crs=None, pixel_size_m=GSD_M, params=params)


def run_bands(prob: np.ndarray, rows: int, params: VectorizeParams = ON) -> RoadNetwork:
    vec = BandVectorizer(width=prob.shape[1], height=prob.shape[0], transform=None, crs=None,
                         pixel_size_m=GSD_M, params=params)
    for row in range(0, prob.shape[0], rows):
        vec.add_rows(row, prob[row : row + rows])
    return vec.finish()


def degrees(net: RoadNetwork) -> list[int]:
    """Node degrees, without the degree-2 nodes where a bridge meets the road it continues."""
    return sorted(d for d in net.nodes["degree"].tolist() if d != 2)


def pieces(net: RoadNetwork) -> int:
    """Connected pieces of the network (1 = every road reaches every other)."""
    graph = nx.Graph()
    graph.add_nodes_from(net.nodes["id"])
    graph.add_edges_from(zip(net.edges["u"], net.edges["v"], strict=True))
    return nx.number_connected_components(graph)


def bridges(net: RoadNetwork) -> gpd.GeoDataFrame:
    return net.edges[net.edges["bridged"]]


def canonical_lines(net: RoadNetwork) -> list[tuple]:
    """Edge coordinates, each line oriented from its smaller end, sorted; and attributes."""
    out = []
    for geom, bridged_m in zip(net.edges.geometry, net.edges["bridged_m"], strict=True):
        coords = [tuple(round(v, 6) for v in xy) for xy in geom.coords]
        if coords[-1] < coords[0]:
            coords.reverse()
        out.append((tuple(coords), round(float(bridged_m), 6)))
    return sorted(out)


def gap_road(height: int = 200, width: int = 400, gap: tuple[int, int] = (180, 220),
             value: float = FAINT) -> np.ndarray:
    """A horizontal road 9 px (4.5 m) wide with a stretch of ``value`` at columns ``gap``."""
    prob = blank(height, width)
    prob[96:105, :] = ROAD
    prob[96:105, gap[0] : gap[1]] = value
    return prob


def test_faint_gap_is_bridged() -> None:
    prob = gap_road()  # a 20 m stretch at p = 0.2, below the 0.3 low threshold
    assert pieces(run(prob, OFF)) == 2
    net = run(prob)
    assert pieces(net) == 1 and len(bridges(net)) == 1
    assert net.length_m == pytest.approx(200.0, abs=1.5)  # the whole road
    bridge = bridges(net).iloc[0]
    # the bridge is its own line: the gap plus the two half-widths the skeleton stops short
    assert 20.0 <= bridge["length_m"] <= 20.0 + 2 * 4.5
    assert bridge["bridged_m"] == pytest.approx(bridge["length_m"], rel=0.05)
    assert bridge["prob_min"] == pytest.approx(FAINT)
    assert not net.edges.loc[~net.edges["bridged"], "bridged_m"].any()
    assert (net.nodes["degree"] == 2).sum() == 2  # where the bridge meets the road
    assert len(bridges(run(prob, dataclasses.replace(ON, bridge_m=0.0)))) == 0


def test_gap_without_road_evidence_is_not_bridged() -> None:
    net = run(gap_road(value=BACKGROUND))
    assert pieces(net) == 2 and len(bridges(net)) == 0


def test_gap_longer_than_the_reach_is_not_bridged() -> None:
    prob = gap_road(width=500, gap=(180, 260))  # 40 m of faint road
    assert pieces(run(prob)) == 2
    assert pieces(run(prob, dataclasses.replace(ON, bridge_m=50.0))) == 1


def test_bridge_probability_threshold() -> None:
    prob = gap_road()
    assert pieces(run(prob, dataclasses.replace(ON, bridge_min_prob=0.19))) == 1
    assert pieces(run(prob, dataclasses.replace(ON, bridge_min_prob=0.21))) == 2


def test_parallel_dead_ends_of_different_roads_are_not_joined() -> None:
    # two roads 15 m apart end side by side over faint ground: nothing lies ahead of either
    prob = blank(300, 300)
    prob[100:108, :150] = ROAD
    prob[130:138, :150] = ROAD
    prob[100:138, 150:200] = 0.15
    net = run(prob)
    assert degrees(net) == [1, 1, 1, 1] and len(bridges(net)) == 0


def test_bridges_are_searched_in_a_cone_ahead_of_the_dead_end() -> None:
    # a faint stretch hides a 90° corner: each dead end sees the other 45° off its
    # direction of travel, inside the default 60° cone, outside a 30° one
    prob = blank(300, 300)
    prob[96:105, :205] = ROAD
    prob[96:300, 196:205] = ROAD
    corner = prob[:135, 170:] == ROAD
    prob[:135, 170:][corner] = FAINT
    assert pieces(run(prob, OFF)) == 2
    net = run(prob)
    assert pieces(net) == 1 and len(bridges(net)) == 1
    narrow = run(prob, dataclasses.replace(ON, bridge_angle_deg=30.0))
    assert pieces(narrow) == 2 and len(bridges(narrow)) == 0


def test_dead_end_near_a_road_becomes_a_t_junction() -> None:
    prob = blank(300, 300)
    prob[146:155, :] = ROAD  # horizontal road
    prob[:140, 146:155] = ROAD  # a road stopping 3 m (6 px) short of it, on background
    assert degrees(run(prob, OFF)) == [1, 1, 1, 1]
    net = run(prob)
    assert degrees(net) == [1, 1, 1, 3]
    tee = net.nodes[net.nodes["degree"] == 3].geometry.iloc[0]
    assert tee.y == pytest.approx(150.5, abs=1.0) and tee.x == pytest.approx(150.5, abs=1.5)
    assert len(bridges(net)) == 1 and bridges(net)["length_m"].iloc[0] < 9.0
    assert degrees(run(prob, dataclasses.replace(ON, snap_m=0.0, bridge_m=0.0))) == [1, 1, 1, 1]


def test_bridge_stops_at_a_road_crossing_the_gap() -> None:
    # a faint 35 m stretch is crossed by a vertical road: both dead ends join that road as
    # T-junctions; no bridge crosses it
    prob = blank(300, 400)
    prob[146:155, :] = ROAD
    prob[146:155, 185:255] = FAINT
    prob[:, 216:225] = ROAD
    net = run(prob)
    assert degrees(net) == [1, 1, 1, 1, 4]
    assert len(bridges(net)) == 2
    cross = net.nodes[net.nodes["degree"] == 4].geometry.iloc[0]
    assert cross.x == pytest.approx(220.5, abs=1.0) and cross.y == pytest.approx(150.5, abs=1.5)
    for geom in bridges(net).geometry:
        xs = np.array(geom.coords)[:, 0]
        assert xs.min() >= 220.5 - 0.01 or xs.max() <= 220.5 + 0.01  # one side only


@pytest.mark.parametrize(("width_px", "angle_deg"), [(8, 45), (12, 45), (8, 60)])
def test_crossing_becomes_one_degree_4_junction(width_px: int, angle_deg: float) -> None:
    prob = blank(400, 600)
    t = math.tan(math.radians(angle_deg / 2))
    paint_road(prob, (200 - 300 * t, 0), (200 + 300 * t, 600), width_px / 2)
    paint_road(prob, (200 + 300 * t, 0), (200 - 300 * t, 600), width_px / 2)
    def junctions(net: RoadNetwork) -> list[int]:  # away from the scene edge
        inner = net.nodes[~net.nodes["cut"]]
        return sorted(inner.loc[inner["degree"] >= 3, "degree"].tolist())

    assert junctions(run(prob, OFF)) == [3, 3]  # the skeleton splits the crossing
    assert junctions(run(prob)) == [4]
    assert junctions(run(prob, dataclasses.replace(ON, merge_junctions_m=0.0))) == [3, 3]


def test_road_drawn_twice_around_a_median_collapses_to_one_line() -> None:
    prob = blank(200, 600)
    prob[80:120, :] = ROAD  # a 20 m wide road...
    prob[95:105, 150:450] = BACKGROUND  # ...with a 5 m x 150 m median
    off = run(prob, OFF)
    assert degrees(off) == [1, 1, 3, 3] and len(off.edges) == 4
    net = run(prob)
    assert len(net.edges) == 1 and degrees(net) == [1, 1]
    line = net.edges.geometry.iloc[0]
    assert line.length == pytest.approx(600, abs=3)
    assert np.abs(np.array(line.coords)[:, 1] - 100.0).max() < 2.0  # the centreline
    assert len(run(prob, dataclasses.replace(ON, duplicate_m=0.0)).edges) == 4


def test_faint_spur_and_fragment_pruned_by_probability() -> None:
    prob = blank(200, 400)
    prob[96:105, :] = ROAD
    prob[40:96, 200:207] = 0.55  # a 28 m dead-end branch at p = 0.55
    prob[150:159, 100:300] = 0.55  # an isolated 100 m piece at p = 0.55
    assert len(run(prob).edges) == 4
    strict = run(prob, dataclasses.replace(ON, min_edge_prob=0.6))
    assert len(strict.edges) == 1 and strict.edges["prob_mean"].iloc[0] > 0.9


@pytest.mark.parametrize("rows", [17, 40, 64, 150])
def test_repairs_are_the_same_in_row_bands(rows: int) -> None:
    """Bridges, snaps, merges and collapses do not depend on where the band seams fall."""
    prob = blank(420, 420)
    prob[:, 96:105] = ROAD  # vertical road with a faint gap across several seams
    prob[150:190, 96:105] = FAINT
    prob[300:309, 105:250] = ROAD  # a T-junction on it, and one stopping 3 m short
    prob[60:69, :90] = ROAD
    t = math.tan(math.radians(22.5))  # a 45° crossing
    paint_road(prob, (380 - 80 * t, 260), (380 + 80 * t, 420), 4)
    paint_road(prob, (380 + 80 * t, 260), (380 - 80 * t, 420), 4)
    whole = run(prob)
    assert len(bridges(whole)) >= 2 and 4 in degrees(whole)
    banded = run_bands(prob, rows)
    assert canonical_lines(banded) == canonical_lines(whole)
    assert degrees(banded) == degrees(whole)


def test_bridged_attributes_are_written(tmp_path) -> None:
    import geopandas as gpd

    from roadx.io.vector import write_roads

    net = run(gap_road())
    out = tmp_path / "roads.gpkg"
    write_roads(net, out)
    back = gpd.read_file(out, layer="roads")
    assert back["bridged"].dtype == bool and bool(back["bridged"].iloc[0])
    assert back["bridged_m"].iloc[0] == pytest.approx(net.edges["bridged_m"].iloc[0])


def test_absurd_reach_is_refused() -> None:
    from roadx.errors import InputError

    with pytest.raises(InputError, match="bridge_m=5000 m is longer than any occlusion"):
        dataclasses.replace(ON, bridge_m=5000.0)
    with pytest.raises(InputError, match="bridge_angle_deg"):
        dataclasses.replace(ON, bridge_angle_deg=120.0)
