"""Tests for roadx.vectorize: topology on picture arrays, metres, georeferencing, bands."""

from collections import Counter

import numpy as np
import pytest
import shapely
from affine import Affine
from scipy import ndimage as ndi
from skimage.draw import circle_perimeter, line
from skimage.filters import apply_hysteresis_threshold

import skeletons
from roadx.errors import InputError
from roadx.vectorize import (
    EDGE_COLUMNS,
    NODE_COLUMNS,
    BandVectorizer,
    RoadNetwork,
    VectorizeParams,
    vectorize,
)
from roadx.vectorize.mask import hysteresis

UTM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_000_000.0)


def run(prob: np.ndarray, params: VectorizeParams = VectorizeParams(), **kw) -> RoadNetwork:
    """Vectorise in pixel coordinates at 1 m per pixel unless told otherwise."""
    kw = {"transform": None, "crs": None, "pixel_size_m": 1.0, **kw}
    return vectorize(prob.astype(np.float32), params=params, **kw)


def degrees(net: RoadNetwork) -> list[int]:
    return sorted(net.nodes["degree"].tolist())


def run_bands(prob: np.ndarray, heights: list[int], **kw) -> RoadNetwork:
    h, w = prob.shape
    kw = {"transform": None, "crs": None, "pixel_size_m": 0.5, **kw}
    vec = BandVectorizer(width=w, height=h, **kw)
    row = 0
    for step in heights:
        if row >= h:
            break
        vec.add_rows(row, prob[row : row + step])
        row += step
    return vec.finish()


