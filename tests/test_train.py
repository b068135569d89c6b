"""``roadx train``: a 2-step CPU run, checkpoints, resume, fine-tuning, Ctrl-C and CLI errors."""

import csv
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import roadx.cli
from roadx.errors import CheckpointError, InputError, OutputExistsError
from roadx.models import load_checkpoint
from roadx.train import TrainConfig, TrainEvent, fit
from tiny_data import LORUDARKU_CROPS as CROPS, link_real_crops



@pytest.fixture(scope="module")
def tiny_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real Massachusetts crops (two tiles) as an images/ + masks/ folder of symlinks."""
    return link_real_crops(shared_data, tmp_path_factory.mktemp("ds"))


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        data=(data,), output=out, model="d3fnet34", gsd_m=1.0, epochs=1, samples_per_epoch=2,
        batch_size=1, crop_px=64, val_crop_px=64, val_max_windows=2, val_list=None,
        val_fraction=0.5, device="cpu", threads=1, seed=3, warmup_steps=1, lr=1e-3,
        model_kwargs={"width": 8},  # the paper's layers at 1/64 of the parameters: fast
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def test_two_step_cpu_run_writes_a_loadable_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    result = fit(_config(tiny_dataset, tmp_path / "run"), on_event=events.append)
    assert [e.step for e in events if e.kind == "step"] == [1, 2]
    # 3 crops of 2 tiles: one whole tile (with all its crops) is held out
    assert result.epochs_done == 1 and result.train_tiles + result.val_tiles == 3
    model, card = load_checkpoint(result.best_path)
    assert card.name == "d3fnet34" and card.gsd_m == 1.0 and card.band_names == ("B", "G", "R")
    assert card.training["epochs"] == 1 and len(card.training["val_tiles"]) == 1
    assert card.training["val_tiles"][0] in {"10078675_15", "10228675_15"}
    assert {"val_iou", "val_f1", "val_precision", "val_recall"} <= set(card.training["val_metrics"])
    assert card.training["sources"][0]["train_tiles"] + card.training["sources"][0]["val_tiles"] == 2
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1, 64, 64) and torch.isfinite(out).all()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_iou"]) <= 1.0
    assert (tmp_path / "run" / "config.json").is_file()
    with pytest.raises(OutputExistsError, match="--resume"):
        fit(_config(tiny_dataset, tmp_path / "run"))


def test_interrupt_then_resume_equals_an_uninterrupted_run(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = dict(epochs=2, val_fraction=0.0)
    full = fit(_config(tiny_dataset, tmp_path / "full", **settings))

    def stop_after_first_step(event: TrainEvent) -> None:
        if event.kind == "step" and event.epoch == 2 and event.step == 1:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of epoch 2

    with pytest.raises(KeyboardInterrupt):
        fit(_config(tiny_dataset, tmp_path / "cut", **settings), on_event=stop_after_first_step)
    state = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)
    assert (state["run"]["epoch"], state["run"]["batch"], state["run"]["step"]) == (1, 1, 3)

    events: list[TrainEvent] = []
    resumed = fit(_config(tiny_dataset, tmp_path / "other", resume=tmp_path / "cut", **settings), on_event=events.append)
    assert [(e.epoch, e.step) for e in events if e.kind == "step"] == [(2, 2)]  # continues mid-epoch
    assert resumed.epochs_done == 2
    rows = list(csv.DictReader((tmp_path / "cut" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    a, b = _tensors(full.last_path), _tensors(resumed.last_path)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_init_fine_tunes_from_weights_of_the_same_architecture(tiny_dataset: Path, tmp_path: Path) -> None:
    first = fit(_config(tiny_dataset, tmp_path / "a", val_fraction=0.0, lr=1e-9, warmup_steps=1))
    tuned = fit(_config(tiny_dataset, tmp_path / "b", val_fraction=0.0, init=first.best_path, lr=1e-9))
    _, card = load_checkpoint(tuned.best_path)
    assert card.training["init"] == str(first.best_path)
    a, b = _tensors(first.best_path), _tensors(tuned.best_path)
    # with a vanishing learning rate the fine-tuned conv weights stay those of --init
    conv = next(k for k in a if k.endswith("weight") and a[k].ndim == 4)
    torch.testing.assert_close(a[conv], b[conv], rtol=1e-4, atol=1e-6)
    with pytest.raises(CheckpointError, match=r"\(d3fnet34\) shares no tensor"):
        fit(_config(tiny_dataset, tmp_path / "c", model="ddrnet23s", init=first.best_path,
                    model_kwargs={"planes": 8, "spp_planes": 16, "head_planes": 16}))


def test_init_from_another_architecture_loads_the_matching_encoder(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """d3fnet34 weights initialise danet34's ResNet-34 encoder and LinkNet head by name and
    shape; the run says how many tensors it loaded."""
    first = fit(_config(tiny_dataset, tmp_path / "a", val_fraction=0.0, lr=1e-9, warmup_steps=1))
    events: list[TrainEvent] = []
    tuned = fit(_config(tiny_dataset, tmp_path / "b", val_fraction=0.0, model="danet34",
                        init=first.best_path, lr=1e-9), on_event=events.append)
    (init,) = [e.metrics for e in events if e.kind == "init"]
    a, b = _tensors(first.best_path), _tensors(tuned.best_path)
    shared = sorted(k for k in a.keys() & b.keys() if a[k].shape == b[k].shape)
    assert init["loaded"] == len(shared) and init["source"] == "d3fnet34"
    assert set(init["modules"]) == {"encoder", "head"}
    assert init["modules"]["encoder"] == sum(k.startswith("encoder.") for k in b)
    assert init["total"] == len(b)
    conv = "encoder.layer1.0.conv1.weight"
    torch.testing.assert_close(a[conv], b[conv], rtol=1e-4, atol=1e-6)
    _, card = load_checkpoint(tuned.best_path)
    assert card.name == "danet34" and "auxiliary outputs x0.4, x0.4" in card.training["loss"]


def test_auxiliary_heads_are_trained_with_their_registry_weights(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """ddrnet23s's auxiliary head (seghead_extra) only gets gradients through the auxiliary
    loss term: it changes during training, so the loop weighs the training outputs. (Batch 2:
    DAPPM's batch norms after global pooling need more than one value per channel.)"""
    torch.manual_seed(3)
    from roadx.models import create_model

    kwargs = {"planes": 8, "spp_planes": 16, "head_planes": 16}
    before = create_model("ddrnet23s", **kwargs).state_dict()  # the run's seed-3 init
    result = fit(_config(tiny_dataset, tmp_path / "run", model="ddrnet23s", val_fraction=0.5,
                         model_kwargs=kwargs, batch_size=2, crop_px=128, val_crop_px=128,
                         lr=1e-2))
    after = _tensors(result.last_path)
    key = "seghead_extra.conv1.weight"
    assert not torch.allclose(before[key], after[key].float(), atol=1e-3)
    _, card = load_checkpoint(result.best_path)
    assert card.input_multiple_px == 64 and card.band_names == ("R", "G", "B")
    assert "auxiliary outputs x0.4" in card.training["loss"]


def test_cli_reports_a_dataset_without_usable_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for sub in ("images", "masks"):
        (tmp_path / "ds" / sub).mkdir(parents=True)
    (tmp_path / "ds" / "images" / "a.png").write_bytes(b"garbage")
    (tmp_path / "ds" / "masks" / "a.png").write_bytes(b"garbage")
    argv = ["roadx", "train", "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "run"),
            "--val-fraction", "0", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        roadx.cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "no usable training sample" in err and "1 skipped" in err
    assert "a.png" in err  # the bad sample is named


def test_config_rejects_bad_values_and_reads_toml(tmp_path: Path) -> None:
    from roadx.errors import InputError
    from roadx.train.config import load_config

    with pytest.raises(InputError, match="multiple of 32"):
        TrainConfig(crop_px=100)
    with pytest.raises(InputError, match="sensor_aug"):
        TrainConfig(sensor_aug=1.5)
    toml = tmp_path / "run.toml"
    toml.write_text('data = ["a", "b"]\ncrop_px = 256\nlr = 0.001\n')
    cfg = load_config(toml, lr=0.01, epochs=None)
    assert cfg.data == (Path("a"), Path("b")) and cfg.crop_px == 256 and cfg.lr == 0.01
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown training setting"):
        load_config(None, crop=3)
    # roadx 0.1 run folders said amp on/off; they resume with the capability policy / fp32
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    with pytest.raises(InputError, match="precision"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]
    toml.write_text('model_kwargs = { width = 16 }\n')
    assert load_config(toml).model_kwargs == {"width": 16}


def test_cli_mixes_layouts_and_reports_skipped_samples(
    tiny_dataset: Path, shared_data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    dg = tmp_path / "dg"
    dg.mkdir()
    (dg / "7_sat.jpg").symlink_to(shared_data / "massachusetts_lorudarku" / "images" / f"{CROPS[0]}.jpg")
    (dg / "7_mask.png").symlink_to(shared_data / "massachusetts_lorudarku" / "masks" / f"{CROPS[0]}.png")
    (dg / "8_sat.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    (dg / "8_mask.png").symlink_to(shared_data / "massachusetts_lorudarku" / "masks" / f"{CROPS[1]}.png")
    argv = ["roadx", "train", "--data", str(tiny_dataset), "--data", str(dg), "-o", str(tmp_path / "run"),
            "--epochs", "1", "--samples-per-epoch", "1", "--batch-size", "1", "--crop", "64",
            "--val-fraction", "0", "--device", "cpu", "--threads", "1", "--gsd", "1", "--json",
            "--precision", "fp32"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        roadx.cli.main()
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # --json: stdout holds the JSON only
    assert result["epochs_done"] == 1 and Path(result["best"]).is_file()
    assert result["precision"] == "fp32" and result["precision_reason"] == "requested"
    assert result["device"] == "cpu"
    assert [Path(p).name for p, _ in result["skipped"]] == ["8_sat.jpg"]
    assert "8_sat.jpg" in captured.err  # logged with its path


@pytest.mark.parametrize(("batch", "samples"), [(1, 4), (4, 5)])
def test_a_batch_of_one_is_refused_for_ddrnet_before_training(
    tiny_dataset: Path, tmp_path: Path, batch: int, samples: int
) -> None:
    """DDRNet's batch norms after global pooling cannot train on one image: a clear error,
    also when the epoch's last batch would hold one, before any data is read."""
    events: list[TrainEvent] = []
    with pytest.raises(InputError, match=r"at least 2 images.*makes a batch of 1"):
        fit(_config(tiny_dataset, tmp_path / "run", model="ddrnet23s", batch_size=batch,
                    samples_per_epoch=samples, model_kwargs={"planes": 8, "spp_planes": 16,
                                                             "head_planes": 16}),
            on_event=events.append)
    assert [e.kind for e in events] == []
