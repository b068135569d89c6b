"""``--backend ray``: the same outputs as the local path, on a two-node loopback cluster.

A real Ray cluster is started by the module fixture: ``ray start --head`` plus a second
``ray start --address`` node on this machine (one CPU each, so the two workers land on
different nodes), and stopped at the end (by process id). The model is a width-8 D3FNet
with He-initialised convolutions, so the runs take seconds but the probabilities vary with
the image and the road layers are not empty. Scenes: two real SpaceNet scenes (Rotterdam
and Atlanta, UTM) and a generated scene split into 5 stripes.

The CLI batch with a corrupt scene and the interrupted-then-resumed batch run with the
``slow`` tests (``.ci/run`` runs them). Skipped only when Ray is not installed
(``pip install "roadx[ray]"``; CI installs it).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from roadx.batch import predict_many
from roadx.cli import main
from roadx.cli.predict import EXIT_SOME_FAILED
from roadx.models import create_model, get_card, save_checkpoint
from roadx.pipeline import ExtractOptions, extract, with_settings

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from roadx.ray_backend import RayBackend, RayOptions  # noqa: E402

ROTTERDAM = "spacenet_solaris/preproc_tutorial/pan1.tif"
ATLANTA = "spacenet_solaris/sample_geotiff.tif"
SETTINGS = {"tile_px": 160, "overlap_px": 64, "tta": "none", "batch_size": 3, "threads": 1}
RAY_BIN = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``ray start --block ...`` in its own process group (stopped by its pid)."""
    return subprocess.Popen(
        [RAY_BIN, "start", "--block", "--num-cpus=1", "--num-gpus=0",
         "--object-store-memory=80000000", "--disable-usage-stats",
         "--node-ip-address=127.0.0.1", *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _stop(nodes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the nodes this test started (their process groups, by pid), all at once."""
    running = [n for n in nodes if n.poll() is None]
    for node in running:
        os.killpg(node.pid, signal.SIGTERM)
    for node in running:
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A head node and a worker node on loopback; yields the head's address. Ray's token
    authentication is off for this throw-away cluster (nodes, driver and workers)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield from _cluster(tmp_path_factory.mktemp("ray-logs"))


def _cluster(logs: Path) -> Iterator[str]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _start_node(["--head", f"--port={port}", "--include-dashboard=false"],
                       logs / "head.log")
    nodes = [head]
    try:
        _wait_for_port(port, head, logs / "head.log")
        nodes.append(_start_node([f"--address={address}"], logs / "worker.log"))
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        try:
            deadline = time.monotonic() + 120
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                assert time.monotonic() < deadline, (logs / "worker.log").read_text()[-2000:]
                time.sleep(0.5)
        finally:
            ray.shutdown()
        yield address
    finally:
        _stop(nodes)


def _wait_for_port(port: int, node: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert node.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny weights, the two real scenes, a generated 512² scene and a corrupt GeoTIFF."""
    from roadx.train.synthetic import generate_scene

    root = tmp_path_factory.mktemp("ray-data")
    torch.manual_seed(0)
    model = create_model("d3fnet34", width=8)
    with torch.no_grad():  # He init: outputs that follow the image (a fresh net is flat)
        for name, p in model.named_parameters():
            if p.ndim == 4 and "bias" not in name:
                torch.nn.init.kaiming_normal_(p)
    weights = root / "w.safetensors"
    save_checkpoint(weights, model, card=get_card("d3fnet34"), model_kwargs={"width": 8})
    generated = root / "in" / "generated.tif"
    generated.parent.mkdir()
    image = generate_scene(3, size_px=512, gsd_m=1.0).image.transpose(2, 0, 1)
    with rasterio.open(generated, "w", driver="GTiff", count=3, height=512, width=512,
                       dtype="uint8", crs="EPSG:32611",
                       transform=Affine(1, 0, 500000, 0, -1, 4000000)) as dst:
        dst.write(image)
    broken = root / "in" / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a TIFF")
    return {"weights": weights, "rotterdam": shared_data / ROTTERDAM,
            "atlanta": shared_data / ATLANTA, "generated": generated, "broken": broken}


def _options(data: dict[str, Path], **more: object) -> ExtractOptions:
    return with_settings(ExtractOptions(weights=data["weights"]), {**SETTINGS, **more})


def _ray(address: str, **more: object) -> RayOptions:
    return RayOptions(address=address, workers=2, **more)  # type: ignore[arg-type]


def assert_same_roads(a: Path, b: Path) -> int:
    """Same features in both road files: attributes equal, geometries within 1e-6 m;
    returns the number of roads."""
    for layer in ("roads", "junctions"):
        fa, fb = gpd.read_file(a, layer=layer), gpd.read_file(b, layer=layer)
        assert len(fa) == len(fb), (layer, len(fa), len(fb))
        assert fa.crs == fb.crs
        assert fa.drop(columns="geometry").equals(fb.drop(columns="geometry")), layer
        assert fa.geometry.geom_equals_exact(fb.geometry, tolerance=1e-6).all(), layer
    return len(gpd.read_file(a, layer="roads"))


def test_ray_on_two_nodes_equals_local_and_merge_joins_scene_borders(
    data: dict[str, Path], cluster: str, tmp_path: Path
) -> None:
    scenes = [data["rotterdam"], data["atlanta"], data["generated"]]
    local = predict_many(scenes, tmp_path / "local", options=_options(data),
                         prob_dir=tmp_path / "local")
    # the generated scene: 5 grid rows of windows, one stripe each (plus a halo row)
    remote = predict_many(scenes, tmp_path / "ray", options=_options(data),
                          prob_dir=tmp_path / "ray", backend="ray",
                          ray=_ray(cluster, stripe_rows=1))
    assert local.ok == remote.ok == 3, (local.scenes, remote.scenes)
    assert remote.cluster is not None and "2 workers on 2 node(s)" in remote.cluster
    assert "0 worker restart" not in remote.cluster
    for scene in scenes:
        roads = assert_same_roads(tmp_path / "local" / f"{scene.stem}.gpkg",
                                  tmp_path / "ray" / f"{scene.stem}.gpkg")
        assert roads > 0
        with rasterio.open(tmp_path / "local" / f"{scene.stem}_prob.tif") as pa, \
                rasterio.open(tmp_path / "ray" / f"{scene.stem}_prob.tif") as pb:
            np.testing.assert_array_equal(pa.read(1), pb.read(1))
    index = json.loads((tmp_path / "ray" / "index.json").read_text())
    assert index["settings_hash"] == local.settings_hash  # resumable across backends
    stripes = int(remote.cluster.split("/")[1].split()[0])
    assert stripes >= 5 + 2  # the generated scene alone has 5


def test_a_worker_killed_mid_run_is_retried_and_the_output_is_identical(
    data: dict[str, Path], cluster: str, tmp_path: Path
) -> None:
    options = _options(data)
    extract(data["generated"], tmp_path / "local.gpkg", options=options)
    with RayBackend(options, _ray(cluster, stripe_rows=1, stripes_in_flight=4)) as backend:
        victim = backend.worker_pids[0]
        killed: list[int] = []

        def kill_when_running() -> None:  # SIGKILL worker 0 once the run is under way
            deadline = time.monotonic() + 60
            while backend.progress.stripes_done < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        result = backend.extract(data["generated"], tmp_path / "ray.gpkg")
        killer.join()
        progress = backend.progress
    assert killed == [victim]
    assert progress.worker_restarts >= 1 and progress.stripes_done == 5
    assert result.roads == assert_same_roads(tmp_path / "local.gpkg", tmp_path / "ray.gpkg")


@pytest.mark.slow  # two batches and a resumed one: about a minute
def test_cli_batch_with_a_corrupt_scene_then_resume_after_an_interrupt(
    data: dict[str, Path], cluster: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = ["roadx", "predict", str(data["rotterdam"]), str(data["broken"]), "-o", f"{out}/",
            "--weights", str(data["weights"]), "--tile", "160", "--overlap", "64",
            "--tta", "none", "--batch-size", "3", "--threads", "1",
            "--backend", "ray", "--ray-address", cluster, "--workers", "2"]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_SOME_FAILED, err
    index = {Path(e["scene"]).stem: e for e in
             json.loads((out / "index.json").read_text())["scenes"]}
    assert index["pan1"]["status"] == "ok" and index["pan1"]["roads"] > 0
    assert index["broken"]["status"] == "failed" and "broken.tif" in index["broken"]["error"]
    assert "Traceback" not in err and "ray: " in err and "failed" in err

    # interrupt a batch after its first scene (as Ctrl-C would), then run it again
    scenes = [data["rotterdam"], data["generated"]]
    folder = tmp_path / "resume"

    def stop_after_first(i: int, n: int, record: object) -> None:
        if getattr(record, "status") == "ok":
            raise KeyboardInterrupt

    ray_options = _ray(cluster, scenes_in_flight=1)
    with pytest.raises(KeyboardInterrupt):
        predict_many(scenes, folder, options=_options(data), backend="ray", ray=ray_options,
                     on_scene=stop_after_first)
    first = json.loads((folder / "index.json").read_text())["scenes"]
    assert [e["status"] for e in first] == ["ok", "pending"]
    done_before = (folder / "pan1.gpkg").stat().st_mtime_ns
    again = predict_many(scenes, folder, options=_options(data), backend="ray",
                         ray=ray_options, merge=folder / "merged.gpkg")
    assert [r.status for r in again.scenes] == ["skipped", "ok"]
    assert (folder / "pan1.gpkg").stat().st_mtime_ns == done_before
    merged = gpd.read_file(again.merged, layer="roads")  # 2 UTM zones: in the first one
    per_scene = [gpd.read_file(folder / f"{s.stem}.gpkg", layer="roads") for s in scenes]
    assert merged.crs == per_scene[0].crs and len(merged) == sum(map(len, per_scene))
    assert set(merged["scene"]) == {s.stem for s in scenes}  # not adjacent: nothing joined
