"""Kill tests: SIGTERM and SIGKILL at each phase of ``roadx train`` and ``roadx predict``;
stale temporary files; two runs writing the same outputs at once.

Each run is a real ``roadx`` process that sends the signal to itself at a chosen moment (a
small driver wraps one roadx function: data loading, an optimiser step, validation, the
state save, the metrics table; reading, the forward pass, opening the probability raster,
writing), so the phase is hit exactly, without timing guesses. Afterwards:

- SIGTERM: exit code 130, a message that says truthfully whether a state was saved, no
  temporary files;
- SIGKILL: whatever the process left is never mistaken for a result: no output appears
  under its final name, and the next run removes the dead run's temporary files;
- ``--resume`` then ends with weights bit-identical to an uninterrupted run and a
  ``metrics.csv`` with each epoch exactly once.

Training uses a width-8 model on a generated 4-tile dataset (a few seconds per run). The
default run covers each behaviour once (about a minute); ``-m slow`` (run by CI) adds every
other phase and signal.
"""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from safetensors.torch import load_file
from tiny_data import make_dataset

from roadx.models import create_model, get_card, save_checkpoint

DRIVER = '''
import os, signal, sys

phase, signame, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = [0]


def hit():
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), getattr(signal, signame))


def wrap(owner, name, after=False):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if not after:
            hit()
        out = real(*args, **kwargs)
        if after:
            hit()
        return out

    setattr(owner, name, wrapper)


if phase == "load":          # decoding the dataset
    import roadx.train.loop as loop
    wrap(loop, "load_tiles")
elif phase == "step":        # inside an optimiser step
    import torch
    wrap(torch.optim.AdamW, "step")
elif phase == "validation":  # scoring the validation windows
    import roadx.train.loop as loop
    wrap(loop, "evaluate_windows")
elif phase == "save":        # state.pt written under its temporary name, not yet renamed
    import roadx.train.state as state
    wrap(state.torch, "save", after=True)
elif phase == "metrics":     # state.pt saved, metrics.csv not yet rewritten
    import roadx.train.loop as loop
    wrap(loop, "write_metrics")
elif phase == "read":        # reading a window of the scene (reader thread)
    import roadx.io.raster as raster
    wrap(raster.Scene, "read_window_aux")  # the reader predict_scene gets
elif phase == "forward":     # the model's forward passes
    import roadx.predict.engine as engine
    wrap(engine, "_run_batch")
elif phase == "open":        # opening the probability raster (its temporary file exists)
    import roadx.io.probability as probability
    wrap(probability, "gdal_env", after=True)
elif phase == "write":       # between the roads and the junctions layer
    import roadx.io.vector as vector
    wrap(vector, "_write")
else:
    raise SystemExit(f"unknown phase {phase}")

from roadx.cli import main
sys.argv = ["roadx", *sys.argv[4:]]
main()
'''

EPOCHS = 3


