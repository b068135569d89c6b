"""``TrainConfig``: every setting of ``roadx train`` in one frozen dataclass (style.md §3.6).

CLI options map 1:1 onto the fields (same names, ``--crop`` → ``crop_px``); defaults live here
only. ``roadx train --config run.toml`` reads a flat TOML table with the same keys, and options
given on the command line override it. The resolved config is saved as ``config.json`` in the
run folder and inside every checkpoint.
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadx.errors import InputError
from roadx.runtime import PRECISION_NAMES, DeviceName, PrecisionName

DatasetFormat = Literal["auto", "deepglobe", "folders", "gis"]
Device = DeviceName

BN_RECAL_AUTO_CROPS = 256
"""Clean crops of the batch-norm re-estimation when ``bn_recal_crops`` is auto (None) and the
run augments beyond the §5.2 chain (measured: issue #9, README "Batch-norm statistics")."""

_PATH_FIELDS = {"output", "init", "resume", "val_list", "cache_dir"}
_PATH_TUPLE_FIELDS = {"data", "labels"}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        data: dataset folders (formats may be mixed).
        format: layout of every folder, or ``"auto"`` to detect per folder.
        labels: vector files of road centrelines covering many GIS scenes (GIS layout).
        road_width_m: total width in metres of the buffer drawn around centrelines.
        gsd_m: training GSD in m/px (None: the model card's GSD).
        source_gsd_m: GSD of non-georeferenced images (None: 0.5 m for DeepGlobe, 1.0 m for
            image/mask folders, the Massachusetts Roads resolution).
        model: registered architecture (``roadx models`` lists them).
        model_kwargs: builder arguments of a model trained from scratch (e.g.
            ``{"width": 16}`` for a narrow, fast D3FNet; ``roadx models`` shows the
            architectures). Ignored with ``init``, whose checkpoint carries its own.
        output: run folder for metrics.csv, checkpoints and config.json.
        init: weights to fine-tune from (a roadx ``.safetensors`` of the same architecture).
        resume: run folder of an interrupted run to continue exactly.
        epochs: number of epochs.
        samples_per_epoch: random crops drawn per epoch.
        crop_px: side of a training crop in pixels (multiple of 32).
        batch_size: crops per optimiser step.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: optimiser steps of linear warm-up before the cosine decay.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        checkpoint_storage: storage of ``best.safetensors`` / ``last.safetensors``:
            ``float16`` (default, 79 MB for d3fnet34; tensors float16 cannot hold stay
            float32), ``int8`` (40 MB, per-channel weights) or ``float32`` (158 MB). The
            optimizer and the exact float32 weights live only in the resumable ``state.pt``.
        loss: ``dice_bce`` (the D-LinkNet/D3FNet loss) or ``osm``
            (:func:`roadx.train.loss.osm_tolerant_loss`: for OpenStreetMap-style labels,
            offsets within ``label_tolerance_m`` tolerated, confident road predictions far
            from any label weighted ``unlabelled_weight``).
        label_tolerance_m: label offset tolerated by the ``osm`` loss, metres.
        unlabelled_weight: weight of confident road predictions far from any label in the
            ``osm`` loss, 0..1.
        grad_clip: largest global gradient norm (L2 over all parameters; larger gradients are
            scaled down), 0 = no clipping. Steps whose loss or gradients are NaN/inf are
            always skipped and counted (``skipped_steps`` in metrics.csv).
        val_fraction: share of each source's tiles held out when ``val_list`` is not given.
        val_list: text file of held-out tile ids / file stems, one a line.
        val_crop_px: side of the validation windows (multiple of 32).
        val_max_windows: at most this many validation windows per epoch (evenly spread).
        min_valid_fraction: a training crop needs at least this share of valid pixels.
        road_crop_ratio: share of training crops that must contain road pixels.
        min_source_share: every dataset folder provides at least this share of the crops
            (lifts small sources, e.g. a few SpaceNet scenes beside Massachusetts Roads).
        sensor_aug: probability of the sensor augmentation (gamma, contrast, band gains,
            grey; :class:`roadx.train.augment.AugmentParams`), 0 = the §5.2 chain only.
        domain_aug: probability of the domain augmentation (palettes incl. arid and snow,
            gains, haze, blur/sharpening, noise, JPEG, colour bleeding, and the scale jitter;
            :func:`roadx.train.augment.domain_shift`), 0 = off.
        scale_jitter: largest GSD factor of the scale jitter (log-uniform in
            [1 / scale_jitter, scale_jitter], applied with ``domain_aug``), 1 = off.
        synthetic_share: share of training crops drawn from freshly generated synthetic
            scenes (:class:`roadx.train.synthetic.SyntheticTiles`, seeded by (seed, epoch,
            index)), 0..0.9; 0 = real data only.
        bn_recal_crops: before each validation (and so in every saved checkpoint) the
            batch-norm running statistics are re-estimated on this many *clean* training crops
            (the §5.2 chain only: no sensor or domain augmentation, no synthetic scenes), as
            "precise BN" does (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021;
            :func:`torch.optim.swa_utils.update_bn`). Training with heavy augmentation
            otherwise leaves statistics of augmented images, which real imagery does not
            match. None = auto: 256 when ``sensor_aug``, ``domain_aug`` or
            ``synthetic_share`` is on, else 0 (off).
        aux_suffix: for a model with a NIR/auxiliary band (``d3fnet34-mm``): the auxiliary
            raster of ``<folder>/<stem>.<ext>`` is ``<folder>/<stem><aux_suffix>.*``
            (:mod:`roadx.train.datasets`); None: the image's own 4th (NIR) band where it has
            one. Samples without the band train the model's "band absent" path.
        device: ``auto`` picks CUDA when available.
        precision: ``auto`` (bf16 autocast only on CPUs with native bf16, else fp32; bf16,
            or fp16 with a gradient scaler, on CUDA; :func:`roadx.runtime.choose_precision`),
            or a forced ``fp32``, ``bf16`` or ``fp16``. Older configs' ``amp: false`` reads
            as ``fp32`` and ``amp: true`` as ``auto``.
        workers: DataLoader worker processes (0 = load in the main process).
        threads: torch CPU threads (None: torch's default).
        seed: seed of model init, split and crop sampling.
        cache_dir: folder for decoded tiles at the training GSD (.npy); None = no disk cache.
        data_license: licence note of the training data, written into the card.
        extra: more provenance (string keys and values) copied into the card's ``training``.
    """

    data: tuple[Path, ...] = ()
    format: DatasetFormat = "auto"
    labels: tuple[Path, ...] = ()
    road_width_m: float = 4.0
    gsd_m: float | None = None
    source_gsd_m: float | None = None
    model: str = "d3fnet34"
    output: Path = Path("runs/train")
    init: Path | None = None
    resume: Path | None = None
    epochs: int = 40
    samples_per_epoch: int = 800
    crop_px: int = 512
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.02
    grad_clip: float = 0.0
    loss: Literal["dice_bce", "osm"] = "dice_bce"
    label_tolerance_m: float = 3.0
    unlabelled_weight: float = 0.2
    checkpoint_storage: Literal["float32", "float16", "int8"] = "float16"
    val_fraction: float = 0.1
    val_list: Path | None = None
    val_crop_px: int = 512
    val_max_windows: int = 64
    min_valid_fraction: float = 0.5
    road_crop_ratio: float = 0.8
    min_source_share: float = 0.0
    sensor_aug: float = 0.0
    domain_aug: float = 0.0
    scale_jitter: float = 2.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    synthetic_share: float = 0.0
    bn_recal_crops: int | None = None
    aux_suffix: str | None = None
    device: Device = "auto"
    precision: PrecisionName = "auto"
    workers: int = 0
    threads: int | None = None
    seed: int = 0
    cache_dir: Path | None = None
    data_license: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check values that would otherwise fail deep inside the loop."""
        problems = []
        if self.crop_px % 32 or self.crop_px < 32:
            problems.append(f"crop_px={self.crop_px} (expected a multiple of 32, e.g. 256 or 512)")
        if self.val_crop_px % 32 or self.val_crop_px < 32:
            problems.append(f"val_crop_px={self.val_crop_px} (expected a multiple of 32)")
        if self.epochs < 1 or self.batch_size < 1 or self.samples_per_epoch < 1:
            problems.append("epochs, batch_size and samples_per_epoch must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction={self.val_fraction} (expected 0 <= f < 1)")
        if not 0.0 <= self.min_source_share < 1.0:
            problems.append(f"min_source_share={self.min_source_share} (expected 0 <= s < 1)")
        if not 0.0 <= self.sensor_aug <= 1.0:
            problems.append(f"sensor_aug={self.sensor_aug} (expected a probability, 0..1)")
        if self.checkpoint_storage not in ("float32", "float16", "int8"):
            problems.append(
                f"checkpoint_storage={self.checkpoint_storage!r} (expected float32, float16 "
                "or int8)"
            )
        if self.loss not in ("dice_bce", "osm"):
            problems.append(f"loss={self.loss!r} (expected dice_bce or osm)")
        if not self.label_tolerance_m >= 0.0:
            problems.append(f"label_tolerance_m={self.label_tolerance_m} (expected >= 0 m)")
        if not 0.0 <= self.unlabelled_weight <= 1.0:
            problems.append(f"unlabelled_weight={self.unlabelled_weight} (expected 0..1)")
        if not self.grad_clip >= 0.0:
            problems.append(f"grad_clip={self.grad_clip} (expected 0 = off, or a norm > 0)")
        if not 0.0 <= self.domain_aug <= 1.0:
            problems.append(f"domain_aug={self.domain_aug} (expected a probability, 0..1)")
        if not 1.0 <= self.scale_jitter <= 4.0:
            problems.append(f"scale_jitter={self.scale_jitter} (expected 1..4, e.g. 2 for 0.5-2x)")
        if not 0.0 <= self.synthetic_share <= 0.9:
            problems.append(
                f"synthetic_share={self.synthetic_share} (expected 0..0.9; real crops must remain)"
            )
        if self.bn_recal_crops is not None and self.bn_recal_crops < 0:
            problems.append(f"bn_recal_crops={self.bn_recal_crops} (expected 0 = off, or crops)")
        if self.lr <= 0 or self.road_width_m <= 0:
            problems.append("lr and road_width_m must be positive")
        if not isinstance(self.model_kwargs, dict):
            problems.append(f"model_kwargs={self.model_kwargs!r} (expected a table/object)")
        if self.precision not in PRECISION_NAMES:
            problems.append(f"precision={self.precision!r} (expected one of {PRECISION_NAMES})")
        if self.gsd_m is not None and self.gsd_m <= 0:
            problems.append(f"gsd_m={self.gsd_m} (expected metres per pixel > 0)")
        if problems:
            raise InputError("invalid training settings: " + "; ".join(problems) + ".")

    @property
    def bn_recal_crops_used(self) -> int:
        """``bn_recal_crops`` with None (auto) resolved: 256 with sensor/domain augmentation or
        synthetic crops, else 0."""
        if self.bn_recal_crops is not None:
            return self.bn_recal_crops
        augmented = self.sensor_aug > 0 or self.domain_aug > 0 or self.synthetic_share > 0
        return BN_RECAL_AUTO_CROPS if augmented else 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (the last batch may be smaller)."""
        return -(-self.samples_per_epoch // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (paths as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict of field values (e.g. parsed TOML or config.json).

        Raises:
            InputError: unknown keys or invalid values.
        """
        values = dict(values)
        if "amp" in values:  # roadx 0.1 configs: amp on/off before the precision policy
            amp = values.pop("amp")
            values.setdefault("precision", "auto" if amp else "fp32")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(
                f"unknown training setting(s) {', '.join(unknown)}; expected some of "
                f"{', '.join(sorted(names))}."
            )
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in _PATH_TUPLE_FIELDS:
                value = tuple(Path(v) for v in ([value] if isinstance(value, str) else value))
            elif key in _PATH_FIELDS and value is not None:
                value = Path(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a TOML file of :class:`TrainConfig` keys, then apply ``overrides`` (None = unset).

    Args:
        path: TOML file with top-level keys named like the fields, or None.
        **overrides: field values that win over the file (CLI options); None values are ignored.

    Returns:
        The resolved :class:`TrainConfig`.

    Raises:
        InputError: the file is missing or not TOML, or a key/value is invalid.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise InputError(
                f"{path}: cannot read the training config ({err}); expected TOML."
            ) from err
        values = values.get("train", values)
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    return TrainConfig.from_dict(values)
