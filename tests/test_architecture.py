"""Import contracts: data flows one way, and heavy libraries stay where they belong.

Enforces the layer table of ``../shared/specs/style.md`` §5 by reading the import
statements of every module (ast), and checks that ``import roadx`` / ``roadx --help`` stay
light (no torch, rasterio or geopandas).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "roadx"

# layer of each top-level roadx part; a module may import only strictly lower layers
# (or its own part).
LAYER = {
    "errors": 0,
    "fs": 1,
    "tiling": 1,
    "io": 2,
    "models": 2,
    "vectorize": 2,
    "metrics": 2,
    "runtime": 2,
    "predict": 3,
    "pipeline": 4,
    "train": 4,
    "evaluation": 4,
    "ray_backend": 5,  # stripes of scenes on Ray actors (imports ray, lazily)
    "batch": 6,  # many scenes through pipeline.extract, one model load (local or Ray)
    "cli": 7,
}
# third-party packages and the roadx parts allowed to import them
CONFINED = {
    "torch": {"models", "runtime", "predict", "train"},
    "safetensors": {"models", "predict", "train"},
    "rasterio": {"io"},
    "pyogrio": {"io"},
    "fiona": {"io"},
    "PIL": {"io", "train"},  # train: JPEG artefacts of the domain augmentation (in memory)
    "typer": {"cli"},
    "rich": {"cli"},
    "click": set(),
    "skan": {"vectorize", "metrics"},
    "ray": {"ray_backend"},  # the optional extra, imported only by the Ray backend
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PKG.rglob("*.py") if _part(p) in LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_and_libraries_stay_confined(path: Path) -> None:
    part = _part(path)
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "roadx":
            sub = name.split(".")[1] if "." in name else None
            if sub is None or sub == part:
                continue
            assert sub in LAYER, f"{path.name} imports unknown roadx part {name}"
            assert LAYER[sub] < LAYER[part], (
                f"{path.relative_to(PKG)} (layer {part}) imports {name} (layer {sub}): "
                "imports must point down"
            )
        elif top in CONFINED:
            assert part in CONFINED[top], f"{path.relative_to(PKG)} imports {top}"


def test_import_roadx_and_help_are_light() -> None:
    code = (
        "import sys, roadx, roadx.cli;"
        "from typer.testing import CliRunner;"
        "r = CliRunner().invoke(roadx.cli.app, ['--help']);"
        "assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('torch', 'rasterio', 'geopandas', 'skimage') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by roadx --help: {out.stdout}"
