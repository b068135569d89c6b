"""The documented Python API: the code blocks of README.md's "Python API" section run as
written (on the bundled example scene), and predict_roads returns what the CLI writes."""

import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest

import roadx
from roadx.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _api_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with examples/data/synthetic_scene.tif made by the bundled generator."""
    work = tmp_path_factory.mktemp("api")
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_example_scene.py"),
                    str(work / "examples" / "data"), "--size", "512"], check=True,
                   capture_output=True)
    return work


@pytest.mark.slow
def test_readme_api_blocks_run(example_dir: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _api_blocks()
    assert len(blocks) == 3
    monkeypatch.chdir(example_dir)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert re.search(r"^\d+ roads, [\d.]+ km$", printed, flags=re.M)
    assert (example_dir / "roads_api.gpkg").is_file() and (example_dir / "prob_api.tif").is_file()
    assert (example_dir / "roads_api.shp").is_file()
    assert (example_dir / "batch_out" / "synthetic_scene.gpkg").is_file()
    assert re.search(r"^synthetic_scene (ok|skipped) \d+ [\d.]+ None$", printed, flags=re.M)


def test_predict_roads_equals_the_written_layers(example_dir: Path) -> None:
    scene = example_dir / "examples" / "data" / "synthetic_scene.tif"
    net = roadx.predict_roads(scene, tta="none")
    assert isinstance(net.roads, gpd.GeoDataFrame) and len(net.roads) > 3
    assert net.roads.crs is not None and net.roads.crs == net.junctions.crs
    assert net.summary.roads == len(net.roads) and net.summary.tta == "none"
    assert net.metadata["tta"] == "none" and len(net.metadata["weights_sha256"]) == 64
    out = example_dir / "direct.gpkg"
    result = roadx.extract(scene, out, options=roadx.ExtractOptions(
        predict=roadx.PredictOptions(tta="none")))
    written = gpd.read_file(out, layer="roads")
    assert result.roads == len(written) == len(net.roads)
    assert written.geometry.length.sum() == pytest.approx(net.roads.geometry.length.sum(), rel=1e-9)
    files = net.to_file(example_dir / "again.gpkg")
    assert files == [example_dir / "again.gpkg"]
    assert len(gpd.read_file(files[0], layer="junctions")) == len(net.junctions)


def test_unknown_setting_is_named() -> None:
    with pytest.raises(InputError, match="tresh"):
        roadx.predict_roads("nowhere.tif", tresh=0.4)
