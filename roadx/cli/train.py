"""``roadx train``: train or fine-tune a road model on image/mask or GIS datasets.

Thin command: options → :class:`roadx.train.config.TrainConfig` → :func:`roadx.train.fit`,
with a rich progress bar per epoch and a summary table. Defaults live in ``TrainConfig``.
"""

import json
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from roadx.cli.console import err_console, print_json, progress_bar, setup_logging
from roadx.cli.options import QuietOpt, VerboseOpt
from roadx.runtime import DeviceName as Device
from roadx.runtime import PrecisionName
from roadx.train.config import TrainConfig

_D = TrainConfig()
_DATA, _OPT, _RUN = "Data", "Optimisation", "Run"
Format = Literal["auto", "deepglobe", "folders", "gis"]


def _opt(*names: str, h: str, p: str | None = None) -> Any:
    """A typer option with help text ``h`` in rich help panel ``p``."""
    return typer.Option(*names, help=h, rich_help_panel=p)


def _epoch_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="epochs", title_justify="left")
    columns = ("epoch", "train loss", "val loss", "IoU", "F1", "precision", "recall", "lr")
    for name in (*columns, "crops/s", "time"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}",
            f"{r['val_iou']:.4f}", f"{r['val_f1']:.4f}", f"{r['val_precision']:.4f}",
            f"{r['val_recall']:.4f}", f"{r['lr']:.2e}", f"{r['samples_per_s']:.2f}",
            f"{r['seconds']:.0f} s",
        )
    return table


def _saved_config(path: Path) -> dict[str, Any]:
    """The settings a run folder's ``config.json`` holds.

    Raises:
        roadx.errors.InputError: the file is not a JSON object.
    """
    from roadx.errors import InputError

    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(
            f"{path} cannot be read ({err}); repair or delete it and give the run's settings "
            "again (--config or options) with --resume."
        ) from None
    if not isinstance(saved, dict):
        raise InputError(f"{path} is not a JSON object of training settings.")
    return saved


def _interrupted_message(stop: KeyboardInterrupt, run_dir: Path) -> str:
    """What Ctrl-C or SIGTERM left on disk, truthfully (see :class:`TrainInterrupted`)."""
    from roadx.train import TrainInterrupted

    resume = f"continue with roadx train --resume {run_dir}"
    if not isinstance(stop, TrainInterrupted):
        return "interrupted before training started; nothing was saved."
    where = f"epoch {stop.epoch}, batch {stop.batch}"
    if stop.saved:
        return f"interrupted during {stop.phase}: state saved at {where}; {resume}."
    if stop.resumable:
        return (f"interrupted while loading the data; nothing new was saved, the earlier state "
                f"({where}) is unchanged: {resume}.")
    return "interrupted while loading the data, before the first training step; nothing was saved."


