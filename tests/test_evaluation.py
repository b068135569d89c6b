"""roadx.evaluation.evaluate on generated files with known answers, and on SpaceNet data."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from PIL import Image
from shapely.geometry import LineString, box

from roadx.errors import EvaluationError, InputError, OutputExistsError, SceneError
from roadx.evaluation import EvalParams, evaluate

UTM = "EPSG:32611"
X0, Y0 = 500_000.0, 4_000_000.0  # upper-left corner of the test scene, UTM 11N
PX_M = 0.5
SIZE_PX = 400  # 200 m x 200 m
TRANSFORM = Affine(PX_M, 0, X0, 0, -PX_M, Y0)

# A street plan inside the scene: two east-west roads joined by two north-south roads, in
# metres from the upper-left corner (x east, y south).
PLAN = [
    [(10, 50), (190, 50)],
    [(10, 150), (190, 150)],
    [(60, 10), (60, 190)],
    [(140, 50), (140, 150)],
]


def _lines(plan: list[list[tuple[float, float]]], dx: float = 0.0) -> list[LineString]:
    return [LineString([(X0 + x + dx, Y0 - y) for x, y in line]) for line in plan]


def _write_vectors(path: Path, lines: list[LineString], crs: str = UTM) -> Path:
    gpd.GeoDataFrame(geometry=lines, crs=UTM).to_crs(crs).to_file(path)
    return path


def _write_mask_tif(path: Path, mask: np.ndarray, *, crs: str | None = UTM) -> Path:
    profile = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                   dtype="uint8", transform=TRANSFORM, crs=crs)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask.astype(np.uint8) * 255, 1)
    return path


@pytest.fixture()
def gt_file(tmp_path: Path) -> Path:
    # lon/lat GeoJSON: evaluate must reproject it into UTM
    return _write_vectors(tmp_path / "gt.geojson", _lines(PLAN), "EPSG:4326")


def test_identical_networks_score_1_after_reprojection(tmp_path: Path, gt_file: Path) -> None:
    pred = _write_vectors(tmp_path / "pred.gpkg", _lines(PLAN))
    r = evaluate(pred, gt_file)
    net = r.network
    assert r.metric_crs == UTM
    assert net is not None and r.pixel is None
    assert net.ccq.quality == pytest.approx(1.0)
    assert net.apls.apls == pytest.approx(1.0)
    assert net.junctions.f1 == 1.0 and net.junctions.n_gt == 4
    assert net.gt_summary.length_km == pytest.approx(0.64, abs=1e-4)
    assert net.pred_summary.n_components == 1
    assert r.topo is not None and r.topo.f1 == 1.0
    assert r.apls_tiles is not None and r.apls_tiles.n_tiles == 1
    assert r.apls_tiles.apls == net.apls.apls  # 180 m x 180 m of roads: one 400 m tile


def test_removed_road_and_shift(tmp_path: Path, gt_file: Path) -> None:
    # GT: 640 m of road. Without the 100 m north-south road at x = 140 (whose first and last
    # 3 m lie within the 3 m buffer of the east-west roads): completeness (540 + 6) / 640,
    # correctness 1, quality 540 / (540 + 94); junctions: the 2 T-junctions at x = 140 are
    # gone -> recall 2/4, precision 2/2.
    pred = _write_vectors(tmp_path / "pred.gpkg", _lines(PLAN[:3]))
    r = evaluate(pred, gt_file).network
    assert r is not None
    assert r.ccq.completeness == pytest.approx(546 / 640, abs=1e-6)
    assert r.ccq.correctness == pytest.approx(1.0)
    assert r.ccq.quality == pytest.approx(540 / 634, abs=1e-6)
    assert (r.junctions.precision, r.junctions.recall) == (1.0, 0.5)
    assert 0.5 < r.apls.apls < 1.0
    shifted = _write_vectors(tmp_path / "shifted.gpkg", _lines(PLAN, dx=2.0))
    near = evaluate(shifted, gt_file, params=EvalParams(buffer_m=3.0)).network
    far = evaluate(shifted, gt_file, params=EvalParams(buffer_m=1.0)).network
    assert near is not None and far is not None
    assert near.ccq.quality == pytest.approx(1.0)
    assert far.ccq.completeness < 0.6  # the north-south roads (280 m of 640) no longer match


def test_topo_and_tiled_apls_in_the_report(tmp_path: Path, gt_file: Path) -> None:
    # Without the 100 m road at x = 140: TOPO keeps precision 1 and loses recall; with 100 m
    # tiles over the 180 m x 180 m of roads (grid from the lines' north-west corner), 4 tiles.
    pred = _write_vectors(tmp_path / "pred.gpkg", _lines(PLAN[:3]))
    r = evaluate(pred, gt_file, params=EvalParams(apls_tile_m=100.0, topo_radius_m=150.0))
    assert r.topo is not None and r.apls_tiles is not None
    assert r.topo.precision == 1.0 and 0.5 < r.topo.recall < 0.95
    assert r.topo.params.radius_m == 150.0
    assert r.apls_tiles.n_tiles == 4 and r.apls_tiles.tile_m == 100.0
    assert r.apls_tiles.n_scored == 4 and r.apls_tiles.apls < 1.0
    data = r.to_dict()
    assert data["topo"]["params"]["radius_m"] == 150.0
    assert len(data["apls_tiles"]["tiles"]) == 4
    assert data["params"]["apls_tile_m"] == 100.0
    json.dumps(data)
    # both can be switched off; the other keys keep their values
    off = evaluate(pred, gt_file, params=EvalParams(topo=False, apls_tiles=False))
    assert off.topo is None and off.apls_tiles is None
    d_off = off.to_dict()
    assert (d_off["topo"], d_off["apls_tiles"]) == (None, None)
    assert d_off["apls"] == evaluate(pred, gt_file).to_dict()["apls"]


def test_aoi_and_ignore_limit_the_comparison(tmp_path: Path, gt_file: Path) -> None:
    pred = _write_vectors(tmp_path / "pred.gpkg", _lines(PLAN[:3]))
    west = gpd.GeoDataFrame(geometry=[box(X0, Y0 - 200, X0 + 100, Y0)], crs=UTM)
    west.to_file(tmp_path / "west.gpkg")
    r = evaluate(pred, gt_file, aoi=tmp_path / "west.gpkg")
    assert r.network is not None
    assert r.network.gt_summary.length_km == pytest.approx(0.09 + 0.09 + 0.18, abs=1e-6)
    assert r.network.ccq.quality == pytest.approx(1.0)  # the missing road lies east
    east = gpd.GeoDataFrame(geometry=[box(X0 + 100, Y0 - 200, X0 + 200, Y0)], crs=UTM)
    east.to_file(tmp_path / "east.gpkg")
    r2 = evaluate(pred, gt_file, ignore=tmp_path / "east.gpkg",
                  params=EvalParams(apls_tile_m=50.0))
    assert r2.network is not None and r2.network.ccq.quality == pytest.approx(1.0)
    assert any("--ignore" in n for n in r2.notes)
    # tiles wholly inside the ignored half are not counted (they would score 1 as empty)
    assert r2.apls_tiles is not None
    assert all(t.bounds[0] < X0 + 100 for t in r2.apls_tiles.tiles)


def test_empty_prediction_scores_zero(tmp_path: Path, gt_file: Path) -> None:
    empty = gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=UTM))
    empty.to_file(tmp_path / "empty.gpkg", layer="roads")
    r = evaluate(tmp_path / "empty.gpkg", gt_file)
    assert r.network is not None
    assert (r.network.ccq.quality, r.network.apls.apls, r.network.junctions.f1) == (0, 0, 0)
    assert any("no road" in n for n in r.notes)


def test_report_dir_holds_json_layers_and_figure(tmp_path: Path, gt_file: Path) -> None:
    pred = _write_vectors(tmp_path / "pred.gpkg", _lines(PLAN[:3]) + [
        LineString([(X0 + 20, Y0 - 100), (X0 + 50, Y0 - 100)])])  # 30 m spurious road
    out = tmp_path / "report"
    r = evaluate(pred, gt_file, report_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "diff.gpkg", "report.json"]
    data = json.loads((out / "report.json").read_text())
    assert data["apls"]["apls"] == pytest.approx(r.network.apls.apls)
    assert data["apls"]["params"] == {"step_m": 50.0, "snap_m": 4.0, "min_path_m": 10.0,
                                      "max_nodes": 1000, "seed": 0}
    layers = {name for name, _ in pyogrio.list_layers(out / "diff.gpkg")}
    assert layers == {"missed", "spurious", "matched"}
    missed = gpd.read_file(out / "diff.gpkg", layer="missed")
    spurious = gpd.read_file(out / "diff.gpkg", layer="spurious")
    assert missed.crs == UTM
    assert missed.length.sum() == pytest.approx(100 - 2 * 3, abs=0.01)  # minus the buffer ends
    assert spurious.length.sum() == pytest.approx(30, abs=0.01)  # 10 m from any GT road
    with Image.open(out / "comparison.png") as png:
        assert png.size[0] > 300 and png.size[1] > 300
    with pytest.raises(OutputExistsError):
        evaluate(pred, gt_file, report_dir=out)
    evaluate(pred, gt_file, report_dir=out, overwrite=True)


def test_plain_mask_images_give_pixel_metrics_only(tmp_path: Path) -> None:
    gt = np.zeros((40, 60), np.uint8)
    gt[20, 5:55] = 255  # 50 road pixels
    pred = np.zeros_like(gt)
    pred[20, 5:30] = 255  # 25 of them
    pred[22, 40:50] = 255  # 10 px, 2 px off the road
    Image.fromarray(gt).save(tmp_path / "gt.png")
    Image.fromarray(pred).save(tmp_path / "pred.png")
    Image.fromarray(np.dstack([gt] * 3)).save(tmp_path / "image.png")
    r = evaluate(tmp_path / "pred.png", tmp_path / "gt.png", image=tmp_path / "image.png",
                 report_dir=tmp_path / "rep", params=EvalParams(rho_px=2.0))
    assert r.metric_crs is None and r.network is None and r.pixel is not None
    c = r.pixel.confusion
    assert (c.tp, c.fp, c.fn, c.tn) == (25, 10, 25, 40 * 60 - 60)
    assert c.iou == pytest.approx(25 / 60)
    # relaxed with rho 2: all 35 predicted px are near the road; GT px within 2 px of a
    # prediction: cols 5..31 (27) and 40..49 (10) -> recall 37/50
    assert (r.pixel.relaxed.precision, r.pixel.relaxed.recall) == (1.0, 37 / 50)
    assert (tmp_path / "rep" / "comparison.png").stat().st_size > 1000
    assert not (tmp_path / "rep" / "diff.gpkg").exists()
    # --ignore in pixel coordinates (a file without CRS) removes the 10 false positives
    gpd.GeoDataFrame(geometry=[box(38, 21, 52, 24)]).to_file(tmp_path / "wm.gpkg")
    masked = evaluate(tmp_path / "pred.png", tmp_path / "gt.png", ignore=tmp_path / "wm.gpkg")
    assert masked.pixel is not None
    assert (masked.pixel.confusion.fp, masked.pixel.confusion.fn) == (0, 25)


def test_georeferenced_mask_rasters_pixel_metrics(tmp_path: Path) -> None:
    mask = np.zeros((SIZE_PX, SIZE_PX), bool)
    mask[98:102, 20:380] = True  # a 2 m wide east-west road at y = 50 m
    gt = _write_mask_tif(tmp_path / "gt.tif", mask)
    pred_mask = mask.copy()
    pred_mask[98:102, 200:380] = False  # half of it
    pred = _write_mask_tif(tmp_path / "pred.tif", pred_mask)
    r = evaluate(pred, gt)
    assert r.pixel is not None and r.pixel.valid_px == SIZE_PX * SIZE_PX
    assert r.pixel.confusion.iou == pytest.approx(0.5)
    assert r.pixel.confusion.precision == 1.0
    assert r.network is not None
    assert r.network.ccq.correctness == pytest.approx(1.0)
    assert 0.4 < r.network.ccq.completeness < 0.6


def test_errors_name_the_file_and_problem(tmp_path: Path, gt_file: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        evaluate(tmp_path / "missing.gpkg", gt_file)
    (tmp_path / "bad.gpkg").write_text("not a geopackage")
    with pytest.raises(InputError, match="bad.gpkg"):
        evaluate(tmp_path / "bad.gpkg", gt_file)
    gpd.GeoDataFrame(geometry=_lines(PLAN)).to_file(tmp_path / "nocrs.gpkg")
    with pytest.raises(SceneError, match="no CRS"):
        evaluate(tmp_path / "nocrs.gpkg", gt_file)
    far = _write_vectors(tmp_path / "far.gpkg", _lines(PLAN, dx=5000.0))
    with pytest.raises(EvaluationError, match="do not overlap"):
        evaluate(far, gt_file)
    gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=UTM)).to_file(tmp_path / "empty.gpkg")
    with pytest.raises(EvaluationError, match="no road"):
        evaluate(far, tmp_path / "empty.gpkg")
    mask = np.zeros((SIZE_PX, SIZE_PX), bool)
    _write_mask_tif(tmp_path / "nocrs.tif", mask, crs=None)
    with pytest.raises(SceneError, match="no CRS"):
        evaluate(tmp_path / "nocrs.tif", gt_file)
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="corrupt.tif"):
        evaluate(tmp_path / "corrupt.tif", gt_file)
    (tmp_path / "pix.csv").write_text('ImageId,WKT_Pix\nimg,"LINESTRING (0 0, 10 10)"\n')
    with pytest.raises(InputError, match="--pred-transform-from"):
        evaluate(tmp_path / "pix.csv", gt_file)


# --- real data: SpaceNet 3 Vegas img0, the winning (albu) prediction ---------------------


@pytest.fixture(scope="module")
def vegas(shared_data: Path) -> dict[str, Path]:
    root = shared_data / "spacenet_apls"
    return {
        "pred": root / "AOI_2_Vegas_img0_albu_prediction_wkt_pix.csv",
        "gt": root / "AOI_2_Vegas_img0_roads_gt.geojson",
        "image": root / "RGB-PanSharpen_AOI_2_Vegas_img0.tif",
    }


def test_albu_prediction_on_vegas_img0(vegas: dict[str, Path]) -> None:
    r = evaluate(vegas["pred"], vegas["gt"], image=vegas["image"])
    net = r.network
    assert net is not None and r.metric_crs == "EPSG:32611"
    print(f"albu Vegas img0: APLS {net.apls.apls:.4f} (gt->prop {net.apls.gt_to_prop:.4f}, "
          f"prop->gt {net.apls.prop_to_gt:.4f}); CCQ completeness {net.ccq.completeness:.4f} "
          f"correctness {net.ccq.correctness:.4f} quality {net.ccq.quality:.4f}; junction F1 "
          f"{net.junctions.f1:.4f}")
    # measured with roadx 0.1.0 (defaults): APLS 0.812, CCQ quality 0.761, junction F1 0.874
    assert 0.75 < net.apls.apls < 0.87
    assert 0.84 < net.ccq.completeness < 0.92 and 0.80 < net.ccq.correctness < 0.89
    assert 0.70 < net.ccq.quality < 0.82
    assert 0.80 < net.junctions.f1 < 0.94
    # the 323 m x 395 m tile footprint fits one 400 m tile: per-tile APLS = APLS; TOPO
    # measured P 0.923, R 0.996, F1 0.958 (see tests/test_topo.py)
    assert r.apls_tiles is not None and r.apls_tiles.n_tiles == 1
    assert r.apls_tiles.apls == net.apls.apls
    assert r.topo is not None and 0.92 < r.topo.f1 < 0.98
    tiles = evaluate(vegas["pred"], vegas["gt"], image=vegas["image"],
                     params=EvalParams(apls_tile_m=200.0, topo=False)).apls_tiles
    assert tiles is not None and (tiles.n_tiles, tiles.n_scored) == (4, 4)
    print(f"albu Vegas img0: TOPO {r.topo.f1:.4f}; APLS per 200 m tile {tiles.apls:.4f} "
          f"{[round(t.apls, 3) for t in tiles.tiles]}")
    assert 0.7 < tiles.apls < 0.9
    assert net.gt_summary.length_km == pytest.approx(4.46, abs=0.02)
    assert net.pred_summary.length_km == pytest.approx(4.69, abs=0.02)
    # swapping prediction and GT swaps the two APLS directions and CCQ's two halves
    swapped = evaluate(vegas["gt"], vegas["pred"], image=vegas["image"]).network
    assert swapped is not None
    assert swapped.apls.apls == pytest.approx(net.apls.apls, abs=1e-9)
    assert swapped.apls.gt_to_prop == pytest.approx(net.apls.prop_to_gt, abs=1e-9)
    assert swapped.ccq.completeness == pytest.approx(net.ccq.correctness, abs=1e-9)


def test_solaris_mask_equals_ground_truth_burnt_4_m_wide(shared_data: Path) -> None:
    # solaris made sample_road_raster_mask.tif from these 9 centrelines with a 2 m buffer:
    # roadx burning them 4 m wide reproduces it pixel for pixel (georeferencing check), and a
    # 3 m burn loses the mask's outer pixels (precision 1 for the GT, IoU < 1).
    root = shared_data / "spacenet_solaris"
    mask, lines = root / "sample_road_raster_mask.tif", root / "sample_roads_for_masking.geojson"
    r = evaluate(mask, lines, params=EvalParams(mask_width_m=4.0))
    assert r.pixel is not None and r.pixel.valid_px == 1300 * 1300
    assert r.pixel.confusion.iou == 1.0 and r.pixel.relaxed.f1 == 1.0
    narrow = evaluate(mask, lines, params=EvalParams(mask_width_m=3.0)).pixel
    assert narrow is not None and narrow.confusion.fn == 0
    assert 0.65 < narrow.confusion.iou < 0.85
    assert narrow.relaxed.f1 == 1.0  # every pixel is within 3 px of the other mask
    # the mask vectorised by roadx.vectorize against the centrelines
    assert r.network is not None and r.network.ccq.quality > 0.9
    assert r.network.apls.apls > 0.8


def test_vegas_ground_truth_against_itself_is_1(vegas: dict[str, Path]) -> None:
    net = evaluate(vegas["gt"], vegas["gt"]).network
    assert net is not None
    assert (net.ccq.completeness, net.ccq.correctness, net.ccq.quality) == pytest.approx((1, 1, 1))
    assert net.apls.apls == pytest.approx(1.0)
    assert net.junctions.f1 == 1.0
    assert net.gt_summary == net.pred_summary
    r = evaluate(vegas["gt"], vegas["gt"])
    assert r.topo is not None and (r.topo.precision, r.topo.recall, r.topo.f1) == (1, 1, 1)
    assert r.apls_tiles is not None and r.apls_tiles.apls == pytest.approx(1.0)


def test_prediction_inside_the_image_but_off_every_road_scores_zero(
    vegas: dict[str, Path], tmp_path: Path
) -> None:
    """A line in the image footprint, north of every GT road, is a (bad) prediction, not an
    error: 'no overlap' is only for predictions of another place."""
    gt = gpd.read_file(vegas["gt"])
    x0, _, x1, y1 = gt.total_bounds
    north = y1 + 0.00008  # about 9 m north of the northernmost GT road, still in the image
    with rasterio.open(vegas["image"]) as src:
        assert north < src.bounds.top
    pred = tmp_path / "off_road.geojson"
    gpd.GeoDataFrame(geometry=[LineString([(x0, north), (x1, north)])], crs=gt.crs).to_file(pred)
    net = evaluate(pred, vegas["gt"], image=vegas["image"]).network
    assert net is not None
    assert net.ccq.correctness == 0.0 and net.ccq.completeness == 0.0 and net.apls.apls == 0.0
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[LineString([(x0 + 1, north), (x1 + 1, north)])],
                     crs=gt.crs).to_file(far)
    with pytest.raises(EvaluationError, match="do not overlap"):
        evaluate(far, vegas["gt"], image=vegas["image"])
