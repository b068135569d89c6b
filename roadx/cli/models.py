"""``roadx models``: every registered architecture with its card, size, cost and shipped weights."""

from typing import Annotated, Any

import typer

from roadx.cli.console import err_console, print_json
from roadx.cli.options import JsonOpt

TIME_SIZE_PX = 1024


def models(
    json_output: JsonOpt = False,
    time_forward: Annotated[
        bool,
        typer.Option(
            "--time",
            help=f"Also time one fp32 forward pass per {TIME_SIZE_PX}² window on this machine "
            "(CPU: seconds per model; benchmarks/bench_forward.py measures more settings).",
        ),
    ] = False,
) -> None:
    """List the architectures: parameters, GFLOPs per 1024² window, input bands and scaling,
    GSD, input multiple, shipped weights and their validation IoU/F1.

    A trained checkpoint carries its own card (bands, GSD, provenance); these are the defaults.

    Example: roadx models --json
    """
    import json

    from roadx.models import (
        count_parameters,
        forward_seconds,
        get_entry,
        list_models,
        read_checkpoint_metadata,
    )
    from roadx.pipeline import default_weights_path

    rows: list[dict[str, Any]] = []
    for name in list_models():
        entry = get_entry(name)
        weights = default_weights_path(name)
        shipped = None
        if weights.is_file():
            card = json.loads(read_checkpoint_metadata(weights).get("roadx.card", "{}"))
            shipped = {"path": str(weights), "card": card}
        rows.append({
            **entry.card.to_dict(),
            "band_names": list(entry.card.band_names),
            "parameters": count_parameters(name),
            "parameters_deploy": count_parameters(name, deploy=True),
            "aux_loss_weights": list(entry.aux_weights),
            "gflops_1024": entry.gflops_1024,
            "forward_ms_1024": 1000 * forward_seconds(name, TIME_SIZE_PX) if time_forward
            else None,
            "default_weights": shipped,
        })
    if json_output:
        print_json(rows)
        return

    from rich.table import Table

    table = Table(title="roadx architectures (default cards)", title_justify="left")
    columns = ["name", "parameters", "GFLOPs", "bands", "input", "GSD m", "multiple"]
    if time_forward:
        columns.insert(3, "ms")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [
            row["name"],
            f"{row['parameters_deploy']:,}",
            "?" if row["gflops_1024"] is None else f"{row['gflops_1024']:.1f}",
            ",".join(row["band_names"]),
            _scaling(row["bands"]),
            f"{row['gsd_m']:g}",
            str(row["input_multiple_px"]),
        ]
        if time_forward:
            cells.insert(3, f"{row['forward_ms_1024']:,.0f}")
        table.add_row(*cells)
    err_console.print(table)
    err_console.print(
        "parameters: for inference (training-only auxiliary heads left out); GFLOPs and ms: "
        f"one forward pass on a {TIME_SIZE_PX}² window (1 multiply-add = 2 FLOPs); multiple: "
        "window sides must be multiples of it."
    )
    for row in rows:
        aux = row["parameters"] - row["parameters_deploy"]
        err_console.print(f"[bold]{row['name']}[/bold]: {row['paper']} "
                          f"Code licence: {row['license']}.")
        err_console.print(
            f"  window {row['tile_px']} px, predicts at 1/{row['output_stride']}"
            + (f", auxiliary heads {aux:,} parameters (loss weights "
               f"{', '.join(f'{w:g}' for w in row['aux_loss_weights'])})" if aux else "")
            + f"; default weights: {_describe_weights(row['default_weights'])}"
        )
        shipped = row["default_weights"]
        if shipped is not None and shipped["card"].get("license"):
            err_console.print(f"  weights licence: {shipped['card']['license']}")


def _scaling(bands: list[dict[str, Any]]) -> str:
    """``x/255*3.2-1.6`` when all bands share the scaling, else per-band mean/std on [0, 1]."""
    pairs = {(b["scale"], b["offset"]) for b in bands}
    if len(pairs) == 1:
        scale, offset = pairs.pop()
        return f"x/255*{scale * 255:.4g}{offset:+.4g}"
    means = [-b["offset"] / (255 * b["scale"]) for b in bands]
    stds = [1 / (255 * b["scale"]) for b in bands]
    return ("(x/255-μ)/σ, μ " + "/".join(f"{m:.3f}".lstrip("0") for m in means)
            + " σ " + "/".join(f"{s:.3f}".lstrip("0") for s in stds))


def _describe_weights(shipped: dict[str, Any] | None) -> str:
    """The shipped weights' file name, GSD and validation IoU/F1 (logged by roadx train on the
    held-out tiles), or 'none'."""
    if shipped is None:
        return "none (--weights, or roadx train)"
    card = shipped["card"]
    name = shipped["path"].rsplit("/", 1)[-1]
    text = f"{name} ({card.get('gsd_m', '?')} m"
    val = card.get("training", {}).get("val_metrics") or {}
    if "val_iou" in val and "val_f1" in val:
        text += f", val IoU {val['val_iou']:.3f} F1 {val['val_f1']:.3f}"
    return text + ")"
