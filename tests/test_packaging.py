"""Packaging: the package list is complete, and a built wheel carries and finds the default
weights (installed into a fresh virtual environment, run from outside the source tree)."""

import hashlib
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "roadx").rglob("__init__.py")
    }
    assert found | {"roadx.weights"} == listed
    assert config["package-dir"]["roadx.weights"] == "weights"


def test_weights_dir_variable_overrides_the_packaged_weights(tmp_path, monkeypatch) -> None:
    from roadx.pipeline import default_weights_path

    assert default_weights_path().is_file()  # the shipped weights, from the package data
    monkeypatch.setenv("ROADX_WEIGHTS_DIR", str(tmp_path))
    assert default_weights_path("d3fnet34") == tmp_path / "d3fnet34.safetensors"


@pytest.mark.slow
def test_wheel_installs_with_the_default_weights(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheel_dir)],
        check=True,
    )
    (wheel,) = wheel_dir.glob("roadx-*.whl")
    shipped = (ROOT / "weights" / "d3fnet34.safetensors").read_bytes()
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.read("roadx/weights/d3fnet34.safetensors")
    assert hashlib.sha256(packed).hexdigest() == hashlib.sha256(shipped).hexdigest()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k != "ROADX_WEIGHTS_DIR"}
    out = subprocess.run(
        [str(python), "-c",
         "import json, roadx; from roadx.pipeline import default_weights_path as d; "
         "print(json.dumps([roadx.__file__, str(d())]))"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
    )
    module, weights = json.loads(out.stdout)
    assert module.startswith(str(venv)) and weights.startswith(str(venv))
    assert Path(weights).read_bytes() == shipped
