"""Run folder of ``roadx train``: resumable state, metrics table and learning-rate schedule.

A run folder holds::

    config.json          the resolved TrainConfig
    metrics.csv          one row per epoch (loss, IoU, F1, precision, recall, lr, speed)
    last.safetensors     weights + card after the latest epoch (roadx.models checkpoint)
    best.safetensors     weights + card of the epoch with the best validation IoU
    state.pt             everything needed to continue exactly: model, optimizer, AMP scaler,
                         torch RNG states, the next (epoch, batch), global step, best IoU,
                         running epoch sums, and the metric rows of the finished epochs

``state.pt`` is written atomically (temporary file + ``os.replace``) after every epoch and when
the run is interrupted (Ctrl-C, SIGTERM), so ``--resume`` always finds a consistent state.
It is the one record of the run's progress: ``metrics.csv`` is rewritten from the rows it holds
(:func:`write_metrics`, also atomically) after each save and on every resume, so a run killed
between the two writes never shows an epoch twice or one the state does not know.

``state.pt`` is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects; its layout is checked before anything is used.
"""

import csv
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from roadx.errors import CheckpointError
from roadx.fs import discard, partial_path
from roadx.models.convert import describe_load_error

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = (
    "epoch", "train_loss", "val_loss", "val_iou", "val_f1", "val_precision", "val_recall",
    "lr", "seconds", "samples_per_s", "skipped_steps",
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
    """Write ``state.pt`` atomically (a unique temporary file, then :func:`os.replace`) and
    return its path; on any failure the previous ``state.pt`` is left as it was."""
    path = run_dir / STATE_FILE
    tmp = partial_path(path)
    try:
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
    except BaseException:
        discard(tmp)
        raise
    return path


def load_state(run_dir: Path) -> dict[str, Any]:
    """Read and check ``state.pt`` of a run folder (tensors and plain containers only).

    Returns:
        The saved dict with ``"run"`` as a :class:`RunState`.

    Raises:
        CheckpointError: the folder holds no state, or the file is unreadable, not a
            ``torch.save`` file, holds objects other than tensors and containers (a pickle
            that would run code is refused, not run), or does not have a run state's layout.
    """
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: {run_dir} holds no saved training state (a run stopped before "
            "its first training step saves none). Start the run again without --resume."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as err:  # noqa: BLE001 - torch raises pickle, zip, runtime, value errors
        raise CheckpointError(
            f"{path} is not a readable roadx run state ({describe_load_error(err)}); it is "
            "damaged or was not written by roadx train (objects that need code to load are "
            "refused, never run). Start a new run without --resume."
        ) from None
    data["run"] = RunState(**_checked_layout(data, path))
    return data


_RUN_TYPES: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "batch": int, "step": int, "best_iou": (int, float), "best_epoch": int,
    "loss_sum": (int, float), "seen": int, "history": list,
}


def _checked_layout(data: Any, path: Path) -> dict[str, Any]:
    """The ``"run"`` dict of a loaded state, after checking the state's layout.

    Raises:
        CheckpointError: naming the first thing that is not as :func:`save_state` writes it.
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"{path} does not hold a roadx run state ({what}); it is damaged or was not written "
            "by roadx train. Start a new run without --resume."
        )

    if not isinstance(data, dict):
        raise bad(f"a {type(data).__name__}, expected a dict")
    for key in ("run", "model", "optimizer", "config"):
        if not isinstance(data.get(key), dict):
            raise bad(f"{key!r} missing or not a dict")
    if not all(isinstance(v, torch.Tensor) for v in data["model"].values()):
        raise bad("'model' holds values that are not tensors")
    run = data["run"]
    known = {f.name for f in fields(RunState)}
    unknown = sorted(set(run) - known)
    if unknown:
        raise bad(f"unknown run fields {unknown}")
    for key, kind in _RUN_TYPES.items():
        if key in run and (not isinstance(run[key], kind) or isinstance(run[key], bool)):
            raise bad(f"run field {key!r} is {run[key]!r}")
    history = run.get("history", [])
    if not all(isinstance(row, dict) for row in history):
        raise bad("'history' holds rows that are not dicts")
    if min(run.get(k, 0) for k in ("epoch", "batch", "step", "seen")) < 0:
        raise bad("negative epoch, batch, step or sample count")
    return run


def write_metrics(run_dir: Path, history: list[dict[str, float]]) -> Path:
    """Write ``metrics.csv`` from the run's metric rows (one per finished epoch), atomically.

    The rows come from the saved state, so the table always matches it (see the module
    docstring); an existing file is replaced.
    """
    path = run_dir / METRICS_FILE
    tmp = partial_path(path)
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in history:
                writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return path
