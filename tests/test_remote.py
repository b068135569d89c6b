"""Remote input: GDAL paths and URLs reach GDAL untouched (issue #14). A loopback HTTP server
with range requests (what GDAL's /vsicurl/ needs) serves real SpaceNet rasters from
../shared/data; `roadx vectorize` and `roadx predict` read them by URL, and the result equals
the local run."""

import json
import os
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import geopandas as gpd
import pytest
import torch
from typer.testing import CliRunner

from roadx.cli import app


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (HTTP 206)."""

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):  # type: ignore[no-untyped-def]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            chunk = source.read(min(65536, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)
        self._remaining = None
        return None


@pytest.fixture(scope="module")
def server(shared_data: Path):
    handler = partial(RangeHandler, directory=str(shared_data / "spacenet_solaris"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("form", ["https_style", "vsicurl"])
def test_vectorize_reads_a_url(server: str, shared_data: Path, tmp_path: Path,
                               form: str) -> None:
    url = f"{server}/sample_road_raster_mask.tif"
    source = url if form == "https_style" else f"/vsicurl/{url}"
    remote = invoke("vectorize", source, "-o", str(tmp_path / "remote.gpkg"))
    local = invoke("vectorize", str(shared_data / "spacenet_solaris" /
                                    "sample_road_raster_mask.tif"),
                   "-o", str(tmp_path / "local.gpkg"))
    assert remote["probability"] == source  # the URL, not a folded path
    assert (remote["roads"], remote["total_km"]) == (local["roads"], local["total_km"])
    a = gpd.read_file(tmp_path / "remote.gpkg", layer="roads")
    b = gpd.read_file(tmp_path / "local.gpkg", layer="roads")
    assert a.geometry.equals(b.geometry)


def test_predict_reads_a_url(server: str, tmp_path: Path) -> None:
    from roadx.models import create_model, get_card, save_checkpoint

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_checkpoint(weights, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8})
    url = f"{server}/road_mask_input.tif"  # SpaceNet Vegas pan, uint16, EPSG:4326
    report = invoke("predict", url, "-o", str(tmp_path / "roads.gpkg"), "--weights",
                    str(weights), "--tta", "none", "--device", "cpu")
    assert report["scene"] == url and report["crs"] == "EPSG:4326"
    assert report["windows"] >= 1 and (tmp_path / "roads.gpkg").exists()


def test_a_missing_url_is_a_clean_error(server: str, tmp_path: Path, monkeypatch,
                                        capsys) -> None:
    import sys

    from roadx.cli import main

    url = f"{server}/nope.tif"
    monkeypatch.setattr(sys, "argv", ["roadx", "vectorize", url, "-o", str(tmp_path / "r.gpkg")])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert f"error: {url} is not a raster GDAL can read (HTTP response code: 404)" in err
    assert "Traceback" not in err and not os.listdir(tmp_path)
