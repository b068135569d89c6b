"""``fit``: the plain PyTorch training loop behind ``roadx train``.

Reads top to bottom (nanoGPT style): data → model (scratch / ``init`` / ``resume``) →
optimiser → epochs of steps → validation → checkpoints. Loss, optimiser and schedule follow
d3fnet.md §4 (BCE + batch soft Dice, AdamW) with a warm-up + cosine schedule
(:func:`roadx.train.state.lr_at`); augmentation follows §5.2. Progress goes to the
``on_event`` callback; nothing is printed.
"""

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from roadx.errors import CheckpointError, DatasetError, InputError, OutputError, OutputExistsError
from roadx.fs import check_writable_folder, discard, partial_path, remove_stale_partials
from roadx.metrics import Confusion, confusion
from roadx.models import (
    ModelCard,
    create_model,
    get_card,
    get_entry,
    load_checkpoint,
    load_matching_tensors,
    read_checkpoint_metadata,
    save_checkpoint,
    training_outputs,
)
from roadx.models.checkpoint import KEY_MODEL, KEY_MODEL_KWARGS
from roadx.runtime.device import resolve_device
from roadx.runtime.precision import choose_precision
from roadx.train.augment import AugmentParams
from roadx.train.config import TrainConfig
from roadx.train.data import (
    EXTRA_VALID_BIT,
    ROAD_BIT,
    VALID_BIT,
    PatchDataset,
    Tile,
    channel_map,
    crop,
    load_tiles,
    to_tensors,
    validation_windows,
)
from roadx.train.datasets import discover_samples, read_val_list, split_samples
from roadx.train.loss import dice_bce_loss, osm_tolerant_loss
from roadx.train.provenance import build_card
from roadx.train.state import (
    STATE_FILE,
    RunState,
    load_state,
    lr_at,
    save_state,
    write_metrics,
)
from roadx.train.synthetic import SyntheticTiles

logger = logging.getLogger(__name__)

EventKind = Literal["load", "loaded", "init", "epoch_start", "step", "epoch_end", "interrupted"]


@dataclass(frozen=True)
class TrainEvent:
    """Progress report of :func:`fit` (for progress bars and tables).

    Attributes:
        kind: what happened.
        epoch: 1-based epoch.
        epochs: total epochs.
        step: batches done in this epoch.
        steps: batches in this epoch.
        loss: running mean training loss of the epoch.
        samples_per_s: training throughput of the epoch so far.
        lr: current learning rate.
        metrics: the epoch row (on ``epoch_end``), counts (on ``loaded``), or on ``init``
            (weights of another architecture): ``path``, ``source`` (its architecture),
            ``loaded``/``total`` tensors and ``modules`` (tensors loaded per top-level module).
    """

    kind: EventKind
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    samples_per_s: float = 0.0
    lr: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run produced.

    Attributes:
        run_dir: the run folder.
        best_path: best checkpoint by validation IoU (``best.safetensors``).
        last_path: checkpoint of the last finished epoch.
        best_iou: best validation IoU (-1 when there was no validation set).
        best_epoch: 1-based epoch of ``best_iou``.
        epochs_done: finished epochs.
        history: metric rows, one per epoch.
        skipped: (path, reason) of samples that could not be used.
        train_tiles: images trained on (each crop of a tile counts).
        val_tiles: images validated on.
        device: where the run trained, e.g. ``"cpu"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``, as chosen by
            :func:`roadx.runtime.choose_precision`.
        precision_reason: why that precision (capability or request).
    """

    run_dir: Path
    best_path: Path
    last_path: Path
    best_iou: float
    best_epoch: int
    epochs_done: int
    history: list[dict[str, float]]
    skipped: list[tuple[Path, str]]
    train_tiles: int
    val_tiles: int
    device: str = "cpu"
    precision: str = "fp32"
    precision_reason: str = ""


def extra_band(card: ModelCard) -> str | None:
    """Name of the card's band beyond R, G, B (a NIR or auxiliary band), or None.

    Raises:
        InputError: the card has more than one such band, or a band other than R, G, B that
            training cannot read (training reads R, G, B plus at most one NIR/auxiliary band).
    """
    others = [b for b in card.bands if b.name.upper() not in ("R", "G", "B")]
    if len(others) > 1 or any(b.role not in ("nir", "aux") for b in others):
        raise InputError(
            f"model card bands {card.band_names} cannot be made from training data: roadx "
            "trains on R, G, B plus at most one NIR or auxiliary band."
        )
    return others[0].name if others else None


def optional_bands(card: ModelCard) -> tuple[str, ...]:
    """Names of the card's bands the model works without (``BandSpec.optional``)."""
    return tuple(b.name for b in card.bands if b.optional)


