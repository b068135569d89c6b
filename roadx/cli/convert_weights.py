"""``roadx convert-weights``: import the original D-LinkNet34 DeepGlobe weights."""

from pathlib import Path
from typing import Annotated

import typer

from roadx.cli.console import err_console
from roadx.cli.options import OverwriteOpt


def convert_weights(
    src: Annotated[
        Path,
        typer.Argument(
            help="Original D-LinkNet34 weights (log01_dink34.th from "
            "zlckanata/DeepGlobe-Road-Extraction-Challenge).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="roadx checkpoint to write (.safetensors).", show_default=False
        ),
    ],
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert original D-LinkNet34 weights (.th) into a roadx dlinknet34 checkpoint.

    The file is read without executing code (weights only). The checkpoint gets the DeepGlobe card.

    Example: roadx convert-weights log01_dink34.th -o dlinknet34_deepglobe.safetensors
    """
    import json

    from roadx.models import ModelCard, convert_dlinknet_checkpoint, read_checkpoint_metadata

    path = convert_dlinknet_checkpoint(src, output, overwrite=overwrite)
    card = ModelCard.from_dict(json.loads(read_checkpoint_metadata(path)["roadx.card"]))
    err_console.print(
        f"wrote [bold]{path}[/bold]: {card.name}, bands {','.join(card.bands)}, "
        f"{card.gsd_m:g} m/px, input x/255*{card.input_scale * 255:.4g}{card.input_offset:+g}, "
        f"output {card.output}",
        highlight=False,
    )
