"""``roadx models``: list the registered architectures, their default cards and sizes."""

from typing import Any

from roadx.cli.console import err_console, print_json
from roadx.cli.options import JsonOpt


def models(json_output: JsonOpt = False) -> None:
    """List the registered architectures with their default cards and parameter counts.

    A trained checkpoint carries its own card (bands, GSD, provenance); these are the defaults.

    Example: roadx models --json
    """
    import json

    from roadx.models import count_parameters, get_card, list_models, read_checkpoint_metadata
    from roadx.pipeline import default_weights_path

    rows: list[dict[str, Any]] = []
    for name in list_models():
        weights = default_weights_path(name)
        shipped = None
        if weights.is_file():
            card = json.loads(read_checkpoint_metadata(weights).get("roadx.card", "{}"))
            shipped = {"path": str(weights), "card": card}
        rows.append(
            {**get_card(name).to_dict(), "parameters": count_parameters(name),
             "default_weights": shipped}
        )
    if json_output:
        print_json(rows)
        return

    from rich.table import Table

    table = Table(title="roadx architectures (default cards)", title_justify="left")
    for column in ("name", "parameters", "bands", "GSD m", "tile px", "input", "output"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['parameters']:,}",
            ",".join(row["bands"]),
            f"{row['gsd_m']:g}",
            str(row["tile_px"]),
            f"x/255*{row['input_scale'] * 255:.4g}{row['input_offset']:+g}",
            row["output"],
        )
    err_console.print(table)
    for row in rows:
        err_console.print(f"[bold]{row['name']}[/bold]: {row['paper']} "
                          f"Code licence: {row['license']}.")
        err_console.print(f"  default weights: {_describe_weights(row['default_weights'])}")
        shipped = row["default_weights"]
        if shipped is not None and shipped["card"].get("license"):
            err_console.print(f"  weights licence: {shipped['card']['license']}")


def _describe_weights(shipped: dict[str, Any] | None) -> str:
    """One cell: the shipped weights' file, GSD and validation IoU, or how to get weights."""
    if shipped is None:
        return "none (use --weights, or roadx train)"
    card = shipped["card"]
    text = f"{shipped['path']} ({card.get('gsd_m', '?')} m"
    val = card.get("training", {}).get("val_metrics") or {}
    if "iou" in val:
        text += f", val IoU {val['iou']:.3f}"
    return text + ")"