def roadx(args: list[str], *, driver: Path, phase: str, sig: str,
          nth: int = 1) -> subprocess.CompletedProcess[str]:
    """Run ``roadx ARGS`` in a new process that sends itself ``sig`` at ``phase``."""
    return subprocess.run([sys.executable, str(driver), phase, sig, str(nth), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def roadx_here(args: list[str], capfd: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    """Run ``roadx ARGS`` uninterrupted in this process (no new interpreter to start)."""
    from roadx.cli import main

    argv, sys.argv = sys.argv, ["roadx", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, capfd.readouterr().err if capfd is not None else ""


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".partial")
                  or ".partial" in str(p.relative_to(folder)))


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(DRIVER)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, driver: Path) -> dict[str, Path]:
    """The driver, a generated dataset, its settings and an uninterrupted reference run."""
    root = tmp_path_factory.mktemp("kill")
    data = root / "ds"
    make_dataset(data)
    toml = root / "tiny.toml"
    toml.write_text("model_kwargs = { width = 8 }\n")
    reference = root / "reference"
    code, _ = roadx_here(train_args({"data": data, "toml": toml}, reference))
    assert code == 0 and (reference / "last.safetensors").is_file()
    return {"driver": driver, "data": data, "toml": toml, "reference": reference}


def train_args(setup: dict[str, Path], out: Path) -> list[str]:
    """Three epochs of two steps (batches of 2 crops of 64 px) and one validation batch."""
    return ["train", "--data", str(setup["data"]), "-o", str(out), "--config",
            str(setup["toml"]), "--epochs", str(EPOCHS), "--samples-per-epoch", "4",
            "--batch-size", "2", "--crop", "64", "--val-crop", "64", "--val-fraction", "0.25",
            "--device", "cpu", "--threads", "1", "--gsd", "1", "--precision", "fp32",
            "--warmup-steps", "1", "-q"]


def assert_resumes_exactly(setup: dict[str, Path], run_dir: Path,
                           capfd: pytest.CaptureFixture[str]) -> None:
    """``--resume`` finishes the run: weights bit-identical to the reference, each epoch
    once in metrics.csv, no temporary file left."""
    code, err = roadx_here(["train", "--resume", str(run_dir), "-q"], capfd)
    assert code == 0, err
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    reference = list(csv.DictReader((setup["reference"] / "metrics.csv").open()))
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in reference]
    a, b = load_file(run_dir / "last.safetensors"), load_file(setup["reference"] / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert temporary_files(run_dir) == []


@pytest.mark.parametrize(
    ("phase", "nth", "said"),
    [("step", 3, "interrupted during train: state saved at epoch 2, batch 1"),
     pytest.param("validation", 2, "interrupted during validation: state saved at epoch 2, "
                  "batch 2", marks=pytest.mark.slow),
     pytest.param("save", 2, "state saved at epoch 3, batch 0", marks=pytest.mark.slow)],
)
def test_sigterm_during_training_saves_a_state_that_resumes_exactly(setup, tmp_path, capfd,
                                                                    phase, nth, said):
    """SIGTERM inside an optimiser step waits for the step to end; during validation the
    finished steps are saved; during the end-of-epoch save the save completes."""
    run_dir = tmp_path / "run"
    proc = roadx(train_args(setup, run_dir), driver=setup["driver"], phase=phase,
                 sig="SIGTERM", nth=nth)
    assert proc.returncode == 130, proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert temporary_files(run_dir) == []
    assert_resumes_exactly(setup, run_dir, capfd)


@pytest.mark.parametrize(("phase", "nth"), [
    pytest.param("step", 3, marks=pytest.mark.slow),
    pytest.param("validation", 2, marks=pytest.mark.slow), ("save", 2), ("metrics", 2)])
def test_sigkill_during_training_loses_at_most_the_epoch_in_progress(setup, tmp_path, capfd,
                                                                     phase, nth):
    """kill -9 in a step, in validation, while state.pt is written (its temporary file is
    left) or between state.pt and metrics.csv: the resume redoes what was not saved, never
    shows an epoch twice, and removes the dead run's temporary file."""
    run_dir = tmp_path / "run"
    proc = roadx(train_args(setup, run_dir), driver=setup["driver"], phase=phase,
                 sig="SIGKILL", nth=nth)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = torch.load(run_dir / "state.pt", weights_only=True)
    expected = 2 if phase == "metrics" else 1  # the save of epoch 2 ended only there
    assert state["run"]["epoch"] == expected and len(state["run"]["history"]) == expected
    if phase == "save":
        assert [n for n in temporary_files(run_dir) if "state.pt" in n]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]  # never a row the state does not hold
    assert_resumes_exactly(setup, run_dir, capfd)


@pytest.mark.parametrize("sig", ["SIGTERM", pytest.param("SIGKILL", marks=pytest.mark.slow)])
def test_interrupt_while_loading_data_saves_nothing_and_says_so(setup, tmp_path, capfd, sig):
    run_dir = tmp_path / "run"
    proc = roadx(train_args(setup, run_dir), driver=setup["driver"], phase="load", sig=sig)
    if sig == "SIGTERM":
        assert proc.returncode == 130 and "Traceback" not in proc.stderr
        assert "before the first training step; nothing was saved" in proc.stderr
        assert "state saved" not in proc.stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not run_dir.exists()  # the folder is made only when training starts
    code, err = roadx_here(["train", "--resume", str(run_dir), "-q"], capfd)
    assert code == 1 and "holds no saved training state" in err


