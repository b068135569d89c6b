"""Import foreign weights: the original D-LinkNet34 checkpoint and ImageNet ResNet-34 encoders.

The original D-LinkNet34 DeepGlobe weights (``log01_dink34.th``, from
``zlckanata/DeepGlobe-Road-Extraction-Challenge``, MIT) are a ``torch.save``'d state dict of a
``DataParallel`` model: keys carry a ``module.`` prefix and use the flat names of the reference
``networks/dinknet.py`` (``firstconv``, ``firstbn``, ``encoder1``..``encoder4`` with torchvision
ResNet naming inside, ``dblock.dilate1``..``4``, ``decoder4``..``decoder1``, ``finaldeconv1``,
``finalconv2``, ``finalconv3``). :data:`DLINKNET_RENAMES` is the one prefix table between those
names and roadx's ``encoder``/``center``/``decoder``/``head`` tree.

This module is the only place in roadx that reads pickled files, always with
``torch.load(weights_only=True)`` (tensors and containers only, no code execution).
"""

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadx.errors import CheckpointError, InputError, OutputError, OutputExistsError
from roadx.fs import check_output_path
from roadx.models.blocks import ResNet34Encoder
from roadx.models.checkpoint import Storage, describe_mismatch, save_checkpoint
from roadx.models.dlinknet import DLINKNET34_CARD, dlinknet34

__all__ = [
    "DLINKNET_RENAMES",
    "convert_dlinknet_checkpoint",
    "from_reference_key",
    "load_encoder_weights",
    "to_reference_key",
]

logger = logging.getLogger(__name__)

#: roadx key prefix -> reference D-LinkNet34 (``networks/dinknet.py`` ``DinkNet34``) key prefix.
DLINKNET_RENAMES: tuple[tuple[str, str], ...] = (
    ("encoder.conv1.", "firstconv."),
    ("encoder.bn1.", "firstbn."),
    ("encoder.layer1.", "encoder1."),
    ("encoder.layer2.", "encoder2."),
    ("encoder.layer3.", "encoder3."),
    ("encoder.layer4.", "encoder4."),
    ("center.", "dblock."),
    ("decoder.block4.", "decoder4."),
    ("decoder.block3.", "decoder3."),
    ("decoder.block2.", "decoder2."),
    ("decoder.block1.", "decoder1."),
    ("head.deconv1.", "finaldeconv1."),
    ("head.conv2.", "finalconv2."),
    ("head.conv3.", "finalconv3."),
)

_SOURCE = "zlckanata/DeepGlobe-Road-Extraction-Challenge (log01_dink34.th, DeepGlobe Road 2018)"


def _rename(key: str, src: int) -> str | None:
    for pair in DLINKNET_RENAMES:
        if key.startswith(pair[src]):
            return pair[1 - src] + key[len(pair[src]) :]
    return None


def to_reference_key(key: str) -> str | None:
    """Map a roadx ``dlinknet34`` state-dict key to the reference name (None if unmapped).

    Example: ``"encoder.layer2.0.downsample.0.weight"`` -> ``"encoder2.0.downsample.0.weight"``.
    """
    return _rename(key, 0)


