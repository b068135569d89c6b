"""Model card v2: per-band specs, input multiple, and version-1 cards migrated on read."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from roadx.errors import InputError
from roadx.models import (
    BandSpec,
    ModelCard,
    create_model,
    imagenet_rgb_bands,
    load_checkpoint,
    read_checkpoint_metadata,
    uniform_bands,
)
from roadx.models.checkpoint import restore_checkpoint
from roadx.predict import PredictOptions
from roadx.predict.engine import _Forward
from roadx.runtime import choose_precision
from roadx.train.data import to_tensors

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "d3fnet34.safetensors"
V1_CARD = {  # a card as roadx wrote it before card v2 (the shipped weights carry one)
    "name": "dlinknet34", "bands": ["B", "G", "R"], "input_scale": 3.2 / 255,
    "input_offset": -1.6, "gsd_m": 0.5, "tile_px": 1024, "output": "logits",
    "license": "MIT", "paper": "", "description": "old", "training": {"epochs": 3},
}


def old_formula(images: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """The network input as roadx computed it from a version-1 card (scalar scale/offset)."""
    return images.to(torch.float32).mul_(scale).add_(offset)


def engine_input(card: ModelCard, images: torch.Tensor) -> torch.Tensor:
    options = PredictOptions(device="cpu", precision="fp32")
    device = torch.device("cpu")
    return _Forward(torch.nn.Identity(), card, device, choose_precision("fp32", device),
                    options).scale(images)


def test_shipped_weights_have_a_version_1_card_that_migrates_to_identical_inputs() -> None:
    raw = json.loads(read_checkpoint_metadata(SHIPPED)["roadx.card"])
    assert "card_version" not in raw and raw["bands"] == ["B", "G", "R"]  # written by v1
    _, card = load_checkpoint(SHIPPED)
    assert card.band_names == ("B", "G", "R") and card.in_chans == 3
    assert {b.role for b in card.bands} == {"rgb"}
    assert card.input_multiple_px == 32 and card.output_stride == 1
    assert card.gsd_m == raw["gsd_m"] and card.training == raw["training"]
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64),
                                                                 dtype=np.uint8))
    expected = old_formula(images, raw["input_scale"], raw["input_offset"])
    assert torch.equal(engine_input(card, images), expected)  # bit-identical inference input
    # training builds the same input from the (H, W, 3) RGB crop
    rgb = images[0].numpy()[::-1].transpose(1, 2, 0)  # BGR planes -> RGB pixels
    ones = np.ones(rgb.shape[:2], bool)
    x_new, _, _ = to_tensors(rgb, ones, ones, channels=(2, 1, 0), scale=card.input_scales,
                             offset=card.input_offsets)
    x_old, _, _ = to_tensors(rgb, ones, ones, channels=(2, 1, 0), scale=raw["input_scale"],
                             offset=raw["input_offset"])
    assert torch.equal(x_new, x_old)
    torch.testing.assert_close(x_new, expected[0])


def test_old_format_checkpoint_loads_and_converts_to_a_version_2_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("dlinknet34", width=8).eval()
    old = tmp_path / "old.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, old, metadata={
        "roadx.model": "dlinknet34", "roadx.model_kwargs": json.dumps({"width": 8}),
        "roadx.card": json.dumps(V1_CARD), "roadx.version": "0.1.0",
    })
    loaded, card = load_checkpoint(old)
    assert card == ModelCard.from_dict(V1_CARD)
    assert card.band_names == ("B", "G", "R") and card.input_offsets == (-1.6,) * 3
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    # `roadx convert-weights` re-writes it; the new file carries a version-2 card
    new = restore_checkpoint(old, tmp_path / "new.safetensors", storage="int8")
    raw = json.loads(read_checkpoint_metadata(new)["roadx.card"])
    assert raw["card_version"] == 2 and raw["bands"][0]["name"] == "B"
    _, card2 = load_checkpoint(new)
    assert card2.bands == card.bands and card2.description == "old"


def test_version_1_card_with_own_scaling_and_names() -> None:
    card = ModelCard.from_dict({"name": "d3fnet34", "bands": ["R", "G", "B", "NIR"],
                                "input_scale": 1 / 255, "input_offset": 0.0})
    assert [b.role for b in card.bands] == ["rgb", "rgb", "rgb", "nir"]
    assert card.input_scales == (1 / 255,) * 4 and card.input_offsets == (0.0,) * 4
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


@pytest.mark.parametrize(
    ("d", "message"),
    [({"input_scale": float("inf")}, "input_scale=inf"),
     ({"card_version": 3}, "version 3 is not supported"),
     ({"card_version": 2, "input_scale": 1.0}, r"unknown fields \['input_scale'\]"),
     ({"card_version": 2, "bands": [{"name": "R", "role": "ir"}]}, "role 'ir'"),
     ({"card_version": 2, "bands": [{"name": "R", "scale": 0}]}, "scale=0"),
     ({"card_version": 2, "bands": [{"name": "R"}, {"name": "R"}]}, "repeats a band name"),
     ({"card_version": 2, "input_multiple_px": 64, "tile_px": 992}, "multiple of 64"),
     ({"card_version": 2, "output_stride": 0}, "output_stride=0")],
)
def test_card_errors(d: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelCard.from_dict({"name": "d3fnet34", **d})


def test_mean_std_band_is_the_same_affine_map() -> None:
    bands = imagenet_rgb_bands()
    dn = np.arange(256, dtype=np.float64)
    for band, mean, std in zip(bands, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True):
        np.testing.assert_allclose(dn * band.scale + band.offset, (dn / 255 - mean) / std,
                                   rtol=0, atol=1e-12)
    card = ModelCard("ddrnet23s", bands=bands, input_multiple_px=64)
    images = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    x = engine_input(card, images)
    for c, band in enumerate(bands):  # per-channel scaling in the engine
        assert float(x[0, c, 0, 0]) == pytest.approx(200 * band.scale + band.offset, abs=1e-5)


def test_card_bands_must_be_band_specs() -> None:
    with pytest.raises(InputError, match="BandSpec"):
        ModelCard("d3fnet34", bands=("B", "G", "R"))  # type: ignore[arg-type]
    assert uniform_bands("BGR")[0] == BandSpec("B", "rgb", 3.2 / 255, -1.6)
