"""roadx.metrics on hand-built masks and graphs whose answers are worked out by hand."""

import subprocess
import sys

import numpy as np
import pytest
from shapely.affinity import translate
from shapely.geometry import LineString, box

from roadx.errors import InputError
from roadx.metrics import Confusion, confusion, per_image_mean, relaxed_scores
from roadx.metrics.apls import AplsParams, apls, apls_tiled, insert_control_nodes
from roadx.metrics.ccq import ccq, diff_lines
from roadx.metrics.graph import junction_nodes, lines_to_graph, summarize
from roadx.metrics.junctions import junction_scores, match_points
from roadx.metrics.network import compare_networks

# Two roads 300 m apart, 100 m long each; a 200 m road; a plus-shaped network.
ROAD_A = LineString([(0, 0), (100, 0)])
ROAD_B = LineString([(0, 300), (100, 300)])
LONG = LineString([(0, 0), (200, 0)])
GAP = [LineString([(0, 0), (90, 0)]), LineString([(110, 0), (200, 0)])]
GRID = [
    LineString([(0, 0), (400, 0)]),
    LineString([(0, 200), (400, 200)]),
    LineString([(0, 0), (0, 200)]),
    LineString([(200, -100), (200, 300)]),
    LineString([(400, 0), (400, 200)]),
]


# --- pixel -------------------------------------------------------------------------------


def test_confusion_counts_and_scores() -> None:
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)
    c = confusion(pred, gt)
    assert c == Confusion(tp=2, fp=1, fn=1, tn=4)
    assert (c.iou, c.precision, c.recall, c.f1) == (0.5, 2 / 3, 2 / 3, 2 / 3)
    valid = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    assert confusion(pred, gt, valid) == Confusion(tp=1, fp=1, fn=0, tn=0)
    assert (c + c).tp == 4 and (c + c).total == 16


def test_confusion_undefined_scores_are_zero_and_bad_inputs_raise() -> None:
    empty = confusion(np.zeros((3, 3), bool), np.zeros((3, 3), bool))
    assert (empty.iou, empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0, 0.0)
    assert confusion(np.full((2, 2), 255, np.uint8), np.ones((2, 2), bool)).tp == 4
    with pytest.raises(InputError, match="Threshold"):
        confusion(np.full((2, 2), 0.7), np.ones((2, 2), bool))
    with pytest.raises(InputError, match="shapes differ"):
        confusion(np.ones((2, 2), bool), np.ones((2, 3), bool))


def test_per_image_mean_differs_from_dataset_level() -> None:
    small_perfect = Confusion(tp=1, fp=0, fn=0, tn=0)
    big_poor = Confusion(tp=1, fp=9, fn=0, tn=90)
    mean = per_image_mean([small_perfect, big_poor, Confusion(tn=50)])
    assert mean.n_images == 2  # the image without any road pixel is skipped
    assert mean.iou == pytest.approx((1.0 + 0.1) / 2)
    assert (small_perfect + big_poor).iou == pytest.approx(2 / 11)
    assert per_image_mean([Confusion(tn=5)], skip_empty=False).iou == 0.0


def test_relaxed_scores_tolerate_a_shift_up_to_rho() -> None:
    gt = np.zeros((20, 20), bool)
    gt[10, 2:18] = True
    pred = np.roll(gt, 2, axis=0)  # 2 px off
    assert relaxed_scores(pred, gt, rho_px=3).f1 == 1.0
    assert relaxed_scores(pred, gt, rho_px=1).f1 == 0.0
    r0 = relaxed_scores(gt, gt, rho_px=0)
    assert (r0.precision, r0.recall) == (1.0, 1.0)
    # half of the true line is predicted (exactly): precision 1, recall 8/16 with rho 0
    half = np.zeros_like(gt)
    half[10, 2:10] = True
    r = relaxed_scores(half, gt, rho_px=0)
    assert (r.precision, r.recall) == (1.0, 0.5)
    assert r.f1 == pytest.approx(2 / 3)
    empty = relaxed_scores(np.zeros_like(gt), gt)
    assert (empty.precision, empty.recall, empty.f1, empty.gt_total) == (0.0, 0.0, 0.0, 16)


