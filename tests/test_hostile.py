"""Hostile inputs through the real CLI (``roadx.cli.main``, as ``roadx`` runs it): every case
ends with exit code 1 (2 for usage errors typer catches), exactly one unwrapped ``error:``
line that names the file and the problem, no traceback, nothing left behind, and every file
that existed before (inputs, earlier outputs) byte-identical.

Fixtures are made here: tiny generated rasters, truncated copies, hand-made checkpoints and
run states. Read-only folders, read-only file systems and full disks are real where the
machine allows it (``chmod`` binds for non-root users; root may mount a read-only or a
64 KiB tmpfs) and simulated otherwise, by making roadx's own file creation in that folder
fail with the errno the operating system would give.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from safetensors.torch import load_file, save_file
from shapely.geometry import LineString
from tiny_data import make_dataset

from roadx.cli import main
from roadx.models import create_model, get_card, read_checkpoint_metadata, save_checkpoint

UTM = "EPSG:32611"
X0, Y0 = 500_000.0, 4_000_000.0
MARKER = "roadx-hostile-pickle-ran"


# ------------------------------------------------------------------------- the harness


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, by relative path."""
    tree: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        tree[rel] = None if path.is_dir() else path.read_bytes()
    return tree


def run(args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``roadx ARGS`` through main(); return (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["roadx", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), capsys.readouterr().err


def refused(args: list[str], root: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str], *needles: str, code: int = 1) -> str:
    """Run a hostile case and check everything a clean refusal must be; return the line."""
    before = snapshot(root)
    got, err = run(args, monkeypatch, capsys)
    assert got == code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err  # one line: not wrapped, not repeated
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    after = snapshot(root)
    assert after.keys() == before.keys(), (  # nothing new, nothing removed
        f"left behind: {sorted(after.keys() - before.keys())}, "
        f"removed: {sorted(before.keys() - after.keys())}")
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"changed: {changed}"  # inputs and earlier outputs byte-identical
    return lines[0]


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = UTM, gsd: float = 1.0,
              **profile: object) -> Path:
    count, height, width = data.shape
    meta = {"driver": "GTiff", "count": count, "height": height, "width": width,
            "dtype": data.dtype.name, **profile}
    if crs is not None:
        meta |= {"crs": crs, "transform": Affine(gsd, 0, X0, 0, -gsd, Y0)}
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data)
    return path


def truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def patched_weights(src: Path, dst: Path, *, card: dict[str, object] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """A copy of a checkpoint with card fields replaced, or its first conv weight cast."""
    meta, tensors = read_checkpoint_metadata(src), load_file(src)
    if card:
        fields = json.loads(meta["roadx.card"]) | card
        meta["roadx.card"] = json.dumps(fields)  # json writes inf/nan as Infinity/NaN
    if dtype is not None:
        key = next(k for k, v in tensors.items() if k.endswith("weight") and v.ndim == 4)
        tensors[key] = tensors[key].to(dtype)
    save_file(tensors, dst, metadata=meta)
    return dst


def evil_pickle(path: Path) -> Path:
    """A torch.save file whose unpickling would create the marker file (if ever run)."""
    marker = str(path.parent / MARKER)

    class Payload:
        def __reduce__(self):
            return (open, (marker, "w"))

    torch.save({"run": Payload(), "model": {}}, path)
    return path


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid d3fnet34 checkpoint (width 8, card GSD 1 m, 1024 px windows)."""
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8})
    return path


@pytest.fixture
def work(tmp_path: Path, weights: Path) -> Path:
    """A folder with a scene, a probability raster, weights, and an earlier output."""
    rng = np.random.default_rng(0)
    write_tif(tmp_path / "scene.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    prob = np.zeros((1, 64, 64), np.uint8)
    prob[0, 28:36, :] = 254
    write_tif(tmp_path / "prob.tif", prob, nodata=255)
    shutil.copy(weights, tmp_path / "w.safetensors")
    (tmp_path / "earlier.gpkg").write_bytes(b"an earlier result")
    return tmp_path


@pytest.fixture
def eval_files(tmp_path: Path) -> Path:
    roads = [LineString([(X0, Y0 - 50), (X0 + 200, Y0 - 50)]),
             LineString([(X0 + 100, Y0), (X0 + 100, Y0 - 150)])]
    gpd.GeoDataFrame(geometry=roads, crs=UTM).to_crs(4326).to_file(tmp_path / "gt.geojson")
    gpd.GeoDataFrame(geometry=roads[:1], crs=UTM).to_file(tmp_path / "pred.gpkg", layer="roads")
    return tmp_path


def feature_collection(path: Path, *coordinates: list[list[float]]) -> Path:
    features = [{"type": "Feature", "properties": {},
                 "geometry": {"type": "LineString", "coordinates": c}} for c in coordinates]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _can_create(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def simulate_unwritable(monkeypatch: pytest.MonkeyPatch, folder: Path, number: int) -> None:
    """Make file creation in ``folder`` fail with ``number`` for every roadx writer (they
    all start with a temporary file or folder from tempfile.mkstemp / mkdtemp)."""
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def inside(where: object) -> bool:
        return where is not None and Path(str(where)).resolve().is_relative_to(folder.resolve())

    def fail(where: object) -> OSError:
        return OSError(number, os.strerror(number), str(Path(str(where)) / "roadx-temporary"))

    def mkstemp(*args: object, dir: object = None, **kwargs: object):
        if inside(dir):
            raise fail(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdtemp(*args: object, dir: object = None, **kwargs: object):
        if inside(dir):
            raise fail(dir)
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


@pytest.fixture
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder without write permission: chmod 0555 where that binds (non-root users);
    as root, where it does not, roadx's file creation there fails with EACCES."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if _can_create(folder):
        simulate_unwritable(monkeypatch, folder, errno.EACCES)
    yield folder
    folder.chmod(0o755)


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs on ``folder`` (root with CAP_SYS_ADMIN only); True on success.
    ``ROADX_TEST_NO_MOUNT=1`` forces the simulated file systems."""
    if os.geteuid() != 0 or shutil.which("mount") is None or os.environ.get("ROADX_TEST_NO_MOUNT"):
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, check=False)
    return proc.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@pytest.fixture
def read_only_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a read-only file system: a real read-only tmpfs where it can be mounted,
    else roadx's file creation there fails with EROFS."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    mounted = _mount_tmpfs(folder, "ro,size=64k")
    if not mounted:
        simulate_unwritable(monkeypatch, folder, errno.EROFS)
    yield folder
    if mounted:
        _unmount(folder)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a 64 KiB file system: a real tmpfs where it can be mounted, else the free
    space reads as 64 KiB and GDAL's writes there fail as on a full disk."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = _mount_tmpfs(folder, "size=64k")
    if not mounted:
        import pyogrio
        from pyogrio.errors import DataSourceError

        real_usage, real_write = shutil.disk_usage, pyogrio.write_dataframe

        def usage(path: object):
            if Path(str(path)).resolve().is_relative_to(folder.resolve()):
                return real_usage(path)._replace(free=64 * 1024)
            return real_usage(path)

        def write(frame: object, path: object, *args: object, **kwargs: object) -> None:
            if Path(str(path)).resolve().is_relative_to(folder.resolve()):
                raise DataSourceError(f"{path}: sqlite3_exec failed: database or disk is full")
            return real_write(frame, path, *args, **kwargs)

        monkeypatch.setattr(shutil, "disk_usage", usage)
        monkeypatch.setattr(pyogrio, "write_dataframe", write)
    yield folder
    if mounted:
        _unmount(folder)


def predict_args(work: Path, out: str | Path = "roads.gpkg", *extra: str) -> list[str]:
    return ["predict", str(work / "scene.tif"), "-o", str(work / out), "--weights",
            str(work / "w.safetensors"), "--tta", "none", "-q", *extra]


# ------------------------------------------------------------------------- predict: outputs


def test_predict_into_a_read_only_folder(work, locked, monkeypatch, capsys):
    refused(predict_args(work, locked / "roads.gpkg"), work, monkeypatch, capsys,
            str(locked / "roads.gpkg"), "cannot write into the folder", "permission denied")


