"""``roadx eval`` on the command line: JSON on stdout only, report folder, exit 1 errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString
from typer.testing import CliRunner

from roadx.cli import app

UTM = "EPSG:32611"
X0, Y0 = 500_000.0, 4_000_000.0
ROADS = [
    LineString([(X0, Y0 - 50), (X0 + 200, Y0 - 50)]),
    LineString([(X0 + 100, Y0), (X0 + 100, Y0 - 150)]),
]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    gt = tmp_path / "gt.geojson"
    gpd.GeoDataFrame(geometry=ROADS, crs=UTM).to_crs("EPSG:4326").to_file(gt)
    pred = tmp_path / "pred.gpkg"
    gpd.GeoDataFrame(geometry=ROADS[:1], crs=UTM).to_file(pred, layer="roads")
    return {"gt": gt, "pred": pred}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m roadx eval``; stderr is returned with rich's line wrapping undone."""
    proc = subprocess.run(
        [sys.executable, "-m", "roadx", "eval", *args], capture_output=True, text=True,
        timeout=120, env={**os.environ, "COLUMNS": "400"},
    )
    proc.stderr = " ".join(proc.stderr.split())
    return proc


def test_json_goes_to_stdout_only(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        app, ["eval", str(files["pred"]), str(files["gt"]), "--json", "--apls-step", "25"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but the JSON document
    assert data["apls"]["params"]["step_m"] == 25.0
    assert data["params"]["buffer_m"] == 3.0
    # GT: 200 m + 150 m; the prediction has the 200 m road only, and the north-south road's
    # 3 m nearest to it: completeness (200 + 3 + 3) / 350
    assert data["ccq"]["completeness"] == pytest.approx(206 / 350, abs=1e-6)
    assert data["ccq"]["correctness"] == pytest.approx(1.0)
    assert data["summary"]["ground_truth"]["n_junctions"] == 1
    assert data["metric_crs"] == UTM
    assert data["topo"]["precision"] == 1.0 and data["topo"]["recall"] < 1.0
    assert data["apls_tiles"]["n_tiles"] == 1
    assert data["apls_tiles"]["apls"] == data["apls"]["apls"]


def test_topology_options(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        app, ["eval", str(files["pred"]), str(files["gt"]), "--json", "--topo-radius-m", "120",
              "--topo-interval-m", "4", "--topo-match-m", "6", "--apls-tile-m", "100",
              "--no-topo"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["topo"] is None and data["params"]["topo"] is False
    assert (data["params"]["topo_radius_m"], data["params"]["topo_match_m"]) == (120.0, 6.0)
    assert data["apls_tiles"]["tile_m"] == 100.0
    assert data["apls_tiles"]["n_tiles"] == 4  # 200 m x 150 m of roads
    result = CliRunner().invoke(
        app, ["eval", str(files["pred"]), str(files["gt"]), "--json", "--topo-radius-m", "120",
              "--no-apls-tiles"])
    data = json.loads(result.stdout)
    assert data["apls_tiles"] is None
    assert data["topo"]["params"]["radius_m"] == 120.0


def test_report_folder_and_table(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app, ["eval", str(files["pred"]), str(files["gt"]), "--report", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "diff.gpkg", "report.json"]
    assert "APLS" in result.stderr and "CCQ quality" in result.stderr
    assert "TOPO P / R / F1" in result.stderr and "APLS per tile" in result.stderr
    assert result.stdout == ""
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"] == [str(out / n) for n in ("diff.gpkg", "comparison.png",
                                                         "report.json")]
    again = _run(str(files["pred"]), str(files["gt"]), "--report", str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_unreadable_input_exits_1(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.geojson"
    bad.write_text("{ this is not json")
    proc = _run(str(bad), str(files["gt"]))
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "broken.geojson" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_crs_exits_1(files: dict[str, Path], tmp_path: Path) -> None:
    nocrs = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame(geometry=ROADS).to_file(nocrs)
    proc = _run(str(nocrs), str(files["gt"]))
    assert proc.returncode == 1
    assert "no CRS" in proc.stderr and "Traceback" not in proc.stderr


def test_no_overlap_exits_1(files: dict[str, Path], tmp_path: Path) -> None:
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=ROADS, crs=UTM).translate(20_000).to_file(far)
    proc = _run(str(far), str(files["gt"]))
    assert proc.returncode == 1
    assert "do not overlap" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_ground_truth_exits_1(files: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=UTM)).to_file(empty)
    proc = _run(str(files["pred"]), str(empty))
    assert proc.returncode == 1
    assert "no road" in proc.stderr and "Traceback" not in proc.stderr


def test_help_states_the_library_defaults() -> None:
    from roadx.evaluation import EvalParams

    result = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    p = EvalParams()
    for value in (p.threshold, p.rho_px, p.buffer_m, p.apls_step_m, p.apls_snap_m,
                  p.apls_min_path_m, p.apls_max_nodes, p.junction_radius_m, p.mask_width_m,
                  p.seed, p.topo_interval_m, p.topo_match_m):
        assert f"(default {value:g})" in text
    assert f"(default {p.topo_radius_m:g};" in text and f"(default {p.apls_tile_m:g}:" in text
    assert p.topo and p.apls_tiles and "(default: on)" in text
