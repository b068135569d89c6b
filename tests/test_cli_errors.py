"""Each expected error of ``roadx predict`` / ``roadx vectorize``: exit code 1, a message that
names the file and the problem, no traceback, and nothing half-written."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from roadx.cli import main
from roadx.models import create_model, get_card, save_checkpoint


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run ``roadx ARGS`` through main(); return (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["roadx", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    code = exc.value.code if isinstance(exc.value.code, int) else 1
    return code, err


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid d3fnet34 checkpoint (random weights, width 8: 0.6 M parameters)."""
    path = tmp_path_factory.mktemp("w") / "d3fnet34.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8}, dtype=torch.float16)
    return path


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32611",
              nodata: float | None = None) -> Path:
    count, height, width = data.shape
    profile = {"driver": "GTiff", "count": count, "height": height, "width": width,
               "dtype": data.dtype.name, "nodata": nodata}
    if crs is not None:
        profile |= {"crs": crs, "transform": Affine(1.0, 0, 500000, 0, -1.0, 4000000)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert "error:" in err and "Traceback" not in err, err
    flat = " ".join(err.split())
    for needle in needles:
        assert needle in flat, f"{needle!r} not in {err!r}"


def test_missing_scene(tmp_path, weights, monkeypatch, capsys):
    code, err = run_cli(["predict", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights)], monkeypatch, capsys)
    assert_clean_error(code, err, "nope.tif", "not found")


def test_not_a_raster(tmp_path, weights, monkeypatch, capsys):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image")
    code, err = run_cli(["predict", str(bad), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights)], monkeypatch, capsys)
    assert_clean_error(code, err, "notes.tif", "raster")


def test_no_crs_without_gsd(tmp_path, weights, monkeypatch, capsys):
    plain = write_tif(tmp_path / "plain.tif", np.full((3, 64, 64), 9, np.uint8), crs=None)
    code, err = run_cli(["predict", str(plain), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights)], monkeypatch, capsys)
    assert_clean_error(code, err, "plain.tif", "--gsd")


def test_empty_scene(tmp_path, weights, monkeypatch, capsys):
    empty = write_tif(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    code, err = run_cli(["predict", str(empty), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights)], monkeypatch, capsys)
    assert_clean_error(code, err, "empty.tif", "valid")


def test_wrong_bands(scene, tmp_path, weights, monkeypatch, capsys):
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights), "--bands", "1,2,7"], monkeypatch, capsys)
    assert_clean_error(code, err, "scene.tif", "band")


def test_unsupported_output_extension(scene, tmp_path, weights, monkeypatch, capsys):
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.kml"),
                         "--weights", str(weights)], monkeypatch, capsys)
    assert_clean_error(code, err, "r.kml", ".gpkg")


def test_output_exists_without_overwrite(scene, tmp_path, weights, monkeypatch, capsys):
    out = tmp_path / "r.gpkg"
    out.write_bytes(b"precious")
    code, err = run_cli(["predict", str(scene), "-o", str(out), "--weights", str(weights)],
                        monkeypatch, capsys)
    assert_clean_error(code, err, "r.gpkg", "--overwrite")
    assert out.read_bytes() == b"precious"


def test_missing_output_folder(scene, tmp_path, weights, monkeypatch, capsys):
    out = tmp_path / "no" / "such" / "r.gpkg"
    code, err = run_cli(["predict", str(scene), "-o", str(out), "--weights", str(weights)],
                        monkeypatch, capsys)
    assert_clean_error(code, err, "r.gpkg")
    assert not out.parent.exists()


def test_corrupt_weights(scene, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(bad)], monkeypatch, capsys)
    assert_clean_error(code, err, "bad.safetensors")
    assert not (tmp_path / "r.gpkg").exists()


def test_mismatched_weights(scene, tmp_path, monkeypatch, capsys):
    """dlinknet34 tensors under a card that claims d3fnet34: keys do not match."""
    from safetensors.torch import load_file, save_file

    from roadx.models import read_checkpoint_metadata

    good = tmp_path / "dl.safetensors"
    save_checkpoint(good, create_model("dlinknet34"), card=get_card("dlinknet34"),
                    model_kwargs={})
    meta = read_checkpoint_metadata(good)
    meta["roadx.model"] = "d3fnet34"
    meta["roadx.card"] = meta["roadx.card"].replace('"dlinknet34"', '"d3fnet34"')
    mixed = tmp_path / "mixed.safetensors"
    save_file(load_file(good), mixed, metadata=meta)
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(mixed)], monkeypatch, capsys)
    assert_clean_error(code, err, "mixed.safetensors")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present on this machine")
def test_cuda_requested_but_absent(scene, tmp_path, weights, monkeypatch, capsys):
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg"),
                         "--weights", str(weights), "--device", "cuda"], monkeypatch, capsys)
    assert_clean_error(code, err, "CUDA")


def test_no_default_weights(scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROADX_WEIGHTS_DIR", str(tmp_path / "empty"))
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg")],
                        monkeypatch, capsys)
    assert_clean_error(code, err, "--weights")