def test_predict_prob_into_a_read_only_folder(work, locked, monkeypatch, capsys):
    refused(predict_args(work, "roads.gpkg", "--prob", str(locked / "p.tif")), work,
            monkeypatch, capsys, str(locked / "p.tif"), "permission denied")


def test_predict_onto_a_read_only_file_system(work, read_only_fs, monkeypatch, capsys):
    refused(predict_args(work, read_only_fs / "roads.shp"), work, monkeypatch, capsys,
            str(read_only_fs / "roads.shp"), "read-only file system")


def test_predict_with_too_little_space_for_the_probability_raster(work, full_disk,
                                                                   monkeypatch, capsys):
    """A 64 px scene at 16 m is a 1024² grid at the card's 1 m: its probability raster
    needs about 350 KiB, refused before any window runs."""
    write_tif(work / "coarse.tif", np.full((3, 64, 64), 90, np.uint8), gsd=16.0)
    args = predict_args(work, "roads.gpkg", "--prob", str(full_disk / "p.tif"))
    args[1] = str(work / "coarse.tif")
    refused(args, work, monkeypatch, capsys, str(full_disk / "p.tif"), "needs about",
            "free on", "--force")


def test_predict_when_the_disk_fills_while_writing(work, full_disk, monkeypatch, capsys):
    """The GeoPackage does not fit 64 KiB: GDAL's failure is one line naming the file and
    the free space, and the temporary files are gone."""
    refused(predict_args(work, full_disk / "roads.gpkg"), work, monkeypatch, capsys,
            str(full_disk / "roads.gpkg"), "writing failed", "free there")


def test_predict_when_the_os_reports_enospc(work, monkeypatch, capsys):
    """ENOSPC from the operating system itself (e.g. while the probability raster's
    temporary file is created): one line with the reason; nothing left."""
    import roadx.io.probability

    def full(path: Path) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(roadx.io.probability, "partial_path", full)
    refused(predict_args(work, "roads.gpkg", "--prob", str(work / "p.tif")), work, monkeypatch,
            capsys, "p.tif", "no space left on device (ENOSPC)")


@pytest.mark.parametrize("length", [300, 251])
def test_predict_output_name_too_long(work, monkeypatch, capsys, length):
    """Over 255 bytes no file system takes it; at 251 + '.gpkg' the name fits but GDAL's
    '-journal' file beside it would not: both refused before any work."""
    name = "r" * (length - 5) + ".gpkg"
    refused(predict_args(work, name), work, monkeypatch, capsys, name, f"is {length} bytes",
            "Shorten it")


def test_predict_prob_name_too_long(work, monkeypatch, capsys):
    name = "p" * 290 + ".tif"
    refused(predict_args(work, "roads.gpkg", "--prob", str(work / name)), work, monkeypatch,
            capsys, name, "bytes")


def test_predict_existing_output_without_overwrite(work, monkeypatch, capsys):
    refused(predict_args(work, "earlier.gpkg"), work, monkeypatch, capsys, "earlier.gpkg",
            "--overwrite")


def test_predict_prob_is_the_input_scene(work, monkeypatch, capsys):
    refused(predict_args(work, "roads.gpkg", "--prob", str(work / "scene.tif"), "--overwrite"),
            work, monkeypatch, capsys, "scene.tif", "is the input scene")


# ------------------------------------------------------------------------- predict: sizes


def test_predict_tile_not_a_multiple_of_32(work, monkeypatch, capsys):
    refused(predict_args(work, "roads.gpkg", "--tile", "1000"), work, monkeypatch, capsys,
            "--tile 1000", "multiple of 32", "e.g. 992")


def test_predict_absurd_tile_is_refused_with_the_estimate(work, monkeypatch, capsys):
    """One 100,000² window (a multiple of 32) would need terabytes; refused before anything
    is allocated, also with --force."""
    refused(predict_args(work, "roads.gpkg", "--tile", "100000", "--force"), work, monkeypatch,
            capsys, "scene.tif", "1 window of 100000 px", "TiB of memory",
            "more than this machine has")


