"""benchmarks/eval_suite.py: its numbers are ``roadx eval``'s, on the same prediction.

The suite's core (build the cases of one real source, predict with the Python API, score,
aggregate, format the table) runs on the smallest labelled real scene, the SpaceNet Paris
tile with its OSM lines (650² px at 0.3 m, ~195² px at the card's 1 m), with width-8
d3fnet34 weights; then ``roadx eval --json`` (the CLI app) is run on the prediction files the
suite wrote, with the arguments the suite records, and every number of the table must be
the CLI's. Real data is read in place (``shared_data`` fixture).
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from roadx.cli import app
from roadx.models import create_model, get_card, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_suite.py"


@pytest.fixture(scope="module")
def suite():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("eval_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_suite"] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def tiny_weights(tmp_path: Path, shared_data: Path) -> Path:
    """Width-8 d3fnet34 weights whose output is not flat on the Paris tile: random weights
    give nearly constant logits, so the last layer is scaled and shifted until ~15 % of the
    tile (read coarsely near 1 m, BGR, the card's scaling) is road."""
    import rasterio

    torch.manual_seed(0)
    model = create_model("d3fnet34", width=8).eval()
    with rasterio.open(shared_data / "spacenet_apls" / "RGB-PanSharpen_img1447.tif") as ds:
        bgr = ds.read([3, 2, 1], out_shape=(3, 192, 192)).astype(np.float32)
    x = torch.from_numpy(bgr * 3.2 / 255 - 1.6)[None]
    head = model.head.conv3
    with torch.no_grad():
        scale = 4.0 / float(model(x).std())
        head.weight *= scale
        head.bias *= scale
        head.bias -= float(torch.quantile(model(x).flatten(), 0.85))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, card=get_card("d3fnet34"), model_kwargs={"width": 8})
    return path


def _cli_eval(args: list[str]) -> dict:
    """``roadx eval ARGS --json`` through the CLI app; its JSON document."""
    result = CliRunner().invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output[-2000:]
    return json.loads(result.stdout)


def test_suite_table_equals_roadx_eval_on_the_same_prediction(suite, tiny_weights, shared_data,
                                                              tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(suite, "DATA", shared_data)
    cases = suite.build_cases(["paris_osm"], tmp_path)
    assert [c.scene.name for c in cases] == ["RGB-PanSharpen_img1447.tif"]
    result = suite.evaluate_weights(tiny_weights, cases, "none", tmp_path, label="tiny",
                                    threads=1)
    row = result["rows"][0]
    assert Path(row["roads"]).is_file() and Path(row["prob"]).is_file()
    pixel = _cli_eval(row["eval_pixel_args"])["pixel"]["dataset"]
    lines = _cli_eval(row["eval_lines_args"])
    # the prediction is not degenerate: some road pixels and some predicted length
    assert pixel["tp"] + pixel["fp"] > 0 and lines["ccq"]["pred_length_m"] > 0
    cli = (pixel["iou"], pixel["f1"], lines["ccq"]["completeness"], lines["ccq"]["correctness"],
           lines["ccq"]["quality"], lines["apls"]["apls"])
    entry = result["sources"]["paris_osm"]
    assert entry["n"] == 1
    assert entry["pixel"]["tp"] == pixel["tp"] and entry["pixel"]["fp"] == pixel["fp"]
    assert entry["pixel"]["fn"] == pixel["fn"] and entry["pixel"]["tn"] == pixel["tn"]
    assert suite.table_numbers(entry) == pytest.approx(cli, abs=1e-12)
    # the printed table shows the same numbers
    table = suite.format_table([result])
    printed = [r for r in table.splitlines() if r.startswith("| paris_osm |")]
    assert len(printed) == 1
    cells = [c.strip() for c in printed[0].strip("|").split("|")]
    assert cells[:4] == ["paris_osm", "1", "?", "tiny"]  # these weights' card lists no hold-out
    assert [float(c) for c in cells[4:]] == [round(v, 3) for v in cli]


def test_aggregate_sums_counts_and_lengths_and_averages_apls(suite) -> None:
    def row(tp, fp, fn, gt, gt_hit, pred, pred_hit, apls):
        return {"pixel": {"tp": tp, "fp": fp, "fn": fn, "tn": 100},
                "ccq": {"gt_length_m": gt, "gt_matched_m": gt_hit, "pred_length_m": pred,
                        "pred_matched_m": pred_hit},
                "apls": apls}

    no_road = {"pixel": {"tp": 0, "fp": 5, "fn": 0, "tn": 100}, "ccq": None, "apls": None}
    agg = suite.aggregate([row(10, 0, 10, 100.0, 50.0, 60.0, 60.0, 0.2),
                           row(30, 10, 0, 300.0, 300.0, 400.0, 200.0, 0.6), no_road])
    assert (agg["n"], agg["n_network"]) == (3, 2)
    assert agg["pixel"]["iou"] == pytest.approx(40 / 65)  # summed, with the road-free image's FPs
    assert agg["ccq"]["completeness"] == pytest.approx(350 / 400)
    assert agg["ccq"]["correctness"] == pytest.approx(260 / 460)
    assert agg["ccq"]["quality"] == pytest.approx(260 / (460 + 50))
    assert agg["apls"] == pytest.approx(0.4)


def test_white_nodata_polygons_burn_back_to_the_same_pixels(suite, tmp_path) -> None:
    """The --ignore polygons of Massachusetts white no-data leave out exactly those pixels
    when roadx eval burns them into the image's grid (pixel centres inside)."""
    from roadx.io import reference as ref
    from roadx.io.raster import pixel_space_transform

    valid = np.ones((40, 30), bool)
    valid[:7, :12] = False
    valid[20:, 25:] = False
    valid[33, 3] = False
    out = suite.white_nodata_polygons(valid, 1.0, tmp_path / "white.gpkg")
    polys = ref.read_polygons(out)
    assert polys.crs is None  # roadx's local metric frame of images without georeferencing
    grid = ref.RasterGrid(tmp_path / "img.png", 30, 40, pixel_space_transform(1.0), None,
                          local=True)
    assert np.array_equal(ref.rasterize_mask(list(polys.geometry), grid), ~valid)
    assert suite.white_nodata_polygons(np.ones((4, 4), bool), 1.0, tmp_path / "no.gpkg") is None


def test_synthetic_cases_are_the_held_out_test_set(suite, tmp_path) -> None:
    import geopandas as gpd
    import rasterio

    from roadx.train.synthetic import TEST_SEED_BASE, synthetic_test_set

    cases = suite.build_cases(["synthetic"], tmp_path, max_tiles=2)
    expected = synthetic_test_set(2, seed=0)
    assert [int(c.tile_id) for c in cases] == [TEST_SEED_BASE, TEST_SEED_BASE + 1]
    for case, scene in zip(cases, expected):
        with rasterio.open(case.scene) as ds:
            assert np.array_equal(np.moveaxis(ds.read(), 0, -1), scene.image)
            assert ds.res == (1.0, 1.0)
        with rasterio.open(case.pixel_truth) as ds:
            assert np.array_equal(ds.read(1) > 0, scene.road)
        lines = gpd.read_file(case.truth)
        assert len(lines) == len(scene.centrelines)
        assert suite.held_out(None, "synthetic", [case.tile_id]) == "yes"
