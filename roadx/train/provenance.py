"""The model card a training run writes: architecture, GSD, bands, data and validation metrics.

The card travels inside every checkpoint (``roadx.card``), so a weights file always says what
it was trained on: the source folders with their tile counts and licence note, the held-out
tiles, the epochs and the validation scores of the saved epoch.
"""

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadx import __version__
from roadx.models import ModelCard, get_entry, list_models
from roadx.train.config import TrainConfig
from roadx.train.data import Tile


def describe_sources(
    train_tiles: Sequence[Tile], val_tiles: Sequence[Tile]
) -> list[dict[str, Any]]:
    """Per source folder: layout, training / validation tile and sample counts.

    Returns:
        One dict per folder, sorted by folder path.
    """
    rows: dict[str, dict[str, Any]] = {}
    for split, tiles in (("train", train_tiles), ("val", val_tiles)):
        per_source = Counter(str(t.sample.source) for t in tiles)
        tile_ids: dict[str, set[str]] = {}
        for t in tiles:
            tile_ids.setdefault(str(t.sample.source), set()).add(t.sample.tile_id)
        kinds = {str(t.sample.source): t.sample.kind for t in tiles}
        for source, n in per_source.items():
            row = rows.setdefault(source, {"folder": source, "kind": kinds[source]})
            row[f"{split}_samples"] = n
            row[f"{split}_tiles"] = len(tile_ids[source])
    return [rows[k] for k in sorted(rows)]


def build_card(
    base: ModelCard,
    *,
    config: TrainConfig,
    train_tiles: Sequence[Tile],
    val_tiles: Sequence[Tile],
    epochs_done: int,
    metrics: dict[str, float] | None,
    precision: str | None = None,
) -> ModelCard:
    """The card of a checkpoint written by ``roadx train``.

    Args:
        base: the architecture's card (or the ``init`` weights' card): bands and scaling.
        config: the run settings (GSD, crop, optimiser, licence note).
        train_tiles: tiles trained on.
        val_tiles: tiles held out.
        epochs_done: finished epochs when the checkpoint is written.
        metrics: the validation row of that epoch (None before any epoch).
        precision: the precision the run computed in (``fp32``/``bf16``/``fp16``; None:
            the requested ``config.precision``).

    Returns:
        ``base`` with ``gsd_m``, ``license`` (data note appended), ``description`` and
        ``training`` filled in.
    """
    gsd_m = float(config.gsd_m or base.gsd_m)
    training: dict[str, Any] = {
        "roadx_version": __version__,
        "architecture": base.name,
        "init": str(config.init) if config.init else None,
        "gsd_m": gsd_m,
        "bands": list(base.band_names),
        "scaling": base.describe_scaling(),
        "sources": describe_sources(train_tiles, val_tiles),
        "train_tiles": len({(t.sample.source, t.sample.tile_id) for t in train_tiles}),
        "val_tiles": sorted({t.sample.tile_id for t in val_tiles}),
        "data_license": config.data_license,
        "road_width_m": config.road_width_m,
        "epochs": epochs_done,
        "epochs_planned": config.epochs,
        "samples_per_epoch": config.samples_per_epoch,
        "crop_px": config.crop_px,
        "batch_size": config.batch_size,
        "optimizer": f"AdamW lr {config.lr:g} wd {config.weight_decay:g}, "
        f"warm-up {config.warmup_steps} steps + cosine to {config.min_lr_ratio:g}x",
        "loss": "BCE-with-logits + batch soft Dice on valid pixels"
        + (
            f", OSM-tolerant (offsets within {config.label_tolerance_m:g} m, unlabelled "
            f"confident roads x{config.unlabelled_weight:g})" if config.loss == "osm" else ""
        )
        + _aux_note(base.name),
        "augmentation": "d3fnet.md §5.2 (HSV, shift/scale, flips, rot90)"
        + (f" + sensor p={config.sensor_aug:g}" if config.sensor_aug else "")
        + (
            f" + domain p={config.domain_aug:g} (scale jitter x{config.scale_jitter:g})"
            if config.domain_aug else ""
        ),
        "min_source_share": config.min_source_share,
        "synthetic_share": config.synthetic_share,
        "batch_norm_statistics": (
            f"re-estimated on {config.bn_recal_crops_used} clean crops before each validation"
            if config.bn_recal_crops_used else "running averages of the training batches"),
        "precision": precision or config.precision,
        "seed": config.seed,
        "val_metrics": dict(metrics) if metrics else {},
    }
    training.update(config.extra)
    license_text = base.license
    if config.data_license and config.data_license not in license_text:
        license_text = f"{license_text}; weights trained on data under: {config.data_license}"
    return dataclasses.replace(
        base,
        gsd_m=gsd_m,
        license=license_text,
        description=_describe(base.description, config, gsd_m),
        training=training,
    )


def _aux_note(name: str) -> str:
    """``"; auxiliary outputs x0.4, x0.4 (same loss)"`` for models with auxiliary heads."""
    if name not in list_models() or not get_entry(name).aux_weights:
        return ""
    weights = ", ".join(f"x{w:g}" for w in get_entry(name).aux_weights)
    return f"; auxiliary outputs {weights} (same loss, main x1)"


def _describe(base_description: str, config: TrainConfig, gsd_m: float) -> str:
    """The card description of a trained checkpoint: what it started from and how.

    The starting weights' own claims ("Default weights of roadx.") and earlier "Trained
    with ..." sentences are dropped: a fine-tuned checkpoint is not the default weights.
    """
    kept = [
        sentence for sentence in base_description.replace("\n", " ").split(". ")
        if sentence.strip() and not sentence.strip().startswith(("Default weights of roadx",
                                                                   "Trained with roadx train",
                                                                   "Fine-tuned from"))
    ]
    text = ". ".join(kept).strip()
    if text and not text.endswith("."):
        text += "."
    how = (f"Fine-tuned from {Path(config.init).name} with roadx train at {gsd_m:g} m/px."
           if config.init else f"Trained with roadx train at {gsd_m:g} m/px.")
    return f"{text} {how}".strip()
