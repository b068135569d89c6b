"""Training that survives bad steps, trains from already-decoded tiles, and uses the domain
augmentation end to end (issue #9; the GPU fine-tune of the default weights runs this way)."""

import csv
from pathlib import Path

import pytest
import torch

import roadx.train.loop as loop
from roadx.models import load_checkpoint
from roadx.models.d3fnet import _sdpa_backends
from roadx.train import TrainConfig, fit
from tiny_data import link_real_crops
from roadx.train.data import load_tiles
from roadx.train.datasets import discover_samples, split_samples



@pytest.fixture(scope="module")
def tiny_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real Massachusetts crops (two tiles) as an images/ + masks/ folder of symlinks."""
    return link_real_crops(shared_data, tmp_path_factory.mktemp("ds"))


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        data=(data,), output=out, model="d3fnet34", gsd_m=1.0, epochs=1, samples_per_epoch=3,
        batch_size=1, crop_px=64, val_crop_px=64, val_max_windows=2, val_fraction=0.5,
        device="cpu", threads=1, seed=3, warmup_steps=1, lr=1e-3, model_kwargs={"width": 8},
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_a_nan_step_is_skipped_and_counted(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss, calls = loop.dice_bce_loss, [0]

    def loss_with_one_nan(logits: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        loss = real_loss(logits, y, v)
        return loss * float("nan") if calls[0] == 2 else loss  # the 2nd training step

    monkeypatch.setattr(loop, "dice_bce_loss", loss_with_one_nan)
    result = fit(_config(tiny_dataset, tmp_path / "run", grad_clip=1.0))
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert rows[0]["skipped_steps"] == "1"
    assert float(rows[0]["train_loss"]) == pytest.approx(float(rows[0]["train_loss"]))  # not NaN
    model, _ = load_checkpoint(result.last_path)  # refuses NaN/inf weights: they are finite
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fit_from_decoded_tiles_with_domain_augmentation(tiny_dataset: Path, tmp_path: Path) -> None:
    samples = discover_samples([tiny_dataset], fmt="auto", labels=(), source_gsd_m=None)
    train, val = split_samples(samples, val_fraction=0.5, val_ids=None, seed=3)
    train_tiles, _ = load_tiles(train, gsd_m=1.0, road_width_m=4.0)
    val_tiles, _ = load_tiles(val, gsd_m=1.0, road_width_m=4.0)
    missing = tmp_path / "not-read"  # config.data only documents the origin here
    config = _config(missing, tmp_path / "run", domain_aug=1.0, scale_jitter=2.0, loss="osm",
                     label_tolerance_m=2.0, bn_recal_crops=4)
    result = fit(config, tiles=(train_tiles, val_tiles))
    assert result.train_tiles == len(train_tiles) and result.val_tiles == len(val_tiles)
    _, card = load_checkpoint(result.best_path)
    assert "domain p=1 (scale jitter x2)" in card.training["augmentation"]
    assert "OSM-tolerant (offsets within 2 m" in card.training["loss"]
    assert card.training["batch_norm_statistics"] == (
        "re-estimated on 4 clean crops before each validation")
    assert card.training["train_tiles"] == len(train_tiles)
    # best/last are compact (float16 by default); state.pt keeps exact float32 for --resume
    from safetensors.torch import load_file

    saved = load_file(result.last_path)
    conv = next(k for k in saved if saved[k].ndim == 4)
    assert saved[conv].dtype == torch.float16
    state = torch.load(tmp_path / "run" / "state.pt", map_location="cpu", weights_only=True)
    assert any(t.dtype == torch.float32 for t in state["model"].values())


def test_attention_kernel_choice_on_cpu_is_pytorchs() -> None:
    # CUDA training uses the math kernel (the fused memory-efficient kernel returns NaN
    # gradients for this attention; measured on an H200, benchmarks/README.md); CPU is untouched
    q = torch.zeros(1, 1, 4, 8)
    with _sdpa_backends(q) as ctx:
        assert ctx is None


def test_a_fine_tuned_card_does_not_call_itself_the_default_weights() -> None:
    from roadx.models import read_checkpoint_metadata
    from roadx.pipeline import default_weights_path
    from roadx.train.provenance import _describe
    import json

    shipped = json.loads(read_checkpoint_metadata(default_weights_path())["roadx.card"])
    assert "Default weights of roadx" in shipped["description"]
    tuned = _describe(shipped["description"], TrainConfig(init=Path("mine/d3fnet34.safetensors")), 1.0)
    assert "Default weights of roadx" not in tuned and "trained from scratch" in tuned
    assert tuned.endswith("Fine-tuned from d3fnet34.safetensors with roadx train at 1 m/px.")
    again = _describe(tuned, TrainConfig(init=Path("b.safetensors")), 0.5)
    assert again.count("Fine-tuned from") == 1 and again.endswith("b.safetensors with roadx train at 0.5 m/px.")
    assert _describe("A road model.", TrainConfig(), 1.0) == "A road model. Trained with roadx train at 1 m/px."
