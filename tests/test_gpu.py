"""CUDA checks of the inference path (``python -m pytest -m gpu`` on a GPU machine).

Deselected by default (pyproject ``addopts``); they fail rather than pass vacuously when
selected on a machine without CUDA, so a GPU run that silently fell back to CPU is visible.
"""

import numpy as np
import pytest
import torch

from roadx.models import create_model, get_card
from roadx.predict import PredictOptions, predict_scene
from roadx.tiling import TileGrid

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 700 × 900 uint8 RGB scene with bright 'roads' on a textured background."""
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, size=(3, 700, 900), dtype=np.uint8)
    image[:, 300:312, :] = 200
    image[:, :, 400:410] = 200
    valid = np.ones((700, 900), dtype=bool)
    valid[:50, :80] = False
    return image, valid


def _predict(model: torch.nn.Module, scene: tuple[np.ndarray, np.ndarray],
             options: PredictOptions) -> np.ndarray:
    image, valid = scene

    def read(window):  # noqa: ANN001, ANN202
        out = np.zeros((3, window.height, window.width), np.uint8)
        ok = np.zeros((window.height, window.width), bool)
        r1, c1 = min(window.row_end, 700), min(window.col_end, 900)
        h, w = r1 - window.row_off, c1 - window.col_off
        out[:, :h, :w] = image[:, window.row_off:r1, window.col_off:c1]
        ok[:h, :w] = valid[window.row_off:r1, window.col_off:c1]
        return out, ok

    grid = TileGrid(700, 900, tile_px=512, overlap_px=128)
    card = get_card("d3fnet34")
    return np.concatenate([p for _, p in predict_scene(read, grid, model, card, options)])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    if not torch.cuda.is_available():
        pytest.fail("gpu tests selected but torch.cuda.is_available() is False")
    torch.manual_seed(0)
    return create_model("d3fnet34").eval()


def test_cuda_fp32_matches_cpu_fp32(model, scene) -> None:
    cpu = _predict(model, scene, PredictOptions(tta="flip", device="cpu", precision="fp32"))
    gpu = _predict(model, scene, PredictOptions(tta="flip", device="cuda", precision="fp32"))
    finite = np.isfinite(cpu)
    assert np.array_equal(finite, np.isfinite(gpu))
    assert float(np.abs(cpu[finite] - gpu[finite]).max()) < 1e-3


def test_cuda_auto_precision_is_close_to_fp32(model, scene) -> None:
    ref = _predict(model, scene, PredictOptions(tta="d4", device="cuda", precision="fp32"))
    auto = _predict(model, scene, PredictOptions(tta="d4", device="cuda"))
    finite = np.isfinite(ref)
    assert float(np.abs(ref[finite] - auto[finite]).max()) < 0.05
    assert float(np.abs(ref[finite] - auto[finite]).mean()) < 0.005


def test_cuda_compiled_model_matches_eager(model, scene) -> None:
    eager = _predict(model, scene, PredictOptions(tta="none", device="cuda", precision="fp32"))
    compiled = _predict(
        model, scene, PredictOptions(tta="none", device="cuda", precision="fp32", compile=True)
    )
    finite = np.isfinite(eager)
    assert float(np.abs(eager[finite] - compiled[finite]).max()) < 1e-3
