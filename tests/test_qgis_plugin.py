"""The QGIS plugin (roadx/qgis): ``roadx qgis-plugin install``, the subprocess runner, and the
Processing provider in real QGIS.

The runner and the CLI are tested under roadx's Python. The provider is loaded from an
installed copy into Debian's QGIS 3.22 (python3-qgis, system Python, headless) and its
algorithms run roadx on real SpaceNet data; without python3-qgis those tests are skipped.
"""

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import roadx
from roadx.cli import app
from roadx.qgis import runner

PLUGIN_SRC = Path(roadx.__file__).parent / "qgis"
SYSTEM_PYTHON = "/usr/bin/python3"


def _has_qgis() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install(qgis_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "roadx", "qgis-plugin", "install", "--qgis-dir", str(qgis_dir),
         "--profile", "tester", *extra], capture_output=True, text=True, timeout=120)


# -- the plugin stays pure PyQGIS + standard library -----------------------------------------

@pytest.mark.parametrize("path", sorted(PLUGIN_SRC.glob("*.py")), ids=lambda p: p.name)
def test_plugin_imports_only_qgis_and_the_standard_library(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            # processing: QGIS's own Processing plugin (ProcessingConfig), shipped with QGIS
            assert top in sys.stdlib_module_names or top in ("qgis", "processing"), (
                f"{path.name} imports {name}")


def test_metadata_version_matches_roadx() -> None:
    meta = dict(line.split("=", 1) for line in (PLUGIN_SRC / "metadata.txt").read_text()
                .splitlines() if "=" in line)
    assert meta["version"] == roadx.__version__
    assert meta["hasProcessingProvider"] == "yes"
    assert (PLUGIN_SRC / meta["icon"]).is_file()


# -- roadx qgis-plugin ----------------------------------------------------------------------

def test_install_copies_the_plugin_and_records_this_python(tmp_path: Path) -> None:
    result = _install(tmp_path)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "profiles" / "tester" / "python" / "plugins" / "roadx_processing"
    assert str(target) in result.stderr and "Processing Toolbox" in result.stderr
    for name in ("__init__.py", "metadata.txt", "provider.py", "algorithms.py", "runner.py",
                 "plugin.py", "icon.svg"):
        assert (target / name).read_bytes() == (PLUGIN_SRC / name).read_bytes()
    assert not list(target.glob("__pycache__"))
    record = json.loads((target / "install.json").read_text())
    assert record["python"] == sys.executable and record["roadx_version"] == roadx.__version__
    assert runner.find_roadx(environ={}, plugin_dir=target) == [sys.executable, "-m", "roadx"]

    again = _install(tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: {target} exists; pass --overwrite to replace it."
    (target / "stale.py").write_text("")
    assert _install(tmp_path, "--overwrite").returncode == 0
    assert not (target / "stale.py").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["roadx_processing"]


def test_path_and_bad_profile(tmp_path: Path) -> None:
    cli = CliRunner()
    result = cli.invoke(app, ["qgis-plugin", "path"])
    assert result.exit_code == 0 and Path(result.stdout.strip()) == PLUGIN_SRC
    bad = subprocess.run([sys.executable, "-m", "roadx", "qgis-plugin", "install", "--profile",
                          "../elsewhere", "--qgis-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not a path" in bad.stderr


# -- the runner (standard library; runs under any Python) ------------------------------------

def test_progress_and_error_lines_are_parsed() -> None:
    from roadx.cli.console import progress_line

    line = progress_line("predict", "windows", 5, 12, 0.3, 10.0)
    assert runner.parse_progress(line) == ("predict", 5, 12)
    assert runner.parse_progress("│ roads   │ 19 lines, 0.97 km") is None
    lines = ["predict: 0/1 windows (0 %)", "error: scene.tif: not a raster GDAL can read"]
    assert runner.failure_message(lines, 1) == "scene.tif: not a raster GDAL can read"
    usage = ["Usage: roadx predict [OPTIONS] SCENE", "╭─ Error ─────╮",
             "│ No such option: --tile-size │", "╰─────────────╯"]
    assert runner.failure_message(usage, 2) == (
        "roadx failed (exit code 2): Error No such option: --tile-size")


@pytest.mark.parametrize(("every", "lines"), [("0", 13), ("3600", 2), ("bogus", 2)])
def test_progress_interval_comes_from_the_environment(monkeypatch, every, lines) -> None:
    import io

    from rich.console import Console

    from roadx.cli import console

    buffer = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=buffer, force_terminal=False))
    monkeypatch.setenv("ROADX_PROGRESS_EVERY_S", every)  # "bogus": the default, 30 s
    with console.area_progress("predict", unit="windows") as on_progress:
        for done in range(13):
            on_progress(done, 12, done * 0.5)
    assert len(buffer.getvalue().splitlines()) == lines


def test_which_roadx_runs(tmp_path: Path, monkeypatch) -> None:
    python = tmp_path / "python3.11"
    python.write_text("")
    exe = tmp_path / "roadx"
    exe.write_text("")
    assert runner.find_roadx(str(exe), environ={}) == [str(exe)]
    assert runner.find_roadx(str(python), environ={}) == [str(python), "-m", "roadx"]
    assert runner.find_roadx(environ={"ROADX_PYTHON": str(python)},
                             plugin_dir=tmp_path) == [str(python), "-m", "roadx"]
    with pytest.raises(runner.RoadxNotFoundError, match="ROADX_PYTHON"):
        runner.find_roadx(environ={"ROADX_PYTHON": str(tmp_path / "nope")})
    with pytest.raises(runner.RoadxNotFoundError, match="does not exist"):
        runner.find_roadx(str(tmp_path / "nope"), environ={})
    with pytest.raises(runner.RoadxNotFoundError, match="roadx not found"):
        runner.find_roadx(environ={"PATH": str(tmp_path / "empty")}, plugin_dir=tmp_path)
    env = runner.child_environment({"PYTHONPATH": "/qgis/python", "PROJ_LIB": "/qgis/proj",
                                    "HOME": "/home/x"})
    assert "PYTHONPATH" not in env and "PROJ_LIB" not in env and env["HOME"] == "/home/x"
    assert env["ROADX_PROGRESS_EVERY_S"] == str(runner.PROGRESS_EVERY_S)


FAKE_ROADX = """
import os, signal, sys, time
def stop(*_):
    sys.stderr.write("cleaned up\\n"); sys.exit(130)
signal.signal(signal.SIGTERM, stop)
for i in range(4):
    print(f"predict: {i}/4 windows ({25 * i} %), 1.00 windows/s", file=sys.stderr, flush=True)
    time.sleep(float(sys.argv[1]))
if sys.argv[2] == "fail":
    print("error: out.gpkg exists; pass --overwrite to replace it.", file=sys.stderr)
    sys.exit(1)
print('{"roads": 3}')
"""


def test_run_reports_progress_returns_stdout_and_fails_with_the_message() -> None:
    command = [sys.executable, "-c", FAKE_ROADX]
    progress, lines = [], []
    out = runner.run_roadx(["0", "ok"], command=command, on_progress=progress.append,
                           on_line=lines.append)
    assert json.loads(out) == {"roads": 3}
    assert progress == [0.0, 25.0, 50.0, 75.0, 100.0] and len(lines) == 4
    with pytest.raises(runner.RoadxFailedError, match="^out.gpkg exists; pass --overwrite"):
        runner.run_roadx(["0", "fail"], command=command)


def test_cancel_terminates_roadx() -> None:
    lines, pids = [], []
    start = time.monotonic()
    with pytest.raises(runner.RoadxCanceledError, match="canceled"):
        runner.run_roadx(["30", "ok"], command=[sys.executable, "-c", FAKE_ROADX],
                         on_line=lines.append, on_start=pids.append,
                         is_canceled=lambda: bool(lines))
    assert time.monotonic() - start < 15
    assert lines[-1] == "cleaned up"  # SIGTERM reached it: roadx removes partial outputs then
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pids[0], 0)


STUBBORN_ROADX = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
folder = sys.argv[1]
open(os.path.join(folder, f".out.gpkg.roadx-abc123-{os.getpid()}-x1y2.partial"), "w").close()
print("predict: 0/1 windows (0 %)", file=sys.stderr, flush=True)
time.sleep(60)
"""


def test_a_roadx_that_ignores_the_cancel_is_killed_and_its_partials_removed(tmp_path) -> None:
    other = tmp_path / ".out.gpkg.roadx-abc123-1-x1y2.partial"  # another process's
    other.write_text("")
    codes, lines = [], []
    with pytest.raises(runner.RoadxCanceledError):
        runner.run_roadx([str(tmp_path)], command=[sys.executable, "-c", STUBBORN_ROADX],
                         on_line=lines.append, is_canceled=lambda: bool(lines),
                         on_exit=codes.append,
                         terminate_wait_s=0.5, cleanup_dirs=[tmp_path])
    assert codes == [-9]
    assert [p.name for p in tmp_path.iterdir()] == [other.name]


def test_a_run_finished_before_the_cancel_counts_as_done() -> None:
    lines = []
    out = runner.run_roadx([], command=[sys.executable, "-c", "print('{}')"],
                           is_canceled=lambda: bool(time.sleep(0.5)) or True,
                           on_line=lines.append)
    assert out == "{}" and "outputs are kept" in lines[-1]


# -- the provider in real QGIS --------------------------------------------------------------

QGIS_SCRIPT = r"""
import json, os, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import (QgsApplication, QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsVectorLayer)
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")  # Debian's Processing plugin
import processing
from processing.core.Processing import Processing
Processing.initialize()

plugins, data, out_dir = sys.argv[1:4]
sys.path.insert(0, plugins)
import roadx_processing  # the installed copy
plugin = roadx_processing.classFactory(None)
plugin.initProcessing()
provider = QgsApplication.processingRegistry().providerById("roadx")
result = {"provider": provider.name(),
          "algorithms": sorted((a.id(), a.displayName()) for a in provider.algorithms()),
          "plugin_file": roadx_processing.__file__}


class Feedback(QgsProcessingFeedback):
    def __init__(self, cancel_on=None):
        super().__init__()
        self.cancel_on, self.progress, self.lines, self.pid = cancel_on, [], [], None
        self.canceled_at, self.exit_code = None, None
        self.progressChanged.connect(self.progress.append)

    def pushDebugInfo(self, info):
        if info.startswith("roadx process id "):
            self.pid = int(info.rsplit(" ", 1)[1])
        if info.startswith("roadx exit code "):
            self.exit_code = int(info.rsplit(" ", 1)[1])

    def pushConsoleInfo(self, info):
        self.lines.append(info)
        if self.cancel_on and info.startswith(self.cancel_on) and not self.canceled_at:
            self.canceled_at = time.monotonic()
            self.cancel()


scene = os.path.join(data, "spacenet_solaris", "sample_geotiff.tif")
roads_path = os.path.join(out_dir, "roads.gpkg")
prob_path = os.path.join(out_dir, "prob.tif")
feedback = Feedback()
out = processing.run("roadx:extractroads", {
    "INPUT": scene, "TTA": 0, "OUTPUT": roads_path, "PROBABILITY": prob_path}, feedback=feedback)
roads = QgsVectorLayer(out["OUTPUT"], "roads", "ogr")
junctions = QgsVectorLayer(out["JUNCTIONS"], "junctions", "ogr")
result["extract"] = {
    "outputs": out, "valid": roads.isValid(), "features": roads.featureCount(),
    "geometry": roads.geometryType(), "crs": roads.crs().authid(),
    "scene_crs": QgsRasterLayer(scene, "scene").crs().authid(),
    "junctions_valid": junctions.isValid(), "prob_valid": QgsRasterLayer(prob_path).isValid(),
    "progress": feedback.progress, "lines": feedback.lines}

# running again without "Overwrite existing outputs": roadx's one-line error
try:
    processing.run("roadx:extractroads", {"INPUT": scene, "TTA": 0, "OUTPUT": roads_path},
                   feedback=Feedback())
    result["exists_error"] = None
except QgsProcessingException as err:
    result["exists_error"] = str(err)

# cancel as soon as roadx reports its first window; TTA d4 (8 views) keeps it busy past that
cancel_path = os.path.join(out_dir, "canceled.gpkg")
feedback = Feedback(cancel_on="predict:")
start = time.monotonic()
try:
    processing.run("roadx:extractroads", {"INPUT": scene, "TTA": 2, "OUTPUT": cancel_path,
                                          "PROBABILITY": os.path.join(out_dir, "canceled.tif")},
                   feedback=feedback)
    result["cancel_error"] = None
except QgsProcessingException as err:
    result["cancel_error"] = str(err)
try:
    os.kill(feedback.pid, 0)
    alive = True
except ProcessLookupError:
    alive = False
result["cancel"] = {"after_cancel_s": time.monotonic() - (feedback.canceled_at or start),
                    "pid": feedback.pid, "alive": alive, "lines": feedback.lines,
                    "exit_code": feedback.exit_code,
                    "canceled": feedback.isCanceled(), "files": sorted(os.listdir(out_dir))}

# vectorize the probability, loaded into the project with roadx's styles
out = processing.runAndLoadResults("roadx:vectorizeprobability", {
    "INPUT": prob_path, "OUTPUT": os.path.join(out_dir, "vectorized.shp")},
    feedback=Feedback())
layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
result["vectorize"] = {
    "outputs": {k: v for k, v in out.items()},
    "loaded": {name: {"renderer": layer.renderer().type(), "features": layer.featureCount(),
                      "crs": layer.crs().authid()} for name, layer in layers.items()}}

# evaluate a known pair: the SpaceNet 3 winning prediction for Las Vegas img0
apls = os.path.join(data, "spacenet_apls")
json_path = os.path.join(out_dir, "eval.json")
out = processing.run("roadx:evaluate", {
    "PREDICTION": os.path.join(apls, "AOI_2_Vegas_img0_albu_prediction_wkt_pix.csv"),
    "REFERENCE": os.path.join(apls, "AOI_2_Vegas_img0_roads_gt.geojson"),
    "IMAGE": os.path.join(apls, "RGB-PanSharpen_AOI_2_Vegas_img0.tif"),
    "OUTPUT": json_path}, feedback=Feedback())
result["evaluate"] = {"outputs": out, "report": json.load(open(json_path))}
print(json.dumps(result), flush=True)
os._exit(0)  # QGIS may crash while tearing down its providers; the checks are done
"""


@pytest.fixture(scope="module")
def qgis_run(tmp_path_factory, shared_data: Path) -> dict:
    """Install the plugin, then run all algorithms once in one headless QGIS session."""
    if not _has_qgis():
        pytest.skip("QGIS (python3-qgis) is not installed")
    tmp = tmp_path_factory.mktemp("qgis_plugin")
    assert _install(tmp / "QGIS3").returncode == 0
    plugins = tmp / "QGIS3" / "profiles" / "tester" / "python" / "plugins"
    out_dir = tmp / "out"
    out_dir.mkdir()
    proc = subprocess.run([SYSTEM_PYTHON, "-c", QGIS_SCRIPT, str(plugins), str(shared_data),
                           str(out_dir)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["plugins"] = str(plugins)
    return result


@pytest.mark.slow
def test_provider_lists_its_algorithms(qgis_run: dict) -> None:
    assert qgis_run["plugin_file"].startswith(qgis_run["plugins"])  # the installed copy
    assert qgis_run["provider"] == "roadx"
    assert qgis_run["algorithms"] == [["roadx:evaluate", "Evaluate"],
                                      ["roadx:extractroads", "Extract roads"],
                                      ["roadx:vectorizeprobability", "Vectorize probability"]]


@pytest.mark.slow
def test_extract_roads_writes_lines_in_the_scene_crs(qgis_run: dict) -> None:
    extract = qgis_run["extract"]
    assert extract["valid"] and extract["features"] > 0 and extract["geometry"] == 1  # lines
    assert extract["crs"] == extract["scene_crs"] == "EPSG:32616"
    assert extract["junctions_valid"] and extract["prob_valid"]
    assert extract["outputs"]["OUTPUT"].endswith("roads.gpkg|layername=roads")
    assert extract["progress"][-1] == 100.0
    assert any(line.startswith("predict: 1/1 windows") for line in extract["lines"])
    assert qgis_run["exists_error"].startswith("roadx: ")
    assert 'exists; check "Overwrite existing outputs"' in qgis_run["exists_error"]


@pytest.mark.slow
def test_cancel_stops_roadx_and_leaves_no_output(qgis_run: dict) -> None:
    cancel = qgis_run["cancel"]
    assert cancel["canceled"] and cancel["pid"] and not cancel["alive"]
    assert cancel["exit_code"] == 130, cancel  # roadx stopped itself, removing its partials
    assert any(line.startswith("predict: 0/1 windows") for line in cancel["lines"])
    assert cancel["after_cancel_s"] < 25  # roadx stops within seconds (measured: 2 s)
    assert "canceled" in qgis_run["cancel_error"]
    assert not any(name.startswith(("canceled", ".canceled")) for name in cancel["files"]), cancel
    assert not any(name.endswith(".partial") for name in cancel["files"])


@pytest.mark.slow
def test_vectorize_loads_styled_layers(qgis_run: dict) -> None:
    vec = qgis_run["vectorize"]
    assert vec["outputs"]["OUTPUT"].endswith("vectorized.shp")
    assert vec["outputs"]["JUNCTIONS"].endswith("vectorized_junctions.shp")
    loaded = vec["loaded"]
    assert loaded["roads"]["renderer"] == loaded["junctions"]["renderer"] == "RuleRenderer"
    assert loaded["roads"]["features"] > 0 and loaded["roads"]["crs"] == "EPSG:32616"


@pytest.mark.slow
def test_evaluate_reproduces_the_reference_numbers(qgis_run: dict) -> None:
    out = qgis_run["evaluate"]["outputs"]
    assert out["APLS"] == pytest.approx(0.812, abs=0.001)  # README: reference numbers
    assert out["CCQ_QUALITY"] == pytest.approx(0.761, abs=0.001)
    assert out["JUNCTION_F1"] == pytest.approx(0.874, abs=0.001)
    assert out["PIXEL_IOU"] is None  # vectors on both sides
    assert out["SUMMARY"].startswith("APLS 0.812")
    assert qgis_run["evaluate"]["report"]["apls"]["apls"] == pytest.approx(out["APLS"])