def _base_model(
    config: TrainConfig, emit: Callable[[TrainEvent], None]
) -> tuple[torch.nn.Module, ModelCard, dict[str, Any]]:
    """The model to train, its base card and builder arguments.

    ``init`` of the same architecture: the checkpoint's model, card and arguments (fine-tune).
    ``init`` of another architecture (e.g. ``d3fnet34`` weights for ``danet34``): a new
    ``config.model`` whose tensors matching the checkpoint's by name and shape (the shared
    ResNet-34 encoder, ...) are loaded; an ``init`` event says how many, per module.
    """
    if config.init is None:
        kwargs = dict(config.model_kwargs)
        return create_model(config.model, **kwargs), get_card(config.model), kwargs
    source = read_checkpoint_metadata(config.init).get(KEY_MODEL)
    if source is not None and source != config.model:
        kwargs = dict(config.model_kwargs)
        model = create_model(config.model, **kwargs)
        names, source_card = load_matching_tensors(model, config.init)
        card = get_card(config.model)
        if source_card.bands != card.bands:
            logger.warning(
                "%s (%s) was trained on %s; %s is fed %s", config.init, source_card.name,
                source_card.describe_scaling(), card.name, card.describe_scaling(),
            )
        modules: dict[str, int] = {}
        for name in names:
            modules[name.split(".")[0]] = modules.get(name.split(".")[0], 0) + 1
        emit(TrainEvent("init", metrics={
            "path": str(config.init), "source": source_card.name, "loaded": len(names),
            "total": len(model.state_dict()), "modules": modules,
        }))
        return model.train(), card, kwargs
    model, card = load_checkpoint(config.init)
    if card.name != config.model:
        raise CheckpointError(
            f"{config.init} holds {card.name!r} weights but --model is {config.model!r}; pass "
            f"--model {card.name} or other --init weights."
        )
    kwargs = json.loads(read_checkpoint_metadata(config.init).get(KEY_MODEL_KWARGS, "{}"))
    return model.train(), card, kwargs


def evaluate_windows(
    model: torch.nn.Module,
    tiles: list[Tile],
    windows: list[tuple[int, int, int]],
    *,
    size_px: int,
    card: ModelCard,
    device: torch.device,
    autocast: Callable[[], Any],
    batch_size: int = 4,
) -> tuple[Confusion, float]:
    """Pixel confusion (logit > 0 vs road, valid pixels only) and mean loss over windows."""
    optional = optional_bands(card)
    total, losses = Confusion(), []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            xs, ys, vs = [], [], []
            for k, row, col in windows[start : start + batch_size]:
                image, label = crop(tiles[k], row, col, size_px)
                x, y, v = to_tensors(
                    image, (label & ROAD_BIT) > 0, (label & VALID_BIT) > 0,
                    channels=channel_map(card.band_names, tiles[k].bands, optional),
                    scale=card.input_scales, offset=card.input_offsets,
                    extra_valid=(label & EXTRA_VALID_BIT) > 0,
                )
                xs.append(x), ys.append(y), vs.append(v)
            x, y, v = (torch.stack(t).to(device) for t in (xs, ys, vs))
            with autocast():
                logits = model(x)
            losses.append(float(dice_bce_loss(logits, y, v)))
            pred = (logits.float() > 0).cpu().numpy()[:, 0]
            for p, g, m in zip(pred, y.cpu().numpy()[:, 0] > 0.5, v.cpu().numpy()[:, 0] > 0.5):
                total = total + confusion(p, g, m)
    model.train()
    return total, float(np.mean(losses)) if losses else float("nan")