def test_metrics_package_import_is_light() -> None:
    code = (
        "import sys, roadx.metrics; "
        "print(sorted(m for m in ('scipy', 'shapely', 'networkx', 'geopandas', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- graph -------------------------------------------------------------------------------


def test_lines_are_noded_at_crossings_and_shared_ends() -> None:
    g = lines_to_graph(GRID)
    s = summarize(g)
    assert s.length_km == pytest.approx(1.6)
    assert s.n_components == 1
    # corners (degree 2) are merged away: three routes join the junctions (200, 0) and
    # (200, 200); the second and third are split at their midpoints (degree-2 nodes)
    assert sorted(d for _, d in g.degree()) == [1, 1, 2, 2, 4, 4]
    assert g.number_of_edges() == 7
    assert len(junction_nodes(g)) == 2
    # two roads meeting end to end are merged into one edge
    chain = lines_to_graph([LineString([(0, 0), (50, 0)]), LineString([(50, 0), (50, 40)])])
    assert chain.number_of_edges() == 1 and summarize(chain).n_dead_ends == 2


def test_parallel_edges_and_loops_keep_their_length() -> None:
    upper = LineString([(0, 0), (50, 30), (100, 0)])
    lower = LineString([(0, 0), (50, -30), (100, 0)])
    g = lines_to_graph([upper, lower, LineString([(0, 0), (100, 0)])])
    total = sum(d["length_m"] for *_, d in g.edges(data=True))
    assert total == pytest.approx(upper.length + lower.length + 100)
    ring = LineString([(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)])
    assert summarize(lines_to_graph([ring])).length_km == pytest.approx(0.04)
    assert lines_to_graph([]).number_of_nodes() == 0


# --- CCQ ---------------------------------------------------------------------------------


def test_ccq_identical_removed_road_and_gap() -> None:
    same = ccq([ROAD_A, ROAD_B], [ROAD_A, ROAD_B])
    assert (same.completeness, same.correctness, same.quality) == (1.0, 1.0, 1.0)
    # one of two equal roads removed: completeness 100/200, correctness 1,
    # quality = matched prediction / (prediction + missed GT) = 100 / (100 + 100)
    removed = ccq([ROAD_A, ROAD_B], [ROAD_A])
    assert (removed.completeness, removed.correctness, removed.quality) == (0.5, 1.0, 0.5)
    # a 20 m gap cut from a 200 m road, buffer 3 m: GT within 3 m of the prediction is
    # 0..93 and 107..200 = 186 m -> completeness 0.93; quality = 180 / (180 + 14)
    gap = ccq([LONG], GAP, buffer_m=3.0)
    assert gap.completeness == pytest.approx(0.93, abs=1e-9)
    assert gap.correctness == 1.0
    assert gap.quality == pytest.approx(180 / 194, abs=1e-9)


def test_ccq_shift_below_buffer_keeps_1_and_above_drops() -> None:
    within = ccq([LONG], [translate(LONG, yoff=2.5)], buffer_m=3.0)
    assert (within.completeness, within.correctness, within.quality) == (1.0, 1.0, 1.0)
    beyond = ccq([LONG], [translate(LONG, yoff=3.5)], buffer_m=3.0)
    assert (beyond.completeness, beyond.correctness, beyond.quality) == (0.0, 0.0, 0.0)


def test_ccq_empty_prediction_is_zero_and_diff_splits_lengths() -> None:
    empty = ccq([LONG], [])
    assert (empty.completeness, empty.correctness, empty.quality, empty.f1) == (0, 0, 0, 0)
    d = diff_lines([LONG], GAP + [ROAD_B], buffer_m=3.0)
    assert sum(g.length for g in d.missed) == pytest.approx(14.0)
    assert sum(g.length for g in d.matched) == pytest.approx(186.0)
    assert sum(g.length for g in d.spurious) == pytest.approx(100.0)
    with pytest.raises(InputError):
        ccq([LONG], [LONG], buffer_m=0)


# --- APLS --------------------------------------------------------------------------------


def test_control_nodes_every_step() -> None:
    g = insert_control_nodes(lines_to_graph([LONG]), 50.0)
    assert g.number_of_nodes() == 5
    assert sorted(d["length_m"] for *_, d in g.edges(data=True)) == pytest.approx([50] * 4)


def test_apls_identical_is_one_and_empty_is_zero() -> None:
    g = lines_to_graph(GRID)
    assert apls(g, g).apls == pytest.approx(1.0)
    empty = apls(g, lines_to_graph([]))
    assert (empty.apls, empty.gt_to_prop, empty.prop_to_gt) == (0.0, 0.0, 0.0)


def test_apls_one_road_removed() -> None:
    # GT: two separate 100 m roads, control nodes at 0, 50, 100 m on each -> 3 + 3 pairs with
    # a GT path (pairs across roads have none and are not scored). Prediction = road A only.
    # GT->prop: A's 3 pairs score 1, B's nodes do not snap -> 0: C = 3/6 = 0.5.
    # prop->GT: A's 3 pairs all exist in GT with equal length: C = 1.
    # APLS = 2 * 0.5 * 1 / 1.5 = 2/3.
    r = apls(lines_to_graph([ROAD_A, ROAD_B]), lines_to_graph([ROAD_A]))
    assert (r.gt_to_prop, r.prop_to_gt) == (0.5, 1.0)
    assert (r.n_pairs_gt, r.n_pairs_prop) == (6, 3)
    assert r.apls == pytest.approx(2 / 3)


def test_apls_gap_cut() -> None:
    # GT: a 200 m road, control nodes at 0, 50, 100, 150, 200 m -> 10 pairs.
    # Prediction: 0-90 m and 110-200 m. The GT node at 100 m is 10 m from the prediction
    # (> snap 4 m): its 4 pairs score 0; the 4 pairs across the gap have no predicted path: 0;
    # (0, 50) and (150, 200) score 1 -> C(gt->prop) = 2/10.
    # Prediction control nodes: 0, 50, 90 and 110, 160, 200 -> 3 + 3 pairs with a path, all
    # matched exactly on the GT -> C(prop->gt) = 1. APLS = 2 * 0.2 * 1 / 1.2 = 1/3.
    r = apls(lines_to_graph([LONG]), lines_to_graph(GAP))
    assert r.gt_to_prop == pytest.approx(0.2)
    assert r.prop_to_gt == pytest.approx(1.0)
    assert r.apls == pytest.approx(1 / 3)


def test_apls_detour_and_shift() -> None:
    # A shift of 2 m (< snap 4 m) keeps every path length: APLS 1.
    shifted = apls(lines_to_graph([LONG]), lines_to_graph([translate(LONG, yoff=2.0)]))
    assert shifted.apls == pytest.approx(1.0)
    # Prediction takes a detour: the straight 100 m GT becomes 0 -> (50, 40) -> 100 with
    # length 2 * sqrt(50^2 + 40^2) = 128.06 m; only the two end nodes snap (the GT node at
    # 50 m is 31 m away). GT->prop: pair (0, 100): 1 - 28.06/100; 2 pairs with unsnapped node
    # -> 0, so C = 0.7194/3.
    bent = LineString([(0, 0), (50, 40), (100, 0)])
    r = apls(lines_to_graph([ROAD_A]), lines_to_graph([bent]))
    expected = (1 - (bent.length - 100) / 100) / 3
    assert r.gt_to_prop == pytest.approx(expected)


def test_apls_is_symmetric_and_sampling_is_seeded() -> None:
    gt, prop = lines_to_graph(GRID), lines_to_graph(GRID[:3] + GAP)
    ab, ba = apls(gt, prop), apls(prop, gt)
    assert ab.apls == pytest.approx(ba.apls)
    assert (ab.gt_to_prop, ab.prop_to_gt) == pytest.approx((ba.prop_to_gt, ba.gt_to_prop))
    small = AplsParams(max_nodes=12, seed=3)
    s1, s2 = apls(gt, prop, small), apls(gt, prop, small)
    assert s1.sampled and s1.apls == s2.apls
    assert s1.n_pairs_gt <= 12 * 11 // 2


# --- APLS per tile -----------------------------------------------------------------------


def test_apls_tiled_single_tile_equals_whole_area() -> None:
    # GRID spans x 0..400, y -100..300: exactly one 400 m tile, no line clipped.
    gt, prop = GRID, GRID[:3] + GAP
    r = apls_tiled(gt, prop, tile_m=400.0)
    assert (r.n_tiles, r.n_scored) == (1, 1)
    assert r.apls == apls(lines_to_graph(gt), lines_to_graph(prop)).apls
    assert r.apls_gt_tiles == r.apls
    assert r.tiles[0].bounds == (0.0, -100.0, 400.0, 300.0)
    assert r.tiles[0].gt_length_m == pytest.approx(1600.0)


def test_apls_tiled_empty_tile_conventions() -> None:
    # Four 400 m tiles in a row. Tile 0: LONG against GAP (APLS 1/3, see test_apls_gap_cut);
    # tile 1: GT only (0); tile 2: prediction only (0); tile 3: neither (1).
    # Mean over all tiles (SpaceNet 3 scorer): (1/3 + 0 + 0 + 1) / 4 = 1/3; mean over the
    # tiles with GT roads (CosmiQ apls): (1/3 + 0) / 2 = 1/6.
    up = 200.0
    gt = [translate(LONG, yoff=up), translate(ROAD_A, xoff=500, yoff=up)]
    prop = [translate(g, yoff=up) for g in GAP] + [translate(ROAD_A, xoff=900, yoff=up)]
    area = box(0, 0, 1600, 400)
    r = apls_tiled(gt, prop, area=area, tile_m=400.0)
    assert [t.case for t in r.tiles] == ["scored", "prop_empty", "gt_empty", "both_empty"]
    assert [t.apls for t in r.tiles] == pytest.approx([1 / 3, 0.0, 0.0, 1.0])
    assert (r.n_tiles, r.n_scored, r.n_prop_empty, r.n_gt_empty, r.n_both_empty) == (4, 1, 1, 1, 1)
    assert r.apls == pytest.approx(1 / 3)
    assert r.apls_gt_tiles == pytest.approx(1 / 6)
    assert [t.col for t in r.tiles] == [0, 1, 2, 3] and r.tiles[3].bounds == (1200, 0, 1600, 400)
    # tiles outside an L-shaped area are left out; rows run north to south
    ell = box(0, 0, 800, 800).difference(box(400, 400, 800, 800))
    r2 = apls_tiled([LineString([(10, 10), (790, 10)])], [], area=ell, tile_m=400.0)
    assert [(t.row, t.col, t.case) for t in r2.tiles] == [
        (0, 0, "both_empty"), (1, 0, "prop_empty"), (1, 1, "prop_empty")]
    assert r2.apls == pytest.approx(1 / 3) and r2.apls_gt_tiles == 0.0


def test_apls_tiled_clips_lines_at_tile_edges() -> None:
    # A 780 m road over two tiles. Without an area the grid starts at the lines' west end
    # (x = 10): clipped at x = 410 into 400 m + 380 m; with the area 0..800, at x = 400.
    road = [LineString([(10, 200), (790, 200)])]
    r = apls_tiled(road, road, tile_m=400.0)
    assert r.n_tiles == 2
    assert [t.gt_length_m for t in r.tiles] == pytest.approx([400.0, 380.0])
    assert r.apls == pytest.approx(1.0)
    r = apls_tiled(road, [LineString([(10, 202), (790, 202)])],
                   area=box(0, 0, 800, 400), tile_m=400.0)
    assert [t.gt_length_m for t in r.tiles] == pytest.approx([390.0, 390.0])
    assert r.apls == pytest.approx(1.0)  # a 2 m shift is within the 4 m snap
    with pytest.raises(InputError, match="tile"):
        apls_tiled(road, road, tile_m=0)
    assert apls_tiled([], []).n_tiles == 0


# --- junctions and the combined call -----------------------------------------------------


def test_junction_matching_is_one_to_one_within_radius() -> None:
    gt = np.array([[0.0, 0.0], [100.0, 0.0]])
    pred = np.array([[3.0, 4.0], [2.0, 0.0], [100.0, 11.0]])
    assert match_points(gt, pred, 10.0) == [(0, 1)]  # nearest first, each used once
    r = junction_scores(gt, pred, radius_m=10.0)
    assert (r.n_matched, r.precision, r.recall) == (1, 1 / 3, 0.5)
    assert r.f1 == pytest.approx(0.4)
    none = junction_scores(gt, np.zeros((0, 2)))
    assert (none.precision, none.recall, none.f1) == (0.0, 0.0, 0.0)


def test_compare_networks_identical_and_empty() -> None:
    same = compare_networks(GRID, GRID)
    assert same.ccq.quality == 1.0 and same.apls.apls == pytest.approx(1.0)
    assert same.junctions.f1 == 1.0 and same.diff.missed == [] and same.diff.spurious == []
    assert same.gt_summary == same.pred_summary
    empty = compare_networks(GRID, [])
    assert (empty.ccq.quality, empty.apls.apls, empty.junctions.f1) == (0.0, 0.0, 0.0)
    assert empty.pred_summary.length_km == 0.0