def _machine(monkeypatch: pytest.MonkeyPatch, available_gib: float, total_gib: float) -> None:
    """Make the memory check see a machine of the given size (estimates are deterministic)."""
    from roadx.runtime.memory import MemoryLimits

    limits = MemoryLimits(int(available_gib * 2**30), int(total_gib * 2**30))
    monkeypatch.setattr("roadx.runtime.memory.memory_limits", lambda: limits)


def test_predict_absurd_batch_size_is_refused_with_the_estimate(work, monkeypatch, capsys):
    """--batch-size 1000000 on a 6,400² grid (64 windows): all of them in one batch with 8
    views is about 10 GiB, more than the 4 GiB available on this (simulated) machine."""
    write_tif(work / "coarse.tif", np.full((3, 64, 64), 90, np.uint8), gsd=100.0)
    _machine(monkeypatch, available_gib=4, total_gib=16)
    args = predict_args(work, "roads.gpkg", "--batch-size", "1000000", "--tta", "d4")
    args[1] = str(work / "coarse.tif")
    refused(args, work, monkeypatch, capsys, "coarse.tif", "64 windows", "GiB of memory",
            "but only 4.0 GiB is available", "--force")


def test_predict_batch_size_beyond_the_scene_needs_no_more_memory(work, monkeypatch, capsys):
    """The same batch size on a scene of one window: the batch is the scene, and it runs."""
    _machine(monkeypatch, available_gib=2, total_gib=2)
    code, err = run(predict_args(work, "roads.gpkg", "--batch-size", "1000000"), monkeypatch,
                    capsys)
    assert code == 0, err
    assert (work / "roads.gpkg").exists()


def test_predict_huge_window_count_needs_force(work, monkeypatch, capsys):
    """A 64 px scene at 2 km/px resampled to 1 m: 27,889 windows (the issue's Landsat case)."""
    write_tif(work / "landsat.tif", np.full((3, 64, 64), 90, np.uint8), gsd=2000.0)
    _machine(monkeypatch, available_gib=256, total_gib=256)
    args = predict_args(work, "roads.gpkg")
    args[1] = str(work / "landsat.tif")
    refused(args, work, monkeypatch, capsys, "landsat.tif", "27,889 windows",
            "more than the 20,000", "--force")


@pytest.mark.parametrize(
    ("card", "needles"),
    [({"gsd_m": 1e-6}, ("windows", "more than this machine has")),
     ({"gsd_m": 1e-12}, ("larger than GDAL can address",)),
     ({"gsd_m": float("inf")}, ("gsd_m=inf", "finite")),
     ({"gsd_m": float("nan")}, ("gsd_m=nan",)),
     ({"bands": [{"name": "B", "scale": float("inf")}]}, ("band 'B' has scale=inf",)),
     ({"tile_px": 1000.5}, ("tile_px=1000.5",))],
    ids=["gsd-1e-6", "gsd-1e-12", "gsd-inf", "gsd-nan", "scale-inf", "tile-float"],
)
def test_predict_with_an_absurd_weights_card(work, monkeypatch, capsys, card, needles):
    bad = patched_weights(work / "w.safetensors", work / "bad.safetensors", card=card)
    args = predict_args(work, "roads.gpkg", "--force")
    args[args.index("--weights") + 1] = str(bad)
    where = "scene.tif" if card.get("gsd_m") in (1e-6, 1e-12) else "bad.safetensors"
    refused(args, work, monkeypatch, capsys, where, *needles)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_predict_with_weights_of_the_wrong_dtype(work, monkeypatch, capsys, dtype):
    bad = patched_weights(work / "w.safetensors", work / "bad.safetensors", dtype=dtype)
    args = predict_args(work)
    args[args.index("--weights") + 1] = str(bad)
    refused(args, work, monkeypatch, capsys, "bad.safetensors", "wrong type",
            str(dtype).removeprefix("torch."))


def test_predict_with_truncated_weights(work, monkeypatch, capsys):
    bad = truncated(work / "w.safetensors", work / "cut.safetensors")
    args = predict_args(work)
    args[args.index("--weights") + 1] = str(bad)
    refused(args, work, monkeypatch, capsys, "cut.safetensors", "corrupt")


