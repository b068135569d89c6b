"""Many scenes in one resumable batch (``roadx predict A.tif B.tif -o OUT/``, predict_many):
one model load, per-scene failures in index.json, exit codes, resume, name collisions.

The real runs use two small SpaceNet tiles (one 1024² window each at 1 m) with the shipped
weights and ``--tta none``.
"""

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest

import roadx
from roadx.batch import expand_scenes, scene_stem
from roadx.cli import main
from roadx.cli.predict import EXIT_SOME_FAILED
from roadx.errors import InputError, OutputExistsError
from roadx.pipeline import ExtractOptions, Predictor, extract
from roadx.predict import PredictOptions

VEGAS = "spacenet_apls/RGB-PanSharpen_AOI_2_Vegas_img0.tif"
TILE = "spacenet_apls/RGB-PanSharpen_img1447.tif"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count the checkpoint loads (the real loader still runs)."""
    import roadx.models

    real, calls = roadx.models.load_checkpoint, []

    def counting(path: Path, *, device: str = "cpu") -> object:
        calls.append(Path(path))
        return real(path, device=device)

    monkeypatch.setattr("roadx.models.load_checkpoint", counting)
    return calls


@pytest.fixture
def scenes(shared_data: Path, tmp_path: Path) -> list[Path]:
    """The two SpaceNet tiles and a corrupt GeoTIFF."""
    broken = tmp_path / "in" / "broken.tif"
    broken.parent.mkdir()
    broken.write_bytes(b"II*\x00 not really a TIFF")
    return [shared_data / VEGAS, shared_data / TILE, broken]


@pytest.fixture
def predict(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> Callable[..., tuple[int, str]]:
    """``predict(*args)``: run ``roadx predict ARGS --tta none`` through main() in this
    process; returns (exit code, stderr)."""

    def run(*args: str | Path) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["roadx", "predict", *map(str, args), "--tta", "none"])
        with pytest.raises(SystemExit) as exc:
            main()
        code = exc.value.code
        code = 0 if code is None else code if isinstance(code, int) else 1
        return code, capsys.readouterr().err

    return run


def _index(out: Path) -> dict[str, dict]:
    data = json.loads((out / "index.json").read_text())
    assert data["kind"] == "roadx-batch-index"
    return {Path(e["scene"]).stem: e for e in data["scenes"]}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()
            if p.name != "index.json"}


def test_a_corrupt_scene_is_reported_and_the_others_finish(
    scenes: list[Path], tmp_path: Path, loads: list[Path],
    predict: Callable[..., tuple[int, str]],
) -> None:
    out = tmp_path / "out"
    code, output = predict(*scenes, "-o", f"{out}/", "--prob", out)
    assert code == EXIT_SOME_FAILED == 3, output
    assert len(loads) == 1  # one model for the whole batch
    index = _index(out)
    vegas, tile, broken = (index[s.stem] for s in scenes)
    assert vegas["status"] == tile["status"] == "ok"
    assert vegas["roads"] > 0 and vegas["km"] > 0 and vegas["seconds"] > 0
    assert broken["status"] == "failed" and "broken.tif" in broken["error"]
    assert "\n" not in broken["error"] and broken["outputs"] == []
    for scene in scenes[:2]:
        gpkg, prob = out / f"{scene.stem}.gpkg", out / f"{scene.stem}_prob.tif"
        assert gpkg.is_file() and prob.is_file()
        assert len(gpd.read_file(gpkg, layer="roads")) == index[scene.stem]["roads"]
        recorded = {o["path"]: o["bytes"] for o in index[scene.stem]["outputs"]}
        assert recorded == {gpkg.name: gpkg.stat().st_size, prob.name: prob.stat().st_size}
    assert "failed" in output and "broken.tif" in output and "Traceback" not in output
    assert not list(out.glob(".*partial"))

    # all scenes failing is an error (exit 1), not a partial success
    code, output = predict(scenes[2], "-o", f"{tmp_path / 'all-bad'}/")  # '/': a folder
    assert code == 1 and "all scenes failed" in output


def test_rerun_skips_finished_scenes_and_redoes_only_a_deleted_output(
    scenes: list[Path], tmp_path: Path, loads: list[Path],
    predict: Callable[..., tuple[int, str]],
) -> None:
    out = tmp_path / "out"
    good = scenes[:2]
    assert predict(*good, "-o", out)[0] == 0
    before = _mtimes(out)
    assert len(loads) == 1 and len(before) == 2

    code, output = predict(*good, "-o", out)  # the same command again: nothing recomputed
    assert code == 0, output
    assert {e["status"] for e in _index(out).values()} == {"skipped"}
    assert _mtimes(out) == before
    assert len(loads) == 1  # nothing to run, so no model was loaded

    (out / f"{good[1].stem}.gpkg").unlink()  # one output gone: only its scene runs again
    assert predict(*good, "-o", out)[0] == 0
    index = _index(out)
    assert index[good[0].stem]["status"] == "skipped"
    assert index[good[1].stem]["status"] == "ok"
    after = _mtimes(out)
    assert after[f"{good[0].stem}.gpkg"] == before[f"{good[0].stem}.gpkg"]
    assert (out / f"{good[1].stem}.gpkg").is_file()

    # --overwrite redoes every scene
    assert predict(*good, "-o", out, "--overwrite")[0] == 0
    assert {e["status"] for e in _index(out).values()} == {"ok"}
    assert _mtimes(out)[f"{good[0].stem}.gpkg"] != before[f"{good[0].stem}.gpkg"]


def test_single_scene_with_an_output_file_is_unchanged(
    shared_data: Path, tmp_path: Path,
    predict: Callable[..., tuple[int, str]],
) -> None:
    scene = shared_data / TILE
    code, output = predict(scene, "-o", tmp_path / "roads.gpkg")
    assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roads.gpkg"]  # no index.json
    options = ExtractOptions(predict=PredictOptions(tta="none"))
    alone = extract(scene, tmp_path / "alone.gpkg", options=options)
    predictor = Predictor(options)
    shared = predictor.extract(scene, tmp_path / "shared.gpkg")
    again = predictor.predict_roads(scene)
    cli = gpd.read_file(tmp_path / "roads.gpkg", layer="roads")
    for other in (gpd.read_file(tmp_path / "alone.gpkg", layer="roads"),
                  gpd.read_file(tmp_path / "shared.gpkg", layer="roads"), again.roads):
        assert list(other.geometry.to_wkb()) == list(cli.geometry.to_wkb())
    assert alone.roads == shared.roads == len(cli)
    with pytest.raises(InputError, match="device"):
        predictor.extract(scene, tmp_path / "x.gpkg", options=ExtractOptions(
            predict=PredictOptions(tta="none", device="cuda")))


def test_predict_many_api_with_a_predictor(shared_data: Path, tmp_path: Path,
                                           loads: list[Path]) -> None:
    predictor = roadx.Predictor(tta="none")
    batch = roadx.predict_many([shared_data / TILE], tmp_path / "api", fmt="shp",
                               predictor=predictor)
    assert isinstance(batch, roadx.BatchResult) and batch.all_ok and batch.ok == 1
    assert len(loads) == 1
    names = {o.path for o in batch.scenes[0].outputs}
    stem = Path(TILE).stem
    assert names == {f"{stem}.shp", f"{stem}_junctions.shp"}


def test_colliding_stems_and_files_in_the_way_fail_before_any_work(
    shared_data: Path, tmp_path: Path, loads: list[Path],
    predict: Callable[..., tuple[int, str]],
) -> None:
    other = tmp_path / "copy" / Path(TILE).name
    other.parent.mkdir()
    shutil.copy(shared_data / TILE, other)
    out = tmp_path / "out"
    code, output = predict(shared_data / TILE, other, "-o", out)
    assert code == 1 and "would both write" in output and Path(TILE).stem in output
    assert "Traceback" not in output and not out.exists() and not loads

    out.mkdir()
    (out / f"{Path(TILE).stem}.gpkg").write_bytes(b"someone else's")
    code, output = predict(shared_data / TILE, shared_data / VEGAS, "-o", out)
    assert code == 1 and "--overwrite" in output and not loads
    assert sorted(p.name for p in out.iterdir()) == [f"{Path(TILE).stem}.gpkg"]

    code, output = predict(shared_data / TILE, shared_data / VEGAS, "-o", tmp_path / "r.gpkg")
    assert code == 1 and "names a folder" in output and not loads
    with pytest.raises(OutputExistsError):
        roadx.predict_many([shared_data / TILE], out, tta="none")


def test_scene_inputs_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    for name in ("b.tif", "a.TIFF", "c.vrt", "notes.md", "d.tif.aux.xml"):
        (folder / name).write_bytes(b"x")
    expected = [str(folder / n) for n in ("a.TIFF", "b.tif", "c.vrt")]
    assert expand_scenes(folder) == expected
    monkeypatch.chdir(tmp_path)
    assert expand_scenes("tiles/*.tif") == [str(folder / "b.tif")]
    listing = tmp_path / "list.txt"
    listing.write_text("# my scenes\n\ntiles/b.tif\n  tiles/c.vrt  \ntiles/b.tif\n")
    assert expand_scenes([f"@{listing}"]) == [str(folder / "b.tif"), str(folder / "c.vrt")]
    assert expand_scenes(["list.txt", "tiles"]) == [str(folder / n)
                                                   for n in ("b.tif", "c.vrt", "a.TIFF")]
    assert expand_scenes(["/vsis3/bucket/x.tif"]) == ["/vsis3/bucket/x.tif"]
    assert scene_stem("/vsizip/a.zip/dir/scene.tif") == "scene"
    assert scene_stem("https://host/x/cog.tif?sig=1") == "cog"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scene in this folder"):
        expand_scenes("empty")
    with pytest.raises(InputError, match="no file matches"):
        expand_scenes("tiles/*.jp2")
    (tmp_path / "blank.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="empty"):
        expand_scenes("@blank.txt")