@pytest.mark.slow
def test_sigterm_while_loading_data_on_resume_keeps_the_earlier_state(setup, tmp_path, capfd):
    run_dir = tmp_path / "run"
    first = roadx(train_args(setup, run_dir), driver=setup["driver"], phase="step",
                  sig="SIGTERM", nth=3)
    assert first.returncode == 130, first.stderr
    before = (run_dir / "state.pt").read_bytes()
    proc = roadx(["train", "--resume", str(run_dir), "-q"], driver=setup["driver"],
                 phase="load", sig="SIGTERM")
    assert proc.returncode == 130, proc.stderr
    assert "nothing new was saved, the earlier state (epoch 2, batch 1) is unchanged" in proc.stderr
    assert (run_dir / "state.pt").read_bytes() == before
    assert_resumes_exactly(setup, run_dir, capfd)


# ------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 256² scene (four 160 px windows) and width-8 weights."""
    root = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(1)
    path = root / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", count=3, height=256, width=256, dtype="uint8",
                       crs="EPSG:32611", transform=Affine(1, 0, 500000, 0, -1, 4000000)) as dst:
        dst.write(rng.integers(0, 255, (3, 256, 256), dtype=np.uint8))
    weights = root / "w.safetensors"
    torch.manual_seed(0)
    save_checkpoint(weights, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8})
    return {"scene": path, "weights": weights}


def predict_args(scene: dict[str, Path], out_dir: Path) -> list[str]:
    return ["predict", str(scene["scene"]), "-o", str(out_dir / "roads.shp"), "--weights",
            str(scene["weights"]), "--prob", str(out_dir / "prob.tif"), "--tile", "160",
            "--overlap", "64", "--batch-size", "1", "--tta", "none", "--threads", "1", "-q"]


@pytest.mark.parametrize(("phase", "sig"), [
    ("forward", "SIGTERM"), ("forward", "SIGKILL"), ("open", "SIGTERM"),
    *(pytest.param(phase, sig, marks=pytest.mark.slow)
      for phase, sig in [("read", "SIGTERM"), ("read", "SIGKILL"), ("open", "SIGKILL"),
                         ("write", "SIGTERM"), ("write", "SIGKILL")]),
])
def test_predict_interrupted_leaves_no_output_and_the_next_run_cleans_up(scene, driver, tmp_path,
                                                                        capfd, phase, sig):
    """SIGTERM: exit 130, nothing in the output folder. SIGKILL: temporary files may remain
    but no output under its final name; the next run removes them and writes the full set."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    nth = 2 if phase == "write" else 1  # write: the roads layer is written, junctions not
    proc = roadx(predict_args(scene, out_dir), driver=driver, phase=phase,
                 sig=sig, nth=nth)
    finals = {"roads.shp", "roads.shx", "roads.dbf", "roads.prj", "roads_junctions.shp",
              "prob.tif"}
    left = {p.name for p in out_dir.iterdir()}
    assert not left & finals, left
    if sig == "SIGTERM":
        assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
        assert left == set(), left
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    code, err = roadx_here(predict_args(scene, out_dir), capfd)
    assert code == 0, err
    names = {p.name for p in out_dir.iterdir()}
    assert finals <= names and not [n for n in names if n.endswith(".partial")], names



def test_only_stale_partials_of_dead_roadx_processes_are_removed(tmp_path):
    """remove_stale_partials: a dead run's temporary file and folder go; those of a live
    process, of another host, and files that are not roadx's own names stay."""
    from roadx.fs import _host_tag, check_output_path, remove_stale_partials

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid, host = int(dead.stdout), _host_tag()
    other_host = "0" * 6 if host != "0" * 6 else "1" * 6
    gone = [tmp_path / f".prob.tif.roadx-{host}-{dead_pid}-abcd1234.partial",
            tmp_path / f".roadx-{host}-{dead_pid}-efgh5678.partial"]
    kept = [tmp_path / f".prob.tif.roadx-{host}-{os.getpid()}-live0000.partial",
            tmp_path / f".prob.tif.roadx-{other_host}-{dead_pid}-host0000.partial",
            tmp_path / ".prob.tif.abcd1234.partial",  # an older roadx name: owner unknown
            tmp_path / "notes.partial", tmp_path / "prob.tif"]
    gone[0].write_bytes(b"half a raster")
    gone[1].mkdir()
    (gone[1] / "roads.gpkg").write_bytes(b"half a layer")
    for path in kept:
        path.write_bytes(b"keep")
    assert sorted(remove_stale_partials(tmp_path)) == sorted(gone)
    assert not any(p.exists() for p in gone) and all(p.exists() for p in kept)
    gone[0].write_bytes(b"again")  # checking an output path cleans its folder as well
    check_output_path(tmp_path / "roads.gpkg", overwrite=False, suffixes=(".gpkg",))
    assert not gone[0].exists() and all(p.exists() for p in kept)