# ------------------------------------------------------------------------- predict: scenes


def test_predict_a_raster_whose_only_band_is_alpha(work, monkeypatch, capsys):
    from rasterio.enums import ColorInterp

    alpha = write_tif(work / "alpha.tif", np.full((1, 64, 64), 255, np.uint8))
    with rasterio.open(alpha, "r+") as dst:
        dst.colorinterp = [ColorInterp.alpha]
    args = predict_args(work)
    args[1] = str(alpha)
    refused(args, work, monkeypatch, capsys, "alpha.tif", "only alpha", "--bands 1")


def test_predict_a_truncated_geotiff(work, monkeypatch, capsys):
    cut = truncated(work / "scene.tif", work / "cut.tif")
    args = predict_args(work, "roads.gpkg", "--prob", str(work / "p.tif"))
    args[1] = str(cut)
    refused(args, work, monkeypatch, capsys, "cut.tif", "corrupt or truncated")


def test_predict_a_text_file_named_tif(work, monkeypatch, capsys):
    (work / "notes.tif").write_text("not an image")
    args = predict_args(work)
    args[1] = str(work / "notes.tif")
    refused(args, work, monkeypatch, capsys, "notes.tif", "not a raster")


# ------------------------------------------------------------------------- vectorize


def vectorize_args(work: Path, src: str | Path = "prob.tif", out: str | Path = "roads.gpkg",
                   *extra: str) -> list[str]:
    return ["vectorize", str(work / src), "-o", str(work / out), "-q", *extra]


def test_vectorize_a_truncated_geotiff(work, monkeypatch, capsys):
    big = np.zeros((1, 1024, 1024), np.uint8)
    big[0, 500:520, :] = 254
    write_tif(work / "big.tif", big, nodata=255, tiled=True, blockxsize=256, blockysize=256,
              compress="deflate")
    cut = truncated(work / "big.tif", work / "cut.tif")
    refused(vectorize_args(work, cut), work, monkeypatch, capsys, "cut.tif",
            "corrupt or truncated")


def test_vectorize_logits_instead_of_probabilities(work, monkeypatch, capsys):
    write_tif(work / "logits.tif", np.full((1, 8, 8), -3.0, np.float32))
    refused(vectorize_args(work, "logits.tif"), work, monkeypatch, capsys, "logits.tif",
            "expected probabilities in [0, 1]")


def test_vectorize_into_a_read_only_folder(work, locked, monkeypatch, capsys):
    refused(vectorize_args(work, "prob.tif", locked / "roads.geojson"), work, monkeypatch,
            capsys, str(locked / "roads.geojson"), "permission denied")


def test_vectorize_onto_a_full_disk(work, full_disk, monkeypatch, capsys):
    refused(vectorize_args(work, "prob.tif", full_disk / "roads.gpkg"), work, monkeypatch,
            capsys, str(full_disk / "roads.gpkg"), "writing failed")


def test_vectorize_output_name_too_long(work, monkeypatch, capsys):
    name = "v" * 300 + ".shp"
    refused(vectorize_args(work, "prob.tif", name), work, monkeypatch, capsys, name, "bytes")


def test_vectorize_existing_junctions_companion(work, monkeypatch, capsys):
    (work / "roads_junctions.geojson").write_text("{}")
    refused(vectorize_args(work, "prob.tif", "roads.geojson"), work, monkeypatch, capsys,
            "roads_junctions.geojson", "--overwrite")


# ------------------------------------------------------------------------- eval


def eval_args(root: Path, pred: str | Path = "pred.gpkg", gt: str | Path = "gt.geojson",
              *extra: str) -> list[str]:
    return ["eval", str(root / pred), str(root / gt), "-q", *extra]


def test_eval_report_pointing_at_a_file(eval_files, monkeypatch, capsys):
    (eval_files / "report.txt").write_text("not a folder")
    refused(eval_args(eval_files, "pred.gpkg", "gt.geojson", "--report",
                      str(eval_files / "report.txt")), eval_files, monkeypatch, capsys,
            "report.txt", "is a file")


