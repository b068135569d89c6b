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
from roadx.train.config import TrainConfig

_D = TrainConfig()
_PANEL_DATA, _PANEL_OPT, _PANEL_RUN = "Data", "Optimisation", "Run"


def _epoch_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="epochs", title_justify="left")
    for name in ("epoch", "train loss", "val loss", "IoU", "F1", "precision", "recall", "lr", "crops/s", "time"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}", f"{r['val_iou']:.4f}",
            f"{r['val_f1']:.4f}", f"{r['val_precision']:.4f}", f"{r['val_recall']:.4f}",
            f"{r['lr']:.2e}", f"{r['samples_per_s']:.2f}", f"{r['seconds']:.0f} s",
        )
    return table


def train(
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Dataset folder (repeat to mix several).", rich_help_panel=_PANEL_DATA)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of TrainConfig keys; options override it.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=f"Run folder [default: {_D.output}].", rich_help_panel=_PANEL_RUN)] = None,
    format: Annotated[Literal["auto", "deepglobe", "folders", "gis"] | None, typer.Option("--format", help="Dataset layout [default: auto-detect per folder].", rich_help_panel=_PANEL_DATA)] = None,
    labels: Annotated[list[Path] | None, typer.Option("--labels", help="Road line vectors covering many GIS scenes (repeatable).", rich_help_panel=_PANEL_DATA)] = None,
    road_width_m: Annotated[float | None, typer.Option("--road-width-m", help=f"Total width drawn around centrelines, m [default: {_D.road_width_m}].", rich_help_panel=_PANEL_DATA)] = None,
    gsd_m: Annotated[float | None, typer.Option("--gsd", help="Training GSD in m/px [default: the model card's].", rich_help_panel=_PANEL_DATA)] = None,
    source_gsd_m: Annotated[float | None, typer.Option("--source-gsd", help="GSD of non-georeferenced images [default: 0.5 DeepGlobe, 1.0 folders].", rich_help_panel=_PANEL_DATA)] = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help=f"Share of each source's tiles held out [default: {_D.val_fraction}].", rich_help_panel=_PANEL_DATA)] = None,
    val_list: Annotated[Path | None, typer.Option("--val-list", help="File of held-out tile ids/stems, one a line.", rich_help_panel=_PANEL_DATA)] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache decoded tiles here (.npy).", rich_help_panel=_PANEL_DATA)] = None,
    data_license: Annotated[str | None, typer.Option("--data-license", help="Licence note of the data, written into the card.", rich_help_panel=_PANEL_DATA)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help=f"Architecture [default: {_D.model}].", rich_help_panel=_PANEL_OPT)] = None,
    init: Annotated[Path | None, typer.Option("--init", help="Fine-tune from these weights (.safetensors).", rich_help_panel=_PANEL_OPT)] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the interrupted run in this folder.", rich_help_panel=_PANEL_RUN)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help=f"[default: {_D.epochs}]", rich_help_panel=_PANEL_OPT)] = None,
    samples_per_epoch: Annotated[int | None, typer.Option("--samples-per-epoch", help=f"Random crops per epoch [default: {_D.samples_per_epoch}].", rich_help_panel=_PANEL_OPT)] = None,
    crop_px: Annotated[int | None, typer.Option("--crop", help=f"Crop side, px, multiple of 32 [default: {_D.crop_px}].", rich_help_panel=_PANEL_OPT)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", help=f"[default: {_D.batch_size}]", rich_help_panel=_PANEL_OPT)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help=f"Peak AdamW learning rate [default: {_D.lr}].", rich_help_panel=_PANEL_OPT)] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help=f"[default: {_D.weight_decay}]", rich_help_panel=_PANEL_OPT)] = None,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", help=f"Linear warm-up steps [default: {_D.warmup_steps}].", rich_help_panel=_PANEL_OPT)] = None,
    val_crop_px: Annotated[int | None, typer.Option("--val-crop", help=f"Validation window side, px [default: {_D.val_crop_px}].", rich_help_panel=_PANEL_OPT)] = None,
    val_max_windows: Annotated[int | None, typer.Option("--val-max-windows", help=f"[default: {_D.val_max_windows}]", rich_help_panel=_PANEL_OPT)] = None,
    device: Annotated[Literal["auto", "cpu", "cuda"] | None, typer.Option("--device", help="[default: auto]", rich_help_panel=_PANEL_RUN)] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (bf16 on CPU) [default: on].", rich_help_panel=_PANEL_RUN)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help=f"Data loader processes [default: {_D.workers}].", rich_help_panel=_PANEL_RUN)] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch CPU threads [default: torch's].", rich_help_panel=_PANEL_RUN)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=f"[default: {_D.seed}]", rich_help_panel=_PANEL_RUN)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output.")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True, help="Less log output.")] = 0,
) -> None:
    """Train or fine-tune a road model; keeps the best checkpoint by validation IoU."""
    from roadx.train import fit
    from roadx.train.config import load_config

    setup_logging(verbose, quiet)
    overrides = {
        "data": tuple(data or ()), "output": output, "format": format, "labels": tuple(labels or ()),
        "road_width_m": road_width_m, "gsd_m": gsd_m, "source_gsd_m": source_gsd_m,
        "val_fraction": val_fraction, "val_list": val_list, "cache_dir": cache_dir,
        "data_license": data_license, "model": model, "init": init, "resume": resume,
        "epochs": epochs, "samples_per_epoch": samples_per_epoch, "crop_px": crop_px,
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "warmup_steps": warmup_steps, "val_crop_px": val_crop_px, "val_max_windows": val_max_windows,
        "device": device, "amp": amp, "workers": workers, "threads": threads, "seed": seed,
    }
    if resume is not None and config is None and (resume / "config.json").is_file():
        saved = json.loads((resume / "config.json").read_text(encoding="utf-8"))
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
            err_console.print(f"tiles: {m['train_tiles']} train, {m['val_tiles']} validation, {m['skipped']} skipped")
        elif event.kind == "epoch_start":
            stack.close()
            advance[0] = stack.enter_context(progress_bar(
                f"epoch {event.epoch}/{event.epochs}", event.steps, enabled=err_console.is_terminal, unit="batches",
            ))
            if event.step:
                advance[0](event.step)
        elif event.kind == "step" and advance[0] is not None:
            advance[0](1, loss=f"loss {event.loss:.4f}", rate=f"{event.samples_per_s:.2f} crops/s")
            if not err_console.is_terminal and (event.step % 10 == 0 or event.step == event.steps):
                err_console.print(
                    f"epoch {event.epoch}/{event.epochs} batch {event.step}/{event.steps} "
                    f"loss {event.loss:.4f} {event.samples_per_s:.2f} crops/s lr {event.lr:.2e}", highlight=False,
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
    except KeyboardInterrupt:
        stack.close()
        run_dir = cfg.resume or cfg.output
        err_console.print(f"interrupted: state saved; continue with [bold]roadx train --resume {run_dir}[/bold]")
        raise typer.Exit(130) from None
    finally:
        stack.close()
        signal.signal(signal.SIGTERM, previous_term)
    if result.skipped:
        err_console.print(f"[yellow]{len(result.skipped)} sample(s) skipped[/yellow]:", highlight=False)
        for path, reason in result.skipped:
            err_console.print(f"  {path}: {reason}", highlight=False, markup=False)
    if json_output:
        print_json({
            "run_dir": str(result.run_dir), "best": str(result.best_path), "last": str(result.last_path),
            "best_iou": result.best_iou, "best_epoch": result.best_epoch, "epochs_done": result.epochs_done,
            "skipped": [[str(p), r] for p, r in result.skipped], "history": result.history,
        })
    elif show:
        if result.history:
            err_console.print(_epoch_table(result.history))
        err_console.print(f"best: epoch {result.best_epoch}, val IoU {result.best_iou:.4f} -> {result.best_path}")
