"""The precision policy (chosen by hardware capability) and how predict honours it.

The CPU and GPU capability checks are patched both ways, so these tests do not depend on the
machine they run on; forward passes run in whatever precision the machine itself picks unless
a test forces one.
"""

import logging

import numpy as np
import pytest
import torch

from roadx.errors import DeviceError, InputError
from roadx.models import ModelCard, uniform_bands
from roadx.predict import PredictOptions, predict_scene
from roadx.runtime import choose_precision, cpu_bf16_features
from roadx.tiling import TileGrid

CPU = torch.device("cpu")


def _cpu_features(monkeypatch: pytest.MonkeyPatch, *, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def _cuda(monkeypatch: pytest.MonkeyPatch, *, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")],
)
def test_auto_on_cpu_uses_bf16_only_with_native_support(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: str
) -> None:
    _cpu_features(monkeypatch, avx512_bf16=avx512_bf16, amx=amx)
    choice = choose_precision("auto", CPU)
    assert choice.name == expected
    assert choice.reason.startswith("auto:")
    if expected == "fp32":
        assert "no AVX512-BF16/AMX" in choice.reason
        assert choice.dtype == torch.float32
    else:
        assert ("AMX" in choice.reason) == amx
        assert ("AVX512-BF16" in choice.reason) == avx512_bf16
        assert choice.dtype == torch.bfloat16
    found = [n for n, on in (("AVX512-BF16", avx512_bf16), ("AMX", amx)) if on]
    assert cpu_bf16_features() == found


def test_explicit_precision_on_cpu_is_honoured_with_a_warning_when_emulated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cpu_features(monkeypatch, avx512_bf16=False, amx=False)
    assert choose_precision("fp32", CPU).name == "fp32"
    with caplog.at_level(logging.WARNING, logger="roadx"):
        forced = choose_precision("bf16", CPU)
    assert forced.name == "bf16" and forced.reason == "requested"
    assert "20-150x slower" in caplog.text
    caplog.clear()
    _cpu_features(monkeypatch, avx512_bf16=True, amx=False)
    with caplog.at_level(logging.WARNING, logger="roadx"):
        assert choose_precision("bf16", CPU).name == "bf16"
    assert caplog.text == ""


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_bf16_where_supported_else_fp16(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str
) -> None:
    _cuda(monkeypatch, bf16=bf16)
    choice = choose_precision("auto", torch.device("cuda"))
    assert choice.name == expected and "Test GPU" in choice.reason
    assert choice.needs_grad_scaler == (expected == "fp16")


def test_bf16_on_a_gpu_without_bf16_and_unknown_names_are_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cuda(monkeypatch, bf16=False)
    with pytest.raises(DeviceError, match="does not support bf16"):
        choose_precision("bf16", torch.device("cuda"))
    assert choose_precision("fp16", torch.device("cuda")).name == "fp16"
    with pytest.raises(InputError, match="unknown precision 'fp64'"):
        choose_precision("fp64", CPU)
    with pytest.raises(InputError, match="unknown precision"):
        PredictOptions(precision="half")  # type: ignore[arg-type]


def test_autocast_context_computes_in_the_chosen_dtype() -> None:
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with choose_precision("fp32", CPU).autocast(CPU):
        assert layer(x).dtype == torch.float32
    with choose_precision("bf16", CPU).autocast(CPU):
        assert layer(x).dtype == torch.bfloat16


class RecordsPrecision(torch.nn.Module):
    """Logits 0 everywhere; records the autocast state and memory format of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, torch.dtype, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((
            torch.is_autocast_enabled("cpu"),
            torch.get_autocast_dtype("cpu"),
            x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
        ))
        return x[:, :1] * 0.0


CARD = ModelCard(name="d3fnet34", tile_px=64, bands=uniform_bands("BGR", 1 / 255, 0.0))


def _run(model: torch.nn.Module, options: PredictOptions) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    valid = np.ones((64, 64), dtype=bool)

    def read(window):  # noqa: ANN001, ANN202
        return image, valid

    grid = TileGrid(64, 64, tile_px=64, overlap_px=0)
    return np.concatenate([p for _, p in predict_scene(read, grid, model, CARD, options)])


@pytest.mark.parametrize("native_bf16", [False, True])
def test_predict_runs_in_the_precision_the_policy_picks(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    _cpu_features(monkeypatch, avx512_bf16=native_bf16, amx=False)
    model = RecordsPrecision()
    prob = _run(model, PredictOptions(tta="none", device="cpu"))
    enabled, dtype, channels_last = model.calls[0]
    assert enabled == native_bf16
    if native_bf16:
        assert dtype == torch.bfloat16
    assert channels_last  # NHWC input by default
    np.testing.assert_allclose(prob, 0.5)  # sigmoid(0), float32 whatever the precision
    assert prob.dtype == np.float32

    forced = RecordsPrecision()
    _run(forced, PredictOptions(tta="none", device="cpu", precision="fp32", channels_last=False))
    assert forced.calls[0][0] is False and forced.calls[0][2] is False

