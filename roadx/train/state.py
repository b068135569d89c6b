"""Run folder of ``roadx train``: resumable state, metrics table and learning-rate schedule.

A run folder holds::

    config.json          the resolved TrainConfig
    metrics.csv          one row per epoch (loss, IoU, F1, precision, recall, lr, speed)
    last.safetensors     weights + card after the latest epoch (roadx.models checkpoint)
    best.safetensors     weights + card of the epoch with the best validation IoU
    state.pt             everything needed to continue exactly: model, optimizer, AMP scaler,
                         torch RNG states, the next (epoch, batch), global step, best IoU,
                         running epoch sums

``state.pt`` is written atomically (temporary file + ``os.replace``) after every epoch and when
the run is interrupted (Ctrl-C), so ``--resume`` always finds a consistent state.
"""

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from roadx.errors import CheckpointError

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = (
    "epoch", "train_loss", "val_loss", "val_iou", "val_f1", "val_precision", "val_recall",
    "lr", "seconds", "samples_per_s",
)


def lr_at(
    step: int, *, total_steps: int, peak_lr: float, warmup_steps: int, min_ratio: float
) -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then cosine decay.

    1. ``step < warmup_steps``: rises linearly from ``peak_lr / warmup_steps`` to ``peak_lr``;
    2. then follows half a cosine from ``peak_lr`` down to ``min_ratio × peak_lr``;
    3. past ``total_steps`` it stays at the minimum.

    Example:
        >>> lr_at(0, total_steps=100, peak_lr=1.0, warmup_steps=10, min_ratio=0.0)
        0.1
        >>> lr_at(10, total_steps=100, peak_lr=1.0, warmup_steps=10, min_ratio=0.0)
        1.0
        >>> lr_at(100, total_steps=100, peak_lr=1.0, warmup_steps=10, min_ratio=0.0)
        0.0
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    low = peak_lr * min_ratio
    return low + 0.5 * (peak_lr - low) * (1.0 + math.cos(math.pi * progress))


@dataclass
class RunState:
    """Mutable position of a run (what ``state.pt`` stores besides the tensors).

    Attributes:
        epoch: epoch in progress or next to run (0-based).
        batch: next batch of that epoch (0 = epoch start).
        step: optimiser steps done in total.
        best_iou: best validation IoU so far (-1 before the first validation).
        best_epoch: epoch (1-based) of ``best_iou``.
        loss_sum: sum of training losses × batch sizes in the current epoch so far.
        seen: crops seen in the current epoch so far.
        history: per-epoch metric rows so far.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_iou: float = -1.0
    best_epoch: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def save_state(
    run_dir: Path,
    state: RunState,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config: dict[str, Any],
) -> Path:
    """Write ``state.pt`` atomically and return its path."""
    path = run_dir / STATE_FILE
    tmp = run_dir / (STATE_FILE + ".partial")
    torch.save(
        {
            "run": vars(state),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "config": config,
            "torch_rng": torch.get_rng_state(),  # dropout draws continue exactly on resume
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def load_state(run_dir: Path) -> dict[str, Any]:
    """Read ``state.pt`` of a run folder.

    Raises:
        CheckpointError: the folder has no readable state.
    """
    path = Path(run_dir) / STATE_FILE
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(
            f"{path}: cannot read the run state ({err}); expected the folder of a roadx train "
            "run (it holds state.pt). Start a new run without --resume."
        ) from err
    data["run"] = RunState(**data["run"])
    return data


def append_metrics(run_dir: Path, row: dict[str, float]) -> None:
    """Append one epoch row to ``metrics.csv`` (header written on first use)."""
    path = run_dir / METRICS_FILE
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