def recalibrate_batch_norm(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, *, batch_size: int,
    device: torch.device, workers: int = 0,
) -> int:
    """Re-estimate the batch-norm running statistics on ``dataset`` ("precise BN").

    Every batch-norm layer that the forward passes reach gets the plain mean of its batch
    statistics over ``dataset`` (:func:`torch.optim.swa_utils.update_bn`: momentum None, one
    pass); layers the passes never reach (e.g. ``d3fnet34-mm``'s NIR stream on RGB-only
    crops) keep their statistics. Weights are not touched; no gradients.

    Args:
        model: the network, in training or eval mode (restored on return).
        dataset: items ``(x (C, S, S) float32, ...)``, e.g. a :class:`PatchDataset`.
        batch_size: crops per forward pass (at least the model's ``min_train_batch``).
        device: where the model is.
        workers: DataLoader worker processes.

    Returns:
        The number of batch-norm layers updated.

    References:
        Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021 (precise BN); Ioffe & Szegedy,
        "Batch Normalization", ICML 2015 (population statistics for inference).
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    before = {m: {k: v.clone() for k, v in m.state_dict().items()} for m in layers}
    loader = torch.utils.data.DataLoader(  # no ragged last batch (one-image batch norms)
        dataset, batch_size=batch_size, num_workers=workers, shuffle=False,
        drop_last=len(dataset) >= batch_size, pin_memory=device.type == "cuda")
    inputs = (batch[0].to(device).contiguous(memory_format=torch.channels_last)
              for batch in loader)
    torch.optim.swa_utils.update_bn(inputs, model)
    updated = 0
    for m in layers:
        if int(m.num_batches_tracked) == 0:  # never reached: keep what it had
            m.load_state_dict(before[m])
        else:
            updated += 1
    return updated


def _load_data(
    config: TrainConfig, card: ModelCard, emit: Callable[[TrainEvent], None]
) -> tuple[list[Tile], list[Tile], list[tuple[Path, str]]]:
    """Discover, split and decode the samples: (train tiles, val tiles, skipped)."""
    samples = discover_samples(
        config.data, fmt=config.format, labels=config.labels, source_gsd_m=config.source_gsd_m,
        aux_suffix=config.aux_suffix,
    )
    gsd_m, extra = card.gsd_m, extra_band(card)
    val_ids = read_val_list(config.val_list) if config.val_list else None
    train_samples, val_samples = split_samples(
        samples, val_fraction=config.val_fraction, val_ids=val_ids, seed=config.seed
    )
    emit(TrainEvent("load", steps=len(samples)))
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        emit(TrainEvent("load", step=done[0], steps=len(samples)))

    width_m, cache = config.road_width_m, config.cache_dir
    train_tiles, skipped = load_tiles(
        train_samples, gsd_m=gsd_m, road_width_m=width_m, cache_dir=cache, on_tile=progress,
        extra=extra,
    )
    val_tiles, skipped_val = load_tiles(
        val_samples, gsd_m=gsd_m, road_width_m=width_m, cache_dir=cache, on_tile=progress,
        extra=extra,
    )
    skipped += skipped_val
    if not train_tiles:
        named = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
        raise DatasetError(
            f"no usable training sample in {', '.join(map(str, config.data))} ({len(skipped)} "
            f"skipped: {named}); expected readable image/label pairs with valid pixels."
        )
    counts = {"train_tiles": len(train_tiles), "val_tiles": len(val_tiles), "skipped": len(skipped)}
    if extra is not None:
        counts[f"tiles_with_{extra}"] = sum(len(t.bands) > 3 for t in train_tiles + val_tiles)
    emit(TrainEvent("loaded", metrics=counts))
    return train_tiles, val_tiles, skipped


def fit(
    config: TrainConfig,
    *,
    on_event: Callable[[TrainEvent], None] | None = None,
    tiles: tuple[Sequence[Tile], Sequence[Tile]] | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) a road model as ``config`` says.

    Everything that can be checked is checked before the data are loaded: the run folder
    (new, or holding a readable state when resuming; writable), the ``init`` weights. An
    optimiser step and the save at the end of an epoch are never cut in half by Ctrl-C or
    SIGTERM (the signal is held until they are done), so a saved state always sits on a step
    boundary and ``--resume`` continues exactly.

    Args:
        config: the run settings; with ``config.resume`` the run folder's state is continued.
        on_event: progress callback (called from this thread).
        tiles: already decoded (train, validation) tiles at the training GSD, used instead
            of reading ``config.data`` (e.g. a packed copy of a dataset on a GPU machine
            without GDAL); ``config.data`` then only documents where they came from.

    Returns:
        The :class:`TrainResult`.

    Raises:
        DatasetError: no usable training sample.
        OutputExistsError: ``config.output`` already holds a run and ``resume`` is not set.
        OutputError: the run folder cannot be created or written.
        CheckpointError: unreadable ``init`` weights or run state, or a state that does not
            fit the model.
        DeviceError: CUDA requested and absent.
        TrainInterrupted: Ctrl-C or SIGTERM (a :class:`KeyboardInterrupt`); it says whether a
            resumable state was saved (during training and validation) or not (while the data
            were loading).
    """
    emit = on_event or (lambda event: None)
    run_dir = Path(config.resume or config.output)
    if config.resume is None and (run_dir / STATE_FILE).exists():
        raise OutputExistsError(
            f"{run_dir} already holds a training run; expected a new folder. Pass --resume "
            f"{run_dir} to continue it or choose another --output."
        )
    saved = load_state(run_dir) if config.resume is not None else None
    _check_run_folder(run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    precision = choose_precision(config.precision, device)
    logger.info("training on %s in %s (%s)", device, precision.name, precision.reason)

    def autocast() -> Any:
        return precision.autocast(device)

    # 1. data and model
    model, base_card, model_kwargs = _base_model(config, emit)
    loss_weights = get_entry(config.model).loss_weights
    need = getattr(model, "min_train_batch", 1)
    smallest = config.samples_per_epoch % config.batch_size or config.batch_size
    if min(config.batch_size, smallest) < need:
        raise InputError(
            f"{config.model} trains on batches of at least {need} images (batch norm after "
            f"global pooling); --batch-size {config.batch_size} with --samples-per-epoch "
            f"{config.samples_per_epoch} makes a batch of {min(config.batch_size, smallest)}. "
            f"Use --batch-size >= {need} and a --samples-per-epoch that it divides."
        )
    card = dataclasses.replace(base_card, gsd_m=float(config.gsd_m or base_card.gsd_m))
    try:
        if tiles is None:
            train_tiles, val_tiles, skipped = _load_data(config, card, emit)
        else:
            train_tiles, val_tiles, skipped = list(tiles[0]), list(tiles[1]), []
    except KeyboardInterrupt:
        raise _stopped_before_training(run_dir, saved) from None
    def crops(length: int, seed: int, augment_params: AugmentParams,
              synthetic: SyntheticTiles | None = None) -> PatchDataset:
        return PatchDataset(
            train_tiles, length=length, crop_px=config.crop_px, bands=card.band_names,
            optional_bands=optional_bands(card), scale=card.input_scales,
            offset=card.input_offsets, seed=seed, min_valid_fraction=config.min_valid_fraction,
            road_crop_ratio=config.road_crop_ratio, min_source_share=config.min_source_share,
            augment_params=augment_params, synthetic=synthetic,
        )

    dataset = crops(
        config.samples_per_epoch, config.seed,
        AugmentParams(p_sensor=config.sensor_aug, p_domain=config.domain_aug,
                      scale_jitter=config.scale_jitter),
        SyntheticTiles(config.synthetic_share, gsd_m=card.gsd_m, seed=config.seed)
        if config.synthetic_share > 0 else None,
    )
    windows = validation_windows(
        val_tiles, size_px=config.val_crop_px, max_windows=config.val_max_windows
    )
    recal_crops = config.bn_recal_crops_used  # clean crops: the §5.2 chain only
    recal_dataset = crops(recal_crops, config.seed + 0xB4, AugmentParams()) if recal_crops else None
    model.to(device).train()
    # oneDNN and cuDNN (tensor cores) both run convolutions faster on NHWC tensors
    model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: pick the fastest kernels

    # 2. optimiser, and the saved state when resuming
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type) if precision.needs_grad_scaler else None
    state = RunState()
    if saved is not None:
        state = _restore(saved, run_dir, model=model, optimizer=optimizer, scaler=scaler,
                         device=device)
        logger.info("resuming %s at epoch %d, batch %d", run_dir, state.epoch + 1, state.batch)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "config.json", config.to_json())
    if state.history:
        write_metrics(run_dir, state.history)  # a run killed between state and table
    total_steps = config.epochs * config.steps_per_epoch
    best_path, last_path = run_dir / "best.safetensors", run_dir / "last.safetensors"

    def lr_for(step: int) -> float:
        return lr_at(
            step, total_steps=total_steps, peak_lr=config.lr,
            warmup_steps=config.warmup_steps, min_ratio=config.min_lr_ratio,
        )

    def save_weights(path: Path, row: dict[str, float]) -> None:
        epoch_card = build_card(
            card, config=config, train_tiles=train_tiles, val_tiles=val_tiles,
            epochs_done=state.epoch + 1, metrics=row, precision=precision.name,
        )
        save_checkpoint(path, model, card=epoch_card, model_kwargs=model_kwargs,
                        storage=config.checkpoint_storage)

    def save() -> Path:
        return save_state(run_dir, state, model=model, optimizer=optimizer, scaler=scaler,
                          config=config.to_dict())

    tolerance_px = round(config.label_tolerance_m / card.gsd_m)

    def train_loss(logits: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if config.loss == "osm":
            return osm_tolerant_loss(logits, y, v, tolerance_px=tolerance_px,
                                     unlabelled_weight=config.unlabelled_weight)
        return dice_bce_loss(logits, y, v)

    # 3. epochs: steps, then validation and checkpoints
    phase = "train"
    try:
        while state.epoch < config.epochs:
            phase = "train"
            dataset.epoch = state.epoch
            indices = list(range(state.batch * config.batch_size, config.samples_per_epoch))
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(dataset, indices), batch_size=config.batch_size,
                num_workers=config.workers, shuffle=False, pin_memory=device.type == "cuda",
                # an own generator keeps the global RNG (dropout) independent of loader restarts
                generator=torch.Generator().manual_seed(config.seed + state.epoch),
            )
            steps, epoch = config.steps_per_epoch, state.epoch + 1
            emit(TrainEvent("epoch_start", epoch, config.epochs, state.batch, steps))
            started, seen_now, skipped_now = time.perf_counter(), 0, 0
            for x, y, v in loader:
                lr = lr_for(state.step)
                with interrupts_held():  # a step is done whole or not at all
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    x, y, v = (t.to(device, non_blocking=True) for t in (x, y, v))
                    x = x.contiguous(memory_format=torch.channels_last)
                    with autocast():
                        outputs = training_outputs(model, x)  # (main, *aux)
                    if len(outputs) != len(loss_weights):
                        raise InputError(
                            f"{config.model} returned {len(outputs)} training outputs; its "
                            f"registry entry weights {len(loss_weights)} ({loss_weights})."
                        )
                    loss = sum(  # the registry's weights: main 1.0, auxiliary heads e.g. 0.4
                        (w * train_loss(o, y, v) for w, o in zip(loss_weights, outputs,
                                                                 strict=True)),
                        start=torch.zeros((), device=device),
                    )
                    optimizer.zero_grad(set_to_none=True)
                    finite = bool(torch.isfinite(loss.detach()))
                    if scaler is not None:  # skips steps with inf/NaN gradients itself
                        scaler.scale(loss).backward()
                        if config.grad_clip > 0:
                            scaler.unscale_(optimizer)
                            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        norm = torch.nn.utils.clip_grad_norm_(
                            model.parameters(), config.grad_clip or float("inf")
                        )
                        finite = finite and bool(torch.isfinite(norm))
                        if finite:
                            optimizer.step()
                    if not finite:  # a NaN/inf batch leaves the weights untouched
                        skipped_now += 1
                        logger.warning("step %d: non-finite loss or gradients, step skipped",
                                       state.step + 1)
                    state.step, state.batch = state.step + 1, state.batch + 1
                    if finite:
                        state.loss_sum += float(loss.detach()) * len(x)
                        state.seen += len(x)
                seen_now += len(x)
                rate = seen_now / max(time.perf_counter() - started, 1e-9)
                mean_loss = state.loss_sum / state.seen
                emit(TrainEvent(
                    "step", epoch, config.epochs, state.batch, steps, mean_loss, rate, lr
                ))
            seconds = time.perf_counter() - started
            phase = "validation"
            if recal_dataset is not None:
                recal_started = time.perf_counter()
                recal_dataset.epoch = state.epoch
                layers = recalibrate_batch_norm(model, recal_dataset,
                                                batch_size=config.batch_size, device=device,
                                                workers=config.workers)
                logger.info("batch-norm statistics of %d layers re-estimated on %d clean "
                            "crops in %.0f s", layers, recal_crops,
                            time.perf_counter() - recal_started)
            conf, val_loss = evaluate_windows(
                model, val_tiles, windows, size_px=config.val_crop_px, card=card,
                device=device, autocast=autocast,
            )
            nan = float("nan")
            row = {
                "epoch": epoch, "train_loss": state.loss_sum / max(state.seen, 1),
                "val_loss": val_loss, "val_iou": conf.iou if windows else nan,
                "val_f1": conf.f1 if windows else nan,
                "val_precision": conf.precision if windows else nan,
                "val_recall": conf.recall if windows else nan,
                "lr": lr_for(max(state.step - 1, 0)),
                "seconds": seconds, "samples_per_s": seen_now / max(seconds, 1e-9),
                "skipped_steps": skipped_now,
            }
            phase = "save"
            with interrupts_held():  # weights, state and table of an epoch: all or none
                save_weights(last_path, row)
                score = row["val_iou"] if windows else -row["train_loss"]
                if score > state.best_iou or state.best_epoch == 0:
                    state.best_iou, state.best_epoch = score, epoch
                    save_weights(best_path, row)
                state.history.append(row)
                state.epoch, state.batch, state.loss_sum, state.seen = epoch, 0, 0.0, 0
                save()
                write_metrics(run_dir, state.history)
            emit(TrainEvent("epoch_end", epoch, config.epochs, steps, steps, row["train_loss"],
                            row["samples_per_s"], row["lr"], row))
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt), interrupts_held():  # a 2nd Ctrl-C waits
            save()
        emit(TrainEvent("interrupted", state.epoch + 1, config.epochs, state.batch,
                        config.steps_per_epoch))
        raise TrainInterrupted(run_dir, saved=True, resumable=True, epoch=state.epoch + 1,
                               batch=state.batch, phase=phase) from None
    return TrainResult(
        run_dir, best_path, last_path, state.best_iou if windows else -1.0, state.best_epoch,
        state.epoch, state.history, skipped, len(train_tiles), len(val_tiles),
        str(device), precision.name, precision.reason,
    )


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped :func:`fit`; says what is on disk.

    Attributes:
        run_dir: the run folder.
        saved: a resumable ``state.pt`` was written at this interruption.
        resumable: the run folder holds a state to continue from (this one, or an earlier one
            when the run was stopped while resuming, before training restarted).
        epoch: 1-based epoch a resume continues (0: nothing to continue).
        batch: batches of that epoch already done.
        phase: what was running: ``"load"`` (data), ``"train"`` (steps), ``"validation"`` or
            ``"save"`` (the end-of-epoch checkpoints).
    """

    def __init__(self, run_dir: Path, *, saved: bool, resumable: bool, epoch: int, batch: int,
                 phase: str) -> None:
        super().__init__(f"training interrupted during {phase}")
        self.run_dir, self.saved, self.resumable = run_dir, saved, resumable
        self.epoch, self.batch, self.phase = epoch, batch, phase


def _stopped_before_training(run_dir: Path, saved: dict[str, Any] | None) -> TrainInterrupted:
    """The interruption of a run stopped while its data were loading: nothing new saved."""
    if saved is None:
        return TrainInterrupted(run_dir, saved=False, resumable=False, epoch=0, batch=0,
                                phase="load")
    run: RunState = saved["run"]
    return TrainInterrupted(run_dir, saved=False, resumable=True, epoch=run.epoch + 1,
                            batch=run.batch, phase="load")


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then deliver them to the handlers that
    were installed before (Ctrl-C: KeyboardInterrupt; the CLI maps SIGTERM to it too).

    Outside the main thread (where Python cannot set handlers) the block just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def _check_run_folder(run_dir: Path) -> None:
    """The run folder, or the folder it will be created in, must be a writable folder; stale
    temporary files of killed runs in it are removed.

    Raises:
        OutputError: naming the folder and the reason.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir} is a file; expected a run folder (-o/--resume).")
    if run_dir.is_dir():
        remove_stale_partials(run_dir)  # e.g. a state.pt half-written by a killed run
    parent = run_dir.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{run_dir}: {parent} is a file, so the run folder cannot be made.")
    check_writable_folder(parent, target=run_dir)


def _restore(
    saved: dict[str, Any], run_dir: Path, *, model: torch.nn.Module,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, device: torch.device,
) -> RunState:
    """Load a saved state into the model, optimiser, scaler and RNGs; return its position.

    Raises:
        CheckpointError: the state does not fit (another architecture, width or optimiser).
    """
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved.get("scaler") is not None:
            scaler.load_state_dict(saved["scaler"])
        if saved.get("torch_rng") is not None:
            torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{run_dir / STATE_FILE} does not fit this run ({reason}); it was saved with "
            "another model or model_kwargs. Resume with the run's own settings, or start a "
            "new run without --resume."
        ) from None
    return saved["run"]


def _write_atomic(path: Path, text: str) -> None:
    """Write a small text file through a temporary file and :func:`os.replace`."""
    tmp = partial_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