def test_eval_report_below_a_file(eval_files, monkeypatch, capsys):
    (eval_files / "report.txt").write_text("not a folder")
    refused(eval_args(eval_files, "pred.gpkg", "gt.geojson", "--report",
                      str(eval_files / "report.txt" / "sub")), eval_files, monkeypatch, capsys,
            "report.txt", "cannot be created")


def test_eval_report_in_an_unwritable_folder(eval_files, monkeypatch, capsys):
    locked = eval_files / "locked"
    locked.mkdir()
    simulate_unwritable(monkeypatch, locked, errno.EACCES)
    refused(eval_args(eval_files, "pred.gpkg", "gt.geojson", "--report", str(locked / "r")),
            eval_files, monkeypatch, capsys, str(locked / "r"), "permission denied")


def test_eval_with_an_empty_ground_truth(eval_files, monkeypatch, capsys):
    feature_collection(eval_files / "empty.geojson")
    refused(eval_args(eval_files, "pred.gpkg", "empty.geojson"), eval_files, monkeypatch,
            capsys, "empty.geojson", "holds no road")


def test_eval_with_nan_only_ground_truth(eval_files, monkeypatch, capsys):
    path = eval_files / "nan.geojson"
    feature_collection(path, [[0.0, 0.0], [1.0, 1.0]])
    path.write_text(path.read_text().replace("0.0", "NaN").replace("1.0", "NaN"))
    refused(eval_args(eval_files, "pred.gpkg", "nan.geojson"), eval_files, monkeypatch, capsys,
            "nan.geojson", "NaN")


def test_eval_with_a_nan_prediction(eval_files, monkeypatch, capsys):
    path = eval_files / "nanpred.geojson"
    feature_collection(path, [[-117.0, 36.1], [-116.9, 36.1]], [[0.5, 0.5], [0.5, 0.5]])
    path.write_text(path.read_text().replace("0.5", "NaN"))
    refused(eval_args(eval_files, "nanpred.geojson", "gt.geojson"), eval_files, monkeypatch,
            capsys, "nanpred.geojson", "in 1 of 2 features", "0-based: 1")


def test_eval_with_absurd_coordinates(eval_files, monkeypatch, capsys):
    feature_collection(eval_files / "absurd.geojson", [[-115.0, 36.1], [1e10, 1e10]])
    refused(eval_args(eval_files, "pred.gpkg", "absurd.geojson"), eval_files, monkeypatch,
            capsys, "absurd.geojson", "out-of-range")


def test_eval_with_a_stray_vertex_across_the_world(eval_files, monkeypatch, capsys):
    feature_collection(eval_files / "stray.geojson", [[-117.0, 36.14], [-116.99, 36.14]],
                       [[-117.0, 36.14], [179.0, 80.0]])
    refused(eval_args(eval_files, "stray.geojson", "gt.geojson"), eval_files, monkeypatch,
            capsys, "stray.geojson", "km ×", "up to 1,000 km across")


def test_eval_over_a_huge_area_needs_force(eval_files, monkeypatch, capsys):
    feature_collection(eval_files / "wide.geojson", [[-117.0, 36.14], [-116.99, 36.14]],
                       [[-117.5, 35.5], [-116.4, 36.6]])
    refused(eval_args(eval_files, "pred.gpkg", "wide.geojson"), eval_files, monkeypatch,
            capsys, "wide.geojson", "km²", "--force")


def test_eval_with_unreadable_vectors(eval_files, monkeypatch, capsys):
    (eval_files / "broken.geojson").write_text("{ this is not json")
    refused(eval_args(eval_files, "broken.geojson", "gt.geojson"), eval_files, monkeypatch,
            capsys, "broken.geojson", "cannot read road vectors")


def test_eval_existing_report_without_overwrite(eval_files, monkeypatch, capsys):
    (eval_files / "rep").mkdir()
    (eval_files / "rep" / "report.json").write_text("{}")
    refused(eval_args(eval_files, "pred.gpkg", "gt.geojson", "--report",
                      str(eval_files / "rep")), eval_files, monkeypatch, capsys, "rep",
            "--overwrite")


