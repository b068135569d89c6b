"""``roadx convert-weights``: import original D-LinkNet34 weights, or re-store a roadx
checkpoint compactly (int8 per-channel weights, float16, or float32)."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from roadx.cli.console import err_console
from roadx.cli.options import OverwriteOpt


def convert_weights(
    src: Annotated[
        Path,
        typer.Argument(
            help="Original D-LinkNet34 weights (log01_dink34.th from "
            "zlckanata/DeepGlobe-Road-Extraction-Challenge), or a roadx .safetensors "
            "checkpoint to re-store.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="roadx checkpoint to write (.safetensors).", show_default=False
        ),
    ],
    storage: Annotated[
        Literal["float32", "float16", "int8"] | None,
        typer.Option(
            help="Weight storage of the output: int8 (per-channel scales, ~4x smaller than "
            "float32, dequantized at load), float16 or float32. Default: float32 for .th "
            "input; required for a .safetensors input.",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert original D-LinkNet34 weights (.th) into a roadx dlinknet34 checkpoint, or
    re-store a roadx checkpoint (e.g. a fine-tuned one) with --storage int8.

    The file is read without executing code (weights only). A .th input gets the DeepGlobe card.

    Examples: roadx convert-weights log01_dink34.th -o dlinknet34_deepglobe.safetensors;
    roadx convert-weights runs/ft/best.safetensors -o ft-int8.safetensors --storage int8
    """
    import json

    from roadx.errors import InputError
    from roadx.models import ModelCard, convert_dlinknet_checkpoint, read_checkpoint_metadata
    from roadx.models.checkpoint import restore_checkpoint

    if src.suffix.lower() == ".safetensors":
        if storage is None:
            raise InputError(
                f"{src} is already a roadx checkpoint; pass --storage int8, float16 or float32 "
                "to re-store it"
            )
        path = restore_checkpoint(src, output, storage=storage, overwrite=overwrite)
    else:
        path = convert_dlinknet_checkpoint(src, output, overwrite=overwrite, storage=storage)
    size_mb = path.stat().st_size / 1e6
    card = ModelCard.from_dict(json.loads(read_checkpoint_metadata(path)["roadx.card"]))
    err_console.print(
        f"wrote [bold]{path}[/bold]: {card.name}, bands {','.join(card.band_names)}, "
        f"{card.gsd_m:g} m/px, input {card.describe_scaling()}, "
        f"output {card.output}, {size_mb:.1f} MB",
        highlight=False,
    )