def test_vectorize_missing_raster(tmp_path, monkeypatch, capsys):
    code, err = run_cli(["vectorize", str(tmp_path / "p.tif"), "-o", str(tmp_path / "r.gpkg")],
                        monkeypatch, capsys)
    assert_clean_error(code, err, "p.tif", "not found")


def test_plain_image_with_gsd_gives_pixel_coordinates(tmp_path, weights, monkeypatch, capsys):
    """A DeepGlobe-like plain image is accepted with --gsd; GeoJSON is refused (no lon/lat)."""
    from PIL import Image

    img = tmp_path / "123_sat.jpg"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(img)
    code, err = run_cli(["predict", str(img), "-o", str(tmp_path / "r.geojson"),
                         "--weights", str(weights), "--gsd", "1.0"], monkeypatch, capsys)
    assert_clean_error(code, err, "GeoJSON")
    monkeypatch.setattr(sys, "argv", ["roadx", "predict", str(img), "-o",
                                      str(tmp_path / "r.gpkg"), "--weights", str(weights),
                                      "--gsd", "1.0", "--tta", "none", "--tile", "64",
                                      "--overlap", "0", "-q"])
    main_ok = None
    try:
        main()
    except SystemExit as exc:
        main_ok = exc.code
    assert main_ok in (None, 0)
    assert (tmp_path / "r.gpkg").exists()


def test_tile_not_a_multiple_of_32_is_refused_before_any_work(scene, tmp_path, weights,
                                                               monkeypatch, capsys):
    out = tmp_path / "r.gpkg"
    code, err = run_cli(["predict", str(scene), "-o", str(out), "--weights", str(weights),
                         "--tile", "100"], monkeypatch, capsys)
    assert_clean_error(code, err, "--tile 100", "multiple of 32", "e.g. 96")
    assert not out.exists()


@pytest.mark.parametrize(
    ("number", "reason"),
    [(28, "no space left on device (ENOSPC)"), (13, "permission denied (EACCES)"),
     (30, "read-only file system (EROFS)"), (36, "file name too long (ENAMETOOLONG)")],
)
def test_os_errors_are_one_clean_line(scene, tmp_path, weights, monkeypatch, capsys,
                                      number, reason):
    """Disk full, no permission, read-only disk, long names: one unwrapped ``error:`` line
    naming the file, exit 1, no traceback (root ignores permissions, so the error is raised
    where the vector writer opens its output)."""
    import roadx.io

    out = tmp_path / ("a-long-folder-name-" * 4) / "roads.gpkg"
    out.parent.mkdir()

    def failing_write(network, path, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise OSError(number, os.strerror(number), str(path))

    monkeypatch.setattr(roadx.io, "write_roads", failing_write)
    code, err = run_cli(["predict", str(scene), "-o", str(out), "--weights", str(weights),
                         "--tta", "none"], monkeypatch, capsys)
    assert_clean_error(code, err, reason, str(out))
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and str(out) in error_lines[0]  # not wrapped at 80 columns
    assert not out.exists()


def test_sigterm_during_predict_cleans_up_and_exits_130(tmp_path):
    """``kill`` (SIGTERM, as sent by timeout and schedulers) during the forward passes: the
    run stops like Ctrl-C, removes its partial probability raster and writes nothing."""
    import signal
    import subprocess
    import time

    rng = np.random.default_rng(1)
    big = write_tif(tmp_path / "big.tif", rng.integers(0, 255, (3, 2048, 2048), dtype=np.uint8))
    weights = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    save_checkpoint(weights, create_model("d3fnet34", width=16), card=get_card("d3fnet34"),
                    model_kwargs={"width": 16})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadx", "predict", str(big), "-o", str(out_dir / "r.gpkg"),
         "--weights", str(weights), "--prob", str(out_dir / "p.tif"), "--tile", "256",
         "--tta", "d4", "--threads", "1", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the probability raster's partial file exists
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # into the forward passes
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []  # no output, no partial left behind
    assert big.stat().st_size > 0


def test_prob_naming_the_input_scene_is_refused_even_with_overwrite(scene, tmp_path, weights,
                                                                    monkeypatch, capsys):
    before = scene.read_bytes()
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    for target in (scene, link):
        code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "r.gpkg"),
                             "--weights", str(weights), "--prob", str(target), "--overwrite"],
                            monkeypatch, capsys)
        assert_clean_error(code, err, "is the input scene", "never writes over its input")
    assert scene.read_bytes() == before and not (tmp_path / "r.gpkg").exists()


def test_existing_shapefile_junctions_companion_fails_before_any_work(scene, tmp_path, weights,
                                                                      monkeypatch, capsys):
    companion = tmp_path / "roads_junctions.shp"
    companion.write_bytes(b"an earlier result")
    prob = tmp_path / "p.tif"
    code, err = run_cli(["predict", str(scene), "-o", str(tmp_path / "roads.shp"),
                         "--weights", str(weights), "--prob", str(prob)], monkeypatch, capsys)
    assert_clean_error(code, err, "roads_junctions.shp exists", "--overwrite")
    # refused before the probability raster was opened, i.e. before any window ran
    assert not prob.exists() and companion.read_bytes() == b"an earlier result"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
