"""roadx checkpoints: one ``.safetensors`` file holding weights, card and constructor arguments.

Metadata keys (all strings, in the safetensors header):

- ``"roadx.model"``: registry name, e.g. ``"d3fnet34"``;
- ``"roadx.model_kwargs"``: JSON object of builder keyword arguments;
- ``"roadx.card"``: JSON of the :class:`~roadx.models.card.ModelCard`;
- ``"roadx.version"``: roadx version that wrote the file;
- any extra keys the writer passes (e.g. training provenance).

:func:`load_checkpoint` rebuilds the model from the metadata alone (nanoGPT's ``model_args``
idea, ``shared/specs/style.md`` §3.7). Nothing is ever unpickled here.
"""

import json
import logging
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from roadx import __version__
from roadx.errors import CheckpointError, InputError, OutputError
from roadx.models.card import ModelCard
from roadx.models.registry import create_model, list_models

__all__ = [
    "KEY_CARD",
    "KEY_MODEL",
    "KEY_MODEL_KWARGS",
    "KEY_VERSION",
    "describe_mismatch",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

KEY_MODEL = "roadx.model"
KEY_MODEL_KWARGS = "roadx.model_kwargs"
KEY_CARD = "roadx.card"
KEY_VERSION = "roadx.version"
_RESERVED = (KEY_MODEL, KEY_MODEL_KWARGS, KEY_CARD, KEY_VERSION)
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def describe_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], *, limit: int = 5
) -> str | None:
    """Describe how two ``{tensor name: shape}`` maps differ, or return None if they match.

    Args:
        expected: Names and shapes the model needs.
        found: Names and shapes the file holds.
        limit: How many names to list per kind of problem.

    Returns:
        e.g. ``"2 missing keys (head.conv3.bias, ...); 1 shape mismatch (x: file (3,) vs model
        (4,))"``, or None.
    """

    def listed(names: list[str]) -> str:
        more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({listed(unexpected)})")
    if shapes:
        pairs = [f"{k}: file {tuple(found[k])} vs model {tuple(expected[k])}" for k in shapes]
        parts.append(f"{len(shapes)} shape mismatches ({listed(pairs)})")
    return "; ".join(parts) if parts else None


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip ``torch.compile`` and (Distributed)DataParallel wrappers."""
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _umask() -> int:
    """The process umask (read by setting it and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    card: ModelCard,
    model_kwargs: Mapping[str, Any],
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a model's weights, card and constructor arguments to one safetensors file.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so an interrupted save never leaves a partial checkpoint. An existing file
    is replaced. The architecture is ``card.name``; the state dict is checked against
    ``create_model(card.name, **model_kwargs)`` (built on the meta device, no memory) so that
    every saved file can be loaded.

    Args:
        path: Output file, conventionally ``*.safetensors``.
        model: The model (any device/dtype; ``torch.compile``/DataParallel wrappers are
            unwrapped); its ``state_dict()`` is saved.
        card: Card to store; ``card.name`` must be a registered architecture.
        model_kwargs: Builder keyword arguments (JSON-serialisable), e.g. ``{"dilations":
            [1, 2, 4, 8]}``.
        dtype: Floating-point dtype to store, e.g. ``torch.float16`` for half-size files
            (default: keep each tensor's dtype). Integer buffers are kept.
        metadata: Extra string metadata; keys must not be the reserved ``roadx.*`` keys above.

    Raises:
        InputError: Unknown architecture, non-JSON ``model_kwargs``, bad ``metadata``, or a
            model whose state dict does not match the architecture.
        OutputError: The output folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(
            f"cannot write {path}: folder {path.parent} does not exist; create it first."
        )
    try:
        kwargs_json = json.dumps(dict(model_kwargs), sort_keys=True)
    except TypeError as err:
        raise InputError(f"model_kwargs for {path.name} are not JSON-serialisable: {err}") from None
    extra = dict(metadata or {})
    bad = [
        k
        for k in extra
        if k in _RESERVED or not isinstance(k, str) or not isinstance(extra[k], str)
    ]
    if bad:
        raise InputError(
            f"metadata keys {bad} for {path.name} are reserved or not str -> str; "
            f"use other names than {list(_RESERVED)} and string values."
        )
    with torch.device("meta"):
        reference = create_model(card.name, **json.loads(kwargs_json))
    state = _unwrap(model).state_dict()
    problem = describe_mismatch(_shapes(reference.state_dict()), _shapes(state))
    if problem:
        raise InputError(
            f"model does not match architecture {card.name!r} with {kwargs_json}: {problem}."
        )
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        t = value.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous().clone()
    header = {
        KEY_MODEL: card.name,
        KEY_MODEL_KWARGS: kwargs_json,
        KEY_CARD: json.dumps(card.to_dict(), sort_keys=True),
        KEY_VERSION: __version__,
        **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        # mkstemp, and safetensors' save_file too, leave 0600; a checkpoint is a normal file
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote checkpoint %s (%s, %d tensors)", path, card.name, len(tensors))


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the string metadata of a safetensors file from its header (no tensors loaded).

    Args:
        path: A ``.safetensors`` file.

    Returns:
        The ``__metadata__`` mapping (empty if the file has none).

    Raises:
        InputError: The file does not exist.
        CheckpointError: The file is not a safetensors file or its header is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found; expected a roadx .safetensors file.")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n <= 0 or n > _MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(
                f"{path} is not a safetensors file (no valid header); expected a roadx checkpoint "
                "(.safetensors). Convert original D-LinkNet .th files with `roadx convert-weights`."
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt safetensors header (not a JSON object).")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path} has corrupt safetensors metadata (expected str -> str).")
    return dict(meta)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Rebuild a model from a roadx checkpoint.

    The architecture and its arguments come from the file's metadata; weights stored in a
    reduced dtype (e.g. float16) are cast back, so the model is always float32.

    Args:
        path: A ``.safetensors`` file written by :func:`save_checkpoint` or
            ``roadx convert-weights``.
        device: Device to move the model to.

    Returns:
        ``(model, card)``: the float32 model in eval mode on ``device``, and its card.

    Raises:
        InputError: The file does not exist.
        CheckpointError: Not a safetensors file, corrupt header, missing roadx metadata,
            unknown architecture, or tensors that do not match the architecture (missing or
            unexpected keys, shape mismatch; the message lists some).
    """
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    absent = [k for k in (KEY_MODEL, KEY_MODEL_KWARGS, KEY_CARD) if k not in meta]
    if absent:
        raise CheckpointError(
            f"{path} has no roadx metadata ({', '.join(absent)} missing); it was not written by "
            "roadx. Convert original D-LinkNet weights with `roadx convert-weights`."
        )
    name = meta[KEY_MODEL]
    if name not in list_models():
        raise CheckpointError(
            f"{path} is for architecture {name!r}, which this roadx does not know; expected one "
            f"of {list_models()}. Upgrade roadx or use another checkpoint."
        )
    try:
        kwargs = json.loads(meta[KEY_MODEL_KWARGS])
        card = ModelCard.from_dict(json.loads(meta[KEY_CARD]))
        if not isinstance(kwargs, dict):
            raise InputError("model kwargs are not a JSON object")
        with torch.device("meta"):  # no random init: every tensor comes from the file
            model = create_model(name, **kwargs)
    except (json.JSONDecodeError, InputError) as err:
        raise CheckpointError(f"{path} has invalid roadx metadata: {err}") from None
    if card.name != name:
        raise CheckpointError(f"{path}: card name {card.name!r} differs from model {name!r}.")
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path} has corrupt tensor data: {err}") from None
    problem = describe_mismatch(_shapes(model.state_dict()), _shapes(tensors))
    if problem:
        raise CheckpointError(f"{path} does not match architecture {name!r}: {problem}.")
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    logger.debug("loaded checkpoint %s (%s, version %s)", path, name, meta.get(KEY_VERSION))
    return model.to(device).eval(), card