def from_reference_key(key: str) -> str | None:
    """Map a reference D-LinkNet34 key (without ``module.``) to roadx's (None if unmapped).

    Example: ``"dblock.dilate3.bias"`` -> ``"center.dilate3.bias"``.
    """
    return _rename(key, 1)


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def describe_load_error(err: BaseException) -> str:
    """``"<Type>: <reason>"`` for a failed ``torch.load(weights_only=True)``.

    torch's message opens with advice to retry with ``weights_only=False`` (which would run
    any code in the file); only the line saying what was refused (e.g. ``Trying to load
    unsupported GLOBAL posix.system``) or what is broken (``Unsupported operand 103``) is kept.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    return f"{type(err).__name__}: {(kept or lines or ['no details'])[0]}"


def _load_pickled_state(src: Path) -> dict[str, torch.Tensor]:
    """Read a torch.save'd state dict safely; strip ``module.``; unwrap ``{"state_dict": ...}``."""
    try:
        obj: Any = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure here means "not a (safe) PyTorch checkpoint"
        raise CheckpointError(
            f"{src} is not a PyTorch checkpoint that can be read safely "
            f"({describe_load_error(err)}); expected a torch.save'd state dict. Files that "
            "need code to load are refused, never run."
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{src} does not hold a state dict (a mapping of names to tensors); found "
            f"{type(obj).__name__}."
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise InputError(f"weights file {src} not found; expected the original log01_dink34.th.")
    if dst.suffix != ".safetensors":
        raise OutputError(f"output {dst} must end in .safetensors (roadx checkpoint format).")
    if not dst.parent.is_dir():
        raise OutputError(
            f"cannot write {dst}: folder {dst.parent} does not exist; create it first."
        )
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError(f"{dst} is the input file; write the converted file elsewhere.")
    if dst.exists() and not overwrite:
        raise OutputExistsError(
            f"{dst} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    check_output_path(dst, overwrite=overwrite, suffixes=(".safetensors",))  # writable, name


def convert_dlinknet_checkpoint(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    storage: Storage | None = None,
) -> Path:
    """Convert the original D-LinkNet34 DeepGlobe weights into a roadx ``dlinknet34`` checkpoint.

    Keys are renamed with :data:`DLINKNET_RENAMES`; BatchNorm ``num_batches_tracked`` buffers,
    absent from files written by PyTorch < 0.4.1, are filled with 0. The written card is the
    DeepGlobe one: bands B, G, R; ``x / 255 * 3.2 - 1.6``; 0.5 m; output logits (the reference
    network ended in a sigmoid, which roadx applies in the caller, so probabilities are equal).

    Args:
        src_path: The original ``log01_dink34.th`` (a pickled state dict; read with
            ``torch.load(weights_only=True)``).
        dst_path: Output ``.safetensors`` file.
        overwrite: Replace ``dst_path`` if it exists.
        storage: ``"float32"`` (None: the same), ``"float16"`` or ``"int8"`` (per-channel
            int8 weights, dequantized at load; see :mod:`roadx.models.checkpoint`).

    Returns:
        The path written.

    Raises:
        InputError: ``src_path`` does not exist.
        OutputError: ``dst_path`` does not end in ``.safetensors`` or its folder is missing.
        OutputExistsError: ``dst_path`` exists and ``overwrite`` is False.
        CheckpointError: ``src_path`` is not a readable state dict, or its keys/shapes do not
            match the D-LinkNet34 layout (the message names missing/unexpected keys).

    References:
        Zhou et al., CVPR-W 2018; ``shared/specs/d3fnet.md`` §2.
    """
    src, dst = Path(src_path), Path(dst_path)
    _check_paths(src, dst, overwrite)
    ref_state = _load_pickled_state(src)
    model = dlinknet34()
    expected = {to_reference_key(k) or k: v for k, v in model.state_dict().items()}
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in ref_state:
            ref_state[key] = torch.zeros((), dtype=torch.long)  # written by PyTorch < 0.4.1
    problem = describe_mismatch(
        {k: tuple(v.shape) for k, v in expected.items()},
        {k: tuple(v.shape) for k, v in ref_state.items()},
    )
    if problem:
        raise CheckpointError(
            f"{src} does not have the D-LinkNet34 (log01_dink34.th) layout: {problem}. "
            "Only the original DinkNet34 weights of zlckanata/DeepGlobe-Road-Extraction-Challenge "
            "can be converted."
        )
    state = {
        from_reference_key(k) or k: v.float() if v.is_floating_point() else v
        for k, v in ref_state.items()
    }
    model.load_state_dict(state, strict=True)
    card = dataclasses.replace(
        DLINKNET34_CARD,
        description="D-LinkNet34 DeepGlobe Road weights of the original authors (converted).",
        training={"source": _SOURCE, "converted_from": src.name, "data": "DeepGlobe Road (0.5 m)"},
    )
    save_checkpoint(
        dst,
        model,
        card=card,
        model_kwargs={"dilations": list(model.dilations)},
        storage=storage,
        metadata={"roadx.converted_from": src.name},
    )
    logger.info("converted %s -> %s", src, dst)
    return dst


def load_encoder_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load ImageNet ResNet-34 weights (torchvision layout) into ``model.encoder`` in place.

    Accepts a torchvision ``resnet34-*.pth`` state dict (read with
    ``torch.load(weights_only=True)``) or a ``.safetensors`` file with the same keys; the
    classifier ``fc.*`` is ignored. Nothing is downloaded: the user supplies the file.

    Args:
        model: A roadx model with a :class:`~roadx.models.blocks.ResNet34Encoder` ``encoder``.
        path: The weights file.

    Raises:
        InputError: The file does not exist.
        CheckpointError: Unreadable file, or keys/shapes that are not a ResNet-34.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"encoder weights {path} not found; expected a torchvision ResNet-34 file."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as err:
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    else:
        state = _load_pickled_state(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, ResNet34Encoder):
        raise InputError(
            f"{type(model).__name__} has no ResNet-34 `encoder`; expected a roadx model such as "
            "create_model('d3fnet34')."
        )
    def shapes(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in tensors.items() if "num_batches_tracked" not in k}

    problem = describe_mismatch(shapes(encoder.state_dict()), shapes(state))
    if problem:
        raise CheckpointError(f"{path} is not a torchvision ResNet-34 state dict: {problem}.")
    encoder.load_state_dict(state, strict=False)
    logger.info("loaded encoder weights from %s", path)