# ------------------------------------------------------------------------- concurrent runs


def test_two_writers_of_one_output_without_overwrite_one_wins_one_fails(tmp_path):
    """Both pass the up-front check; the one that finishes second finds the output there and
    fails (OutputExistsError) without touching it or leaving its temporary file."""
    from rasterio.crs import CRS

    from roadx.errors import OutputExistsError
    from roadx.io import ProbabilityWriter
    from roadx.tiling import Window

    out = tmp_path / "prob.tif"
    kwargs = {"width": 32, "height": 16, "crs": CRS.from_epsg(32611),
              "transform": Affine(1, 0, 500000, 0, -1, 4000000)}
    first, second = ProbabilityWriter(out, **kwargs), ProbabilityWriter(out, **kwargs)
    first.write(Window(0, 0, 16, 32), np.full((16, 32), 0.25, np.float32))
    second.write(Window(0, 0, 16, 32), np.full((16, 32), 0.75, np.float32))
    first.close()
    with pytest.raises(OutputExistsError, match="appeared while this run was writing"):
        second.close()
    with rasterio.open(out) as src:
        assert (src.read(1) == round(0.25 * 254)).all()
    assert temporary_files(tmp_path) == []


def test_a_layer_set_whose_output_appears_meanwhile_is_not_put_in_place(tmp_path, monkeypatch):
    """A Shapefile set: another run's roads_junctions.shp appears while this one writes;
    none of this run's files stay (also not the ones moved before the clash)."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    from roadx.errors import OutputExistsError
    from roadx.io import vector

    class Network:
        edges = gpd.GeoDataFrame({"id": [0]}, geometry=[LineString([(0, 0), (5, 5)])],
                                 crs="EPSG:32611")
        nodes = gpd.GeoDataFrame({"id": [0, 1]}, geometry=[Point(0, 0), Point(5, 5)],
                                 crs="EPSG:32611")

    real = vector._write

    def write(frame, path, *args, **kwargs):
        real(frame, path, *args, **kwargs)
        (tmp_path / "roads_junctions.shp").write_bytes(b"the other run's")

    monkeypatch.setattr(vector, "_write", write)
    with pytest.raises(OutputExistsError, match="roads_junctions.shp appeared"):
        vector.write_roads(Network(), tmp_path / "roads.shp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roads_junctions.shp"]
    assert (tmp_path / "roads_junctions.shp").read_bytes() == b"the other run's"


@pytest.mark.slow
def test_two_concurrent_predict_runs_with_the_same_outputs(scene, tmp_path):
    """Two roadx processes started together with the same -o and --prob (no --overwrite):
    exactly one succeeds; the other fails with one error line (found up front, or when it
    puts its outputs in place) and puts nothing of its own in place."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [sys.executable, "-m", "roadx", *predict_args(scene, out_dir)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    lines = [line for line in loser.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in loser, loser
    assert "exists" in lines[0] or "appeared while this run was writing" in lines[0]
    names = {p.name for p in out_dir.iterdir()}
    assert {"roads.shp", "roads_junctions.shp", "prob.tif"} <= names
    assert temporary_files(out_dir) == []
    with rasterio.open(out_dir / "prob.tif") as src:
        assert src.read(1).shape == (256, 256)