def synthetic_map(height: int = 600, width: int = 500) -> np.ndarray:
    """Probability map with straight, diagonal, curved roads and a ring; roads ~7 px wide.

    With bands of 100 rows the horizontal road lies exactly on the seam at row 300 and the
    road starting there makes a T junction on the seam.
    """
    centre = np.zeros((height, width), dtype=bool)

    def seg(r0: int, c0: int, r1: int, c1: int) -> None:
        rr, cc = line(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        centre[rr[ok], cc[ok]] = True

    seg(300, 0, 300, width - 1)
    seg(300, 150, height - 1, 150)
    seg(0, 60, height - 1, 60)
    seg(0, 0, height - 1, width - 1)
    seg(50, width - 1, height - 1, 220)
    t = np.linspace(0, np.pi, 400)
    rr = np.round(height / 2 + 0.4 * height * np.sin(t) * np.cos(1.3 * t)).astype(int)
    cc = np.round(0.3 * width + 0.55 * width * t / np.pi).astype(int)
    for k in range(t.size - 1):
        seg(rr[k], cc[k], rr[k + 1], cc[k + 1])
    rr, cc = circle_perimeter(height // 4, width // 2 + 60, 40, shape=(height, width))
    centre[rr, cc] = True
    dist = ndi.distance_transform_edt(~centre)
    return np.exp(-((dist / 4.0) ** 2)).astype(np.float32)


# --- topology on picture arrays -------------------------------------------------------------


def test_tee_has_one_junction_of_degree_3_and_three_edges() -> None:
    net = run(skeletons.TEE)
    assert degrees(net) == [1, 1, 1, 3]
    assert len(net.edges) == 3
    junction = net.nodes.loc[net.nodes["kind"] == "junction", "id"].item()
    assert all(junction in (u, v) for u, v in zip(net.edges["u"], net.edges["v"], strict=True))


def test_cross_has_one_junction_of_degree_4() -> None:
    net = run(skeletons.CROSS)
    assert degrees(net) == [1, 1, 1, 1, 4]
    assert len(net.edges) == 4
    assert net.nodes["kind"].value_counts().to_dict() == {"end": 4, "junction": 1}


def test_ell_is_one_edge_and_the_corner_is_no_node() -> None:
    net = run(skeletons.ELL)
    assert degrees(net) == [1, 1]
    assert len(net.edges) == 1
    assert net.edges["length_m"].item() == pytest.approx(2 * 21.0, abs=2.0)  # centre line


def test_short_spur_is_pruned_but_long_branch_kept() -> None:
    unpruned = run(skeletons.SPUR, VectorizeParams(min_spur_m=0.0))
    assert degrees(unpruned) == [1, 1, 1, 1, 3, 3]
    assert sorted(unpruned.edges["length_m"])[0] < 5.0  # the 4 px stub exists before pruning
    net = run(skeletons.SPUR, VectorizeParams(min_spur_m=10.0))
    assert degrees(net) == [1, 1, 1, 3]
    assert len(net.edges) == 3
    bounds = net.edges.geometry.bounds
    branch = net.edges.loc[(bounds["maxy"] - bounds["miny"]) > 10, "length_m"]
    assert 13.0 < branch.item() < 18.0  # the 16 px branch survives


def test_short_branch_running_into_the_scene_edge_is_not_pruned() -> None:
    net = run(skeletons.EDGE_TOUCHING)
    assert degrees(net) == [1, 1, 1, 3]
    short = net.edges.loc[net.edges["length_m"].idxmin()]
    assert short["length_m"] < 10.0  # shorter than min_spur_m, kept because it is cut
    end = net.nodes.loc[net.nodes["id"].isin([short["u"], short["v"]]) & (net.nodes["degree"] == 1)]
    assert end["cut"].item()
    # The same branch ending 6 px inside the scene is an ordinary spur and goes.
    inside = np.pad(skeletons.EDGE_TOUCHING, ((0, 6), (0, 0)))
    assert degrees(run(inside)) == [1, 1]


def test_ring_is_one_closed_edge() -> None:
    net = run(skeletons.RING)
    assert len(net.edges) == 1 and len(net.nodes) == 1
    edge = net.edges.iloc[0]
    assert edge["u"] == edge["v"]
    assert net.nodes["degree"].item() == 2 and net.nodes["kind"].item() == "other"
    assert shapely.is_closed(edge.geometry) and len(edge.geometry.coords) >= 4
    assert edge["length_m"] == pytest.approx(4 * 15, rel=0.1)  # centre line of 18 px square


def test_parallel_roads_stay_two_lines() -> None:
    net = run(skeletons.PARALLEL)
    assert degrees(net) == [1, 1, 1, 1]
    assert len(net.edges) == 2
    a, b = net.edges.geometry
    assert a.distance(b) == pytest.approx(6.0, abs=1.0)


# --- metres, attributes, georeferencing -----------------------------------------------------


def test_length_is_in_metres_with_the_pixel_size() -> None:
    prob = np.zeros((12, 100), np.float32)
    prob[3:10, :] = 0.9  # a 100 px road from edge to edge
    net = run(prob, pixel_size_m=0.5)
    assert net.edges["length_m"].item() == pytest.approx(50.0, abs=1.0)
    across = run(prob.T.copy(), pixel_size_m=(0.3, 0.25))  # (row_m, col_m)
    along = run(prob, pixel_size_m=(0.3, 0.25))
    assert across.length_m == pytest.approx(30.0, abs=1.0)
    assert along.length_m == pytest.approx(25.0, abs=1.0)


def test_oblique_length_has_no_staircase_bias() -> None:
    centre = np.zeros((120, 200), dtype=bool)
    rr, cc = line(10, 0, 109, 199)  # slope 1/2: the worst case for an 8-connected path
    centre[rr, cc] = True
    prob = (ndi.distance_transform_edt(~centre) <= 2.5).astype(np.float32)
    expected_m = np.hypot(99, 199)
    assert run(prob).length_m == pytest.approx(expected_m, rel=0.02)


def test_width_and_probability_attributes() -> None:
    prob = np.zeros((30, 80), np.float32)
    prob[10:17, :] = 0.8  # 7 px wide
    prob[10:17, 40:42] = 0.6
    edge = run(prob, pixel_size_m=0.5).edges.iloc[0]
    assert edge["width_m"] == pytest.approx(3.5, abs=0.5)
    assert edge["prob_min"] == pytest.approx(0.6, abs=1e-6)
    assert 0.6 < edge["prob_mean"] < 0.8


def test_coordinates_go_through_the_utm_transform() -> None:
    prob = np.zeros((20, 100), np.float32)
    prob[8:11, :] = 0.9  # centre row 9, columns 0..99
    net = run(prob, transform=UTM, crs="EPSG:32611", pixel_size_m=0.5)
    assert net.edges.crs.to_epsg() == 32611 and net.nodes.crs.to_epsg() == 32611
    xs = sorted(p.x for p in net.nodes.geometry)
    assert xs == pytest.approx([500_000.0 + 0.5 * 0.5, 500_000.0 + 0.5 * 99.5])
    assert {round(p.y, 6) for p in net.nodes.geometry} == {4_000_000.0 - 0.5 * 9.5}
    edge = net.edges.iloc[0]
    points = net.nodes.set_index("id").geometry
    assert edge.geometry.coords[0] == points[edge["u"]].coords[0]
    assert edge.geometry.coords[-1] == points[edge["v"]].coords[0]


def test_no_transform_gives_pixel_centre_coordinates() -> None:
    prob = np.zeros((20, 40), np.float32)
    prob[8:11, :] = 0.9
    net = run(prob, pixel_size_m=0.5)
    assert net.edges.crs is None
    assert sorted(p.x for p in net.nodes.geometry) == [0.5, 39.5]
    assert {p.y for p in net.nodes.geometry} == {9.5}


def test_simplify_keeps_ends_and_drops_collinear_vertices() -> None:
    prob = np.zeros((20, 200), np.float32)
    prob[8:11, :] = 0.9
    raw = run(prob, VectorizeParams(simplify_m=0.0)).edges.geometry.iloc[0]
    simple = run(prob, VectorizeParams(simplify_m=1.0)).edges.geometry.iloc[0]
    assert len(raw.coords) == 200 and len(simple.coords) == 2
    assert simple.coords[0] == raw.coords[0] and simple.coords[-1] == raw.coords[-1]


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_empty_input_gives_empty_layers_with_columns_and_crs(fill: float) -> None:
    net = run(np.full((64, 48), fill, np.float32), transform=UTM, crs="EPSG:32611")
    assert len(net.edges) == 0 and len(net.nodes) == 0
    assert tuple(net.edges.columns) == (*EDGE_COLUMNS, "geometry")
    assert tuple(net.nodes.columns) == (*NODE_COLUMNS, "geometry")
    assert net.edges.crs.to_epsg() == 32611 and net.nodes.crs.to_epsg() == 32611
    assert net.length_m == 0.0


# --- mask: hysteresis, clean-up, nodata -----------------------------------------------------


def test_hysteresis_matches_skimage() -> None:
    rng = np.random.default_rng(3)
    prob = ndi.gaussian_filter(rng.random((80, 90)), 2.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    expected = apply_hysteresis_threshold(prob, 0.45, 0.6)
    np.testing.assert_array_equal(hysteresis(prob, low=0.45, high=0.6), expected)


def test_weak_link_between_strong_roads_stays_connected() -> None:
    prob = np.zeros((20, 120), np.float32)
    prob[8:13, 5:115] = 0.9
    prob[8:13, 55:65] = 0.4  # a weak stretch (e.g. under a tree)
    assert len(run(prob).edges) == 1
    no_repair = VectorizeParams(threshold_low=0.45).without_repair()
    assert len(run(prob, no_repair).edges) == 2
    bridged = run(prob, VectorizeParams(threshold_low=0.45))  # the gap is bridged...
    assert bridged.edges["bridged"].tolist().count(True) == 1  # ...as its own line
    assert degrees(bridged) == [1, 1, 2, 2]


def test_small_blob_removed_and_small_hole_filled() -> None:
    prob = np.zeros((40, 120), np.float32)
    prob[10:19, 5:115] = 0.9
    prob[13:16, 50:53] = 0.0  # 9 m2 hole: filled, no loop
    prob[30:33, 20:23] = 0.9  # 9 m2 blob: removed
    net = run(prob)
    assert len(net.edges) == 1 and degrees(net) == [1, 1]
    holed = run(prob, VectorizeParams(max_hole_m2=0.0).without_repair())
    assert len(holed.edges) > 1  # without filling, the hole splits the road into a loop


def test_branch_running_into_nodata_is_not_pruned() -> None:
    prob = np.zeros((40, 100), np.float32)
    prob[10:13, 5:95] = 0.9
    prob[13:20, 48:51] = 0.9  # a 7 px branch...
    assert degrees(run(prob)) == [1, 1]  # ...ending in background is a spur
    prob[20:40, :] = np.nan  # ...ending at nodata was cut
    assert degrees(run(prob)) == [1, 1, 1, 3]


# --- streaming over row bands ---------------------------------------------------------------


def test_bands_give_the_same_network_as_the_whole_array() -> None:
    prob = synthetic_map()
    whole = vectorize(prob, transform=None, crs=None, pixel_size_m=0.5)
    assert (whole.nodes["degree"] >= 3).sum() >= 8  # the map really has junctions
    for heights in ([100] * 6, [37] * 17, [9] * 67, [250, 1, 99, 180, 70]):
        banded = run_bands(prob, heights)
        assert len(banded.edges) == len(whole.edges)
        assert Counter(banded.nodes["degree"]) == Counter(whole.nodes["degree"])
        assert banded.length_m == pytest.approx(whole.length_m, rel=0.01)


def test_road_crossing_every_seam_is_one_edge() -> None:
    prob = np.zeros((600, 40), np.float32)
    prob[:, 17:24] = 0.9
    net = run_bands(prob, [100] * 6)
    assert len(net.edges) == 1 and degrees(net) == [1, 1]
    assert net.length_m == pytest.approx(0.5 * 599, abs=1.0)


@pytest.mark.parametrize("halo_px", [96, 99, 100])
def test_junction_exactly_on_a_seam(halo_px: int) -> None:
    # Band seams are at rows 100, 200, 300; the traced-graph seams lag them by halo_px + 1,
    # so halo 99 puts a graph seam on row 200 too (rows < 200 in one band graph, >= 200 next).
    params = VectorizeParams(halo_px=halo_px)
    prob = np.zeros((400, 200), np.float32)
    prob[197:204, 10:190] = 0.9  # horizontal road centred on row 200 = a band seam
    prob[200:390, 97:104] = 0.9  # a road leaving it downwards
    whole = run(prob, params, pixel_size_m=0.5)
    banded = run_bands(prob, [100] * 4, params=params)
    for net in (whole, banded):
        assert degrees(net) == [1, 1, 1, 3]
        assert len(net.edges) == 3
    assert banded.length_m == pytest.approx(whole.length_m, rel=1e-6)


def test_junction_cluster_split_by_a_seam_is_one_node() -> None:
    thin = VectorizeParams(min_area_m2=0.0, closing_m=0.0, halo_px=16)
    whole = run(skeletons.JOG, thin)
    assert degrees(whole) == [1, 1, 1, 1, 4]
    # One-row bands put a seam between every pair of rows, also inside the junction.
    banded = run_bands(skeletons.JOG.astype(np.float32), [1] * 36, pixel_size_m=1.0, params=thin)
    assert degrees(banded) == [1, 1, 1, 1, 4]
    assert len(banded.edges) == 4
    assert banded.length_m == pytest.approx(whole.length_m, rel=1e-9)


def test_caller_may_reuse_its_band_buffer() -> None:
    prob = synthetic_map()
    whole = vectorize(prob, transform=None, crs=None, pixel_size_m=0.5)
    vec = BandVectorizer(width=500, height=600, transform=None, crs=None, pixel_size_m=0.5)
    reused = np.empty((50, 500), np.float32)  # bands shorter than the halo are buffered
    for row in range(0, 600, 50):
        reused[:] = prob[row : row + 50]
        vec.add_rows(row, reused)
    net = vec.finish()
    assert len(net.edges) == len(whole.edges)
    assert net.length_m == pytest.approx(whole.length_m, rel=1e-9)


def test_skipped_rows_count_as_nodata() -> None:
    prob = np.zeros((300, 40), np.float32)
    prob[:, 17:24] = 0.9
    vec = BandVectorizer(width=40, height=300, transform=None, crs=None, pixel_size_m=1.0)
    vec.add_rows(0, prob[:100])
    vec.add_rows(200, prob[200:])  # rows 100..199 never arrive
    net = vec.finish()
    assert len(net.edges) == 2
    assert net.nodes["cut"].all()  # both pieces end at the scene edge or at the gap


def test_band_errors_name_the_problem() -> None:
    vec = BandVectorizer(width=40, height=300, transform=None, crs=None, pixel_size_m=1.0)
    with pytest.raises(InputError, match="scene width 40"):
        vec.add_rows(0, np.zeros((10, 39), np.float32))
    vec.add_rows(0, np.zeros((10, 40), np.float32))
    with pytest.raises(InputError, match="consecutive"):
        vec.add_rows(5, np.zeros((10, 40), np.float32))
    with pytest.raises(InputError, match="dtype"):
        vec.add_rows(10, np.zeros((10, 40), np.uint8))


def test_params_are_validated() -> None:
    with pytest.raises(InputError, match="threshold_low"):
        VectorizeParams(threshold=0.4, threshold_low=0.5)
    with pytest.raises(InputError, match="min_spur_m"):
        VectorizeParams(min_spur_m=-1.0)
    with pytest.raises(InputError, match="pixel_size_m"):
        vectorize(np.zeros((4, 4), np.float32), transform=None, crs=None, pixel_size_m=0.0)