def test_eval_accepts_3d_coordinates_and_drops_z(eval_files, monkeypatch, capsys):
    """Not an error: Z is dropped (EPSG:4979 becomes 2-D) and the scores equal the 2-D ones."""
    gt = gpd.read_file(eval_files / "gt.geojson")
    coords = [[[x, y, 612.5] for x, y in geom.coords] for geom in gt.geometry]
    feature_collection(eval_files / "gt3d.geojson", *coords)
    reports = []
    for name in ("gt.geojson", "gt3d.geojson"):
        monkeypatch.setattr(sys, "argv", ["roadx", *eval_args(eval_files, "pred.gpkg", name,
                                                               "--json")])
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        assert exc.value.code in (0, None), captured.err
        reports.append(json.loads(captured.out))
    assert reports[0]["apls"]["apls"] == pytest.approx(reports[1]["apls"]["apls"])
    assert reports[0]["ccq"] == pytest.approx(reports[1]["ccq"])


# ------------------------------------------------------------------------- train


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """A one-epoch CPU run of a width-8 model (settings file beside the data folder)."""
    toml = data.parent / "tiny.toml"
    if not toml.exists():
        toml.write_text("model_kwargs = { width = 8 }\n")
    return ["train", "--data", str(data), "-o", str(out), "--config", str(toml), "--epochs", "1",
            "--samples-per-epoch", "2", "--batch-size", "1", "--crop", "64", "--val-crop", "64",
            "--val-fraction", "0.25", "--device", "cpu", "--threads", "1", "--gsd", "1",
            "--precision", "fp32", "-q", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of a width-8 model on a generated dataset (its folder)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_dataset(root / "ds")
    argv = sys.argv
    sys.argv = ["roadx", *train_args(data, root / "run")]
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        sys.argv = argv
    return root / "run"


def run_folder(tmp_path: Path, trained: Path, state: Path | bytes | None) -> Path:
    """A copy of the trained run folder whose state.pt is replaced (or removed)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    if isinstance(state, bytes):
        (run_dir / "state.pt").write_bytes(state)
    elif isinstance(state, Path):
        shutil.move(state, run_dir / "state.pt")
    else:
        (run_dir / "state.pt").unlink()
    return run_dir


def test_train_resume_refuses_a_pickle_that_would_run_code(tmp_path, trained, monkeypatch,
                                                           capsys):
    run_dir = run_folder(tmp_path, trained, evil_pickle(tmp_path / "evil.pt"))
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "state.pt", "not a readable roadx run state", "never run")
    assert not (tmp_path / MARKER).exists()


def test_train_resume_on_a_corrupt_state(tmp_path, trained, monkeypatch, capsys):
    run_dir = run_folder(tmp_path, trained, os.urandom(4096))
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "state.pt", "not a readable roadx run state")


def test_train_resume_on_a_truncated_state(tmp_path, trained, monkeypatch, capsys):
    run_dir = run_folder(tmp_path, trained, (trained / "state.pt").read_bytes()[:5000])
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "state.pt", "not a readable roadx run state")


@pytest.mark.parametrize(
    ("content", "needle"),
    [([1, 2, 3], "a list, expected a dict"),
     ({"run": {"epoch": 1}, "model": {}, "optimizer": {}, "config": {}, "x": 1}, None),
     ({"run": {"epoch": 1, "bogus": 2}, "model": {}, "optimizer": {}, "config": {}},
      "unknown run fields"),
     ({"run": {"epoch": -4}, "model": {}, "optimizer": {}, "config": {}}, "negative"),
     ({"run": {"epoch": "1"}, "model": {}, "optimizer": {}, "config": {}}, "'epoch'")],
    ids=["list", "empty-model", "unknown-field", "negative-epoch", "str-epoch"],
)
def test_train_resume_on_a_state_of_the_wrong_layout(tmp_path, trained, monkeypatch, capsys,
                                                     content, needle):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    run_dir = run_folder(tmp_path, trained, path)
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "state.pt", needle or "does not fit this run")


def test_train_resume_without_a_saved_state(tmp_path, trained, monkeypatch, capsys):
    run_dir = run_folder(tmp_path, trained, None)
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "state.pt not found", "without --resume")


def test_train_resume_with_a_corrupt_config(tmp_path, trained, monkeypatch, capsys):
    run_dir = run_folder(tmp_path, trained, (trained / "state.pt").read_bytes())
    (run_dir / "config.json").write_text('{"data": ["a"')
    refused(["train", "--resume", str(run_dir), "-q"], tmp_path, monkeypatch, capsys,
            "config.json", "cannot be read")


def test_train_output_is_a_file(tmp_path, monkeypatch, capsys):
    data = make_dataset(tmp_path / "ds")
    (tmp_path / "run").write_text("a file")
    refused(train_args(data, tmp_path / "run"), tmp_path, monkeypatch, capsys, "run",
            "is a file")


def test_train_into_a_read_only_folder(tmp_path, locked, monkeypatch, capsys):
    data = make_dataset(tmp_path / "ds")
    args = train_args(data, locked / "run")
    refused(args, tmp_path, monkeypatch, capsys, str(locked / "run"), "permission denied")


def test_train_on_a_missing_dataset(tmp_path, monkeypatch, capsys):
    refused(train_args(tmp_path / "nowhere", tmp_path / "run"), tmp_path, monkeypatch, capsys,
            "nowhere", "not found")


# ------------------------------------------------------------------------- convert-weights


def convert_args(src: Path, dst: Path, *extra: str) -> list[str]:
    return ["convert-weights", str(src), "-o", str(dst), *extra]


def test_convert_a_file_that_is_not_safetensors(work, monkeypatch, capsys):
    (work / "fake.safetensors").write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    refused(convert_args(work / "fake.safetensors", work / "o.safetensors", "--storage", "int8"),
            work, monkeypatch, capsys, "fake.safetensors", "not a safetensors file")


def test_convert_a_truncated_safetensors(work, monkeypatch, capsys):
    cut = truncated(work / "w.safetensors", work / "cut.safetensors")
    refused(convert_args(cut, work / "o.safetensors", "--storage", "int8"), work, monkeypatch,
            capsys, "cut.safetensors", "corrupt")


@pytest.mark.parametrize("through_link", [False, True])
def test_convert_onto_its_input(work, monkeypatch, capsys, through_link):
    dst = work / "w.safetensors"
    if through_link:
        dst = work / "link.safetensors"
        dst.symlink_to(work / "w.safetensors")
    refused(convert_args(work / "w.safetensors", dst, "--storage", "int8", "--overwrite"), work,
            monkeypatch, capsys, dst.name, "is the input")


def test_convert_a_th_file_that_is_not_a_torch_file(work, monkeypatch, capsys):
    (work / "log01_dink34.th").write_bytes(b"<html>404 Not Found</html>")
    refused(convert_args(work / "log01_dink34.th", work / "o.safetensors"), work, monkeypatch,
            capsys, "log01_dink34.th", "not a PyTorch checkpoint that can be read safely")


def test_convert_a_th_pickle_that_would_run_code(work, monkeypatch, capsys):
    evil_pickle(work / "evil.th")
    refused(convert_args(work / "evil.th", work / "o.safetensors"), work, monkeypatch, capsys,
            "evil.th", "never run")
    assert not (work / MARKER).exists()


def test_convert_weights_of_the_wrong_dtype(work, monkeypatch, capsys):
    bad = patched_weights(work / "w.safetensors", work / "bad.safetensors", dtype=torch.int64)
    refused(convert_args(bad, work / "o.safetensors", "--storage", "int8"), work, monkeypatch,
            capsys, "bad.safetensors", "wrong type")


def test_convert_into_a_read_only_folder(work, locked, monkeypatch, capsys):
    refused(convert_args(work / "w.safetensors", locked / "o.safetensors", "--storage", "int8"),
            work, monkeypatch, capsys, str(locked / "o.safetensors"), "permission denied")


def test_convert_onto_an_existing_output(work, monkeypatch, capsys):
    (work / "o.safetensors").write_bytes(b"keep me")
    refused(convert_args(work / "w.safetensors", work / "o.safetensors", "--storage", "int8"),
            work, monkeypatch, capsys, "o.safetensors", "--overwrite")