def train(
    data: Annotated[
        list[Path] | None,
        _opt(
            "--data", "-d",
            h="Dataset folder (repeat to mix several).",
            p=_DATA,
        ),
    ] = None,
    config: Annotated[
        Path | None, _opt("--config", h="TOML file of TrainConfig keys; options override it.")
    ] = None,
    output: Annotated[
        Path | None, _opt("--output", "-o", h=f"Run folder (default: {_D.output}).", p=_RUN)
    ] = None,
    format: Annotated[
        Format | None, _opt("--format", h="Dataset layout (default: auto-detect).", p=_DATA)
    ] = None,
    labels: Annotated[
        list[Path] | None, _opt("--labels", h="Road lines covering many GIS scenes.", p=_DATA)
    ] = None,
    road_width_m: Annotated[
        float | None,
        _opt(
            "--road-width-m",
            h=f"Road width around centrelines, m (default: {_D.road_width_m}).",
            p=_DATA,
        ),
    ] = None,
    gsd_m: Annotated[
        float | None, _opt("--gsd", h="Training GSD, m/px (default: the model card's).", p=_DATA)
    ] = None,
    source_gsd_m: Annotated[
        float | None,
        _opt(
            "--source-gsd",
            h="GSD of plain images (default: 0.5 DeepGlobe, 1.0 folders).",
            p=_DATA,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        _opt(
            "--val-fraction",
            h=f"Share of tiles held out (default: {_D.val_fraction}).",
            p=_DATA,
        ),
    ] = None,
    val_list: Annotated[
        Path | None, _opt("--val-list", h="File of held-out tile ids/stems, one a line.", p=_DATA)
    ] = None,
    cache_dir: Annotated[
        Path | None, _opt("--cache-dir", h="Cache decoded tiles here (.npy).", p=_DATA)
    ] = None,
    data_license: Annotated[
        str | None, _opt("--data-license", h="Licence note of the data (card).", p=_DATA)
    ] = None,
    min_source_share: Annotated[
        float | None,
        _opt(
            "--min-source-share",
            h=f"Least share of crops per folder (default: {_D.min_source_share}).",
            p=_DATA,
        ),
    ] = None,
    sensor_aug: Annotated[
        float | None,
        _opt(
            "--sensor-aug",
            h="Probability of gamma/contrast/grey augmentation for other sensors "
            f"(default: {_D.sensor_aug}).",
            p=_OPT,
        ),
    ] = None,
    checkpoint_storage: Annotated[
        str | None,
        _opt(
            "--checkpoint-storage",
            h="Storage of best/last.safetensors: float16 (79 MB for d3fnet34), int8 (40 MB) "
            f"or float32 (158 MB) (default: {_D.checkpoint_storage}); state.pt keeps the exact "
            "float32 weights and optimizer for --resume.",
            p=_OPT,
        ),
    ] = None,
    loss: Annotated[
        str | None,
        _opt(
            "--loss",
            h="dice_bce (the D-LinkNet loss) or osm: for OpenStreetMap-style labels, offsets "
            "within --label-tolerance-m tolerated and confident roads far from any label "
            f"weighted --unlabelled-weight (default: {_D.loss}).",
            p=_OPT,
        ),
    ] = None,
    label_tolerance_m: Annotated[
        float | None,
        _opt("--label-tolerance-m",
             h=f"Label offset the osm loss tolerates, metres (default: {_D.label_tolerance_m:g}).",
             p=_OPT),
    ] = None,
    unlabelled_weight: Annotated[
        float | None,
        _opt("--unlabelled-weight",
             h="Weight of confident road predictions far from any label in the osm loss, 0-1 "
             f"(default: {_D.unlabelled_weight:g}).", p=_OPT),
    ] = None,
    grad_clip: Annotated[
        float | None,
        _opt(
            "--grad-clip",
            h="Largest gradient norm, larger gradients are scaled down; 0 = off "
            f"(default: {_D.grad_clip:g}). NaN/inf steps are always skipped.",
            p=_OPT,
        ),
    ] = None,
    domain_aug: Annotated[
        float | None,
        _opt(
            "--domain-aug",
            h="Probability of the domain augmentation for unseen landscapes and sensors: "
            "palettes (hue, arid, snow), haze, blur, noise, JPEG, colour bleeding and a GSD "
            f"scale jitter (default: {_D.domain_aug}).",
            p=_OPT,
        ),
    ] = None,
    scale_jitter: Annotated[
        float | None,
        _opt(
            "--scale-jitter",
            h="Largest GSD factor of the scale jitter, e.g. 2 for 0.5-2x the training GSD; "
            f"used with --domain-aug (default: {_D.scale_jitter:g}).",
            p=_OPT,
        ),
    ] = None,
    synthetic_share: Annotated[
        float | None,
        _opt(
            "--synthetic-share",
            h="Share of training crops drawn from freshly generated synthetic scenes (all "
            "surfaces and landscapes, exact masks), 0..0.9 "
            f"(default: {_D.synthetic_share:g}).",
            p=_DATA,
        ),
    ] = None,
    bn_recal_crops: Annotated[
        int | None,
        _opt(
            "--bn-recal-crops",
            h="Before each validation, re-estimate the batch-norm statistics on this many "
            "clean training crops (no sensor/domain augmentation, no synthetic scenes), 0 = off "
            "(default: 256 with --sensor-aug, --domain-aug or --synthetic-share, else 0).",
            p=_OPT,
        ),
    ] = None,
    aux_suffix: Annotated[
        str | None,
        _opt(
            "--aux-suffix",
            h="Auxiliary raster (NIR, DSM, SAR) of each image for a multimodal model, matched "
            "by stem: <stem><suffix>.* beside <stem>.* (e.g. _nir for a.tif + a_nir.tif); "
            "default: the image's own 4th band (R,G,B,NIR).",
            p=_DATA,
        ),
    ] = None,
    model: Annotated[
        str | None,
        _opt("--model", "-m", h=f"Architecture, see `roadx models` (default: {_D.model}).",
             p=_OPT),
    ] = None,
    init: Annotated[
        Path | None,
        _opt("--init", h="Fine-tune from these weights (.safetensors); weights of another "
             "architecture initialise the tensors that match by name and shape (e.g. the "
             "d3fnet34 encoder for danet34).", p=_OPT),
    ] = None,
    resume: Annotated[
        Path | None, _opt("--resume", h="Continue the interrupted run in this folder.", p=_RUN)
    ] = None,
    epochs: Annotated[int | None, _opt("--epochs", h=f"(default: {_D.epochs})", p=_OPT)] = None,
    samples_per_epoch: Annotated[
        int | None,
        _opt(
            "--samples-per-epoch",
            h=f"Crops per epoch (default: {_D.samples_per_epoch}).",
            p=_OPT,
        ),
    ] = None,
    crop_px: Annotated[
        int | None, _opt("--crop", h=f"Crop side, px (default: {_D.crop_px}).", p=_OPT)
    ] = None,
    batch_size: Annotated[
        int | None, _opt("--batch-size", "-b", h=f"(default: {_D.batch_size})", p=_OPT)
    ] = None,
    lr: Annotated[
        float | None, _opt("--lr", h=f"Peak AdamW learning rate (default: {_D.lr}).", p=_OPT)
    ] = None,
    weight_decay: Annotated[
        float | None, _opt("--weight-decay", h=f"(default: {_D.weight_decay})", p=_OPT)
    ] = None,
    warmup_steps: Annotated[
        int | None, _opt("--warmup-steps", h=f"(default: {_D.warmup_steps})", p=_OPT)
    ] = None,
    val_crop_px: Annotated[
        int | None,
        _opt(
            "--val-crop",
            h=f"Validation window, px (default: {_D.val_crop_px}).",
            p=_OPT,
        ),
    ] = None,
    val_max_windows: Annotated[
        int | None, _opt("--val-max-windows", h=f"(default: {_D.val_max_windows})", p=_OPT)
    ] = None,
    device: Annotated[
        Device | None, _opt("--device", h="Compute device (default: auto).", p=_RUN)
    ] = None,
    precision: Annotated[
        PrecisionName | None,
        _opt(
            "--precision",
            h="auto (default: bf16 only on CPUs with native bf16, else fp32; bf16 or fp16 on "
            "CUDA), fp32, bf16 or fp16.",
            p=_RUN,
        ),
    ] = None,
    workers: Annotated[
        int | None, _opt("--workers", h=f"Loader processes (default: {_D.workers}).", p=_RUN)
    ] = None,
    threads: Annotated[
        int | None, _opt("--threads", h="Torch CPU threads (default: torch's).", p=_RUN)
    ] = None,
    seed: Annotated[int | None, _opt("--seed", h=f"(default: {_D.seed})", p=_RUN)] = None,
    json_output: Annotated[bool, _opt("--json", h="Print the result as JSON on stdout.")] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
) -> None:
    """Train or fine-tune a road model; keeps the best checkpoint by validation IoU."""
    from roadx.train import fit
    from roadx.train.config import load_config

    setup_logging(verbose, quiet)
    overrides = {
        "data": tuple(data or ()), "output": output, "format": format,
        "labels": tuple(labels or ()), "road_width_m": road_width_m, "gsd_m": gsd_m,
        "source_gsd_m": source_gsd_m, "val_fraction": val_fraction, "val_list": val_list,
        "cache_dir": cache_dir, "data_license": data_license,
        "min_source_share": min_source_share, "sensor_aug": sensor_aug,
        "domain_aug": domain_aug, "scale_jitter": scale_jitter, "grad_clip": grad_clip,
        "loss": loss, "label_tolerance_m": label_tolerance_m,
        "unlabelled_weight": unlabelled_weight,
        "checkpoint_storage": checkpoint_storage, "synthetic_share": synthetic_share,
        "aux_suffix": aux_suffix, "bn_recal_crops": bn_recal_crops,
        "model": model,
        "init": init, "resume": resume,
        "epochs": epochs, "samples_per_epoch": samples_per_epoch, "crop_px": crop_px,
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "warmup_steps": warmup_steps, "val_crop_px": val_crop_px,
        "val_max_windows": val_max_windows, "device": device, "precision": precision,
        "workers": workers,
        "threads": threads, "seed": seed,
    }
    if resume is not None and config is None and (resume / "config.json").is_file():
        saved = _saved_config(resume / "config.json")
        saved.update({k: v for k, v in overrides.items() if v is not None and v != ()})
        cfg = load_config(None, **saved)
    else:
        cfg = load_config(config, **overrides)

    show = not json_output and quiet == 0
    rows: list[dict[str, Any]] = []
    stack = ExitStack()
    advance: list[Any] = [None]

    def on_event(event: Any) -> None:
        if not show:
            return
        if event.kind == "loaded":
            m = event.metrics
            err_console.print(
                f"tiles: {m['train_tiles']} train, {m['val_tiles']} validation, "
                f"{m['skipped']} skipped"
            )
        elif event.kind == "init":
            m = event.metrics
            per = ", ".join(f"{k} {n}" for k, n in m["modules"].items())
            err_console.print(
                f"--init {m['path']} ({m['source']}): loaded {m['loaded']} of {m['total']} "
                f"tensors by name and shape ({per}); the rest start random"
            )
        elif event.kind == "epoch_start":
            stack.close()
            bar = progress_bar(
                f"epoch {event.epoch}/{event.epochs}", event.steps,
                enabled=err_console.is_terminal, unit="batches",
            )
            advance[0] = stack.enter_context(bar)
            if event.step:
                advance[0](event.step)
        elif event.kind == "step" and advance[0] is not None:
            advance[0](1, loss=f"loss {event.loss:.4f}", rate=f"{event.samples_per_s:.2f} crops/s")
            if not err_console.is_terminal and (event.step % 10 == 0 or event.step == event.steps):
                err_console.print(  # a log line per 10 batches when stderr is a file
                    f"epoch {event.epoch}/{event.epochs} batch {event.step}/{event.steps} "
                    f"loss {event.loss:.4f} {event.samples_per_s:.2f} crops/s lr {event.lr:.2e}",
                    highlight=False,
                )
        elif event.kind == "epoch_end":
            stack.close()
            rows.append(event.metrics)
            err_console.print(_epoch_table(rows[-1:]))

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # a background job may start with SIGINT ignored; SIGTERM (kill) also saves a resumable state
    signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, interrupt)
    try:
        result = fit(cfg, on_event=on_event)
    except KeyboardInterrupt as stop:
        stack.close()
        err_console.print(_interrupted_message(stop, cfg.resume or cfg.output), highlight=False,
                          soft_wrap=True)  # one line: the path stays whole
        raise typer.Exit(130) from None
    finally:
        stack.close()
        signal.signal(signal.SIGTERM, previous_term)
    if result.skipped:
        err_console.print(f"{len(result.skipped)} sample(s) skipped:", style="yellow")
        for path, reason in result.skipped:
            line = reason if str(path) in reason else f"{path}: {reason}"
            err_console.print(f"  {line}", highlight=False, markup=False)
    if json_output:
        print_json({
            "run_dir": str(result.run_dir), "best": str(result.best_path),
            "last": str(result.last_path), "best_iou": result.best_iou,
            "best_epoch": result.best_epoch, "epochs_done": result.epochs_done,
            "skipped": [[str(p), r] for p, r in result.skipped], "history": result.history,
            "device": result.device, "precision": result.precision,
            "precision_reason": result.precision_reason,
        })
    elif show:
        if result.history:
            err_console.print(_epoch_table(result.history))
        err_console.print(
            f"trained on {result.device} in {result.precision} ({result.precision_reason})",
            highlight=False, markup=False,
        )
        err_console.print(
            f"best: epoch {result.best_epoch}, val IoU {result.best_iou:.4f} -> {result.best_path}"
        )
