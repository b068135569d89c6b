"""roadx checkpoints: one ``.safetensors`` file holding weights, card and constructor arguments.

Metadata keys (all strings, in the safetensors header):

- ``"roadx.model"``: registry name, e.g. ``"d3fnet34"``;
- ``"roadx.model_kwargs"``: JSON object of builder keyword arguments;
- ``"roadx.card"``: JSON of the :class:`~roadx.models.card.ModelCard`;
- ``"roadx.version"``: roadx version that wrote the file;
- ``"roadx.storage"`` (optional): how the weights are stored, ``"int8-per-channel"`` for
  compact files (see below); absent for plain float32/float16 files;
- any extra keys the writer passes (e.g. training provenance).

Compact storage (``storage="int8"``): every floating-point tensor with two or more dimensions
(convolution and linear weights, 99.8 % of d3fnet34's parameters) is stored as int8 with one
float32 scale per slice along dimension 0 (the output channel of ``Conv2d``/``Linear``, the
input channel of ``ConvTranspose2d``): ``w ≈ q * scale``, ``scale = max|w| / 127``,
symmetric, round to nearest. The scale sits beside the tensor under ``"<name>::int8_scale"``.
Other tensors (biases, batch-norm statistics) stay float32. :func:`load_checkpoint`
dequantizes to float32 at load, so a 158 MB float32 (79 MB float16) d3fnet34 becomes a
40 MB file with the same model interface. Weight-only per-channel int8 as in PyTorch's
``torch.ao.quantization`` per-channel observers and TensorRT/ONNX weight quantization.

:func:`load_checkpoint` rebuilds the model from the metadata alone (nanoGPT's ``model_args``
idea, ``shared/specs/style.md`` §3.7). Nothing is ever unpickled here.
"""

import dataclasses
import json
import logging
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from roadx import __version__
from roadx.errors import CheckpointError, InputError, OutputError
from roadx.fs import check_output_path, partial_path
from roadx.models.base import unwrap_model
from roadx.models.card import ModelCard
from roadx.models.registry import create_model, list_models

__all__ = [
    "KEY_CARD",
    "KEY_MODEL",
    "KEY_MODEL_KWARGS",
    "KEY_STORAGE",
    "KEY_VERSION",
    "STORAGES",
    "dequantize_int8",
    "describe_mismatch",
    "load_checkpoint",
    "load_matching_tensors",
    "quantize_int8",
    "read_checkpoint_metadata",
    "restore_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

KEY_MODEL = "roadx.model"
KEY_MODEL_KWARGS = "roadx.model_kwargs"
KEY_CARD = "roadx.card"
KEY_VERSION = "roadx.version"
KEY_STORAGE = "roadx.storage"
_RESERVED = (KEY_MODEL, KEY_MODEL_KWARGS, KEY_CARD, KEY_VERSION, KEY_STORAGE)
INT8_STORAGE = "int8-per-channel"
INT8_SCALE_SUFFIX = "::int8_scale"
Storage = Literal["float32", "float16", "int8"]
STORAGES: tuple[str, ...] = ("float32", "float16", "int8")
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


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a weight to int8 with one symmetric scale per slice along dimension 0.

    Args:
        weight: ``(C0, ...)`` floating-point tensor, at least 2-D.

    Returns:
        ``(q, scale)``: ``q`` int8 of ``weight``'s shape in ``[-127, 127]`` and ``scale``
        ``(C0,)`` float32 with ``weight ≈ q * scale`` (per slice: ``max|w| / 127``; 1.0 for
        an all-zero slice). The rounding error is at most ``scale / 2`` per element.
    """
    flat = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_int8`: ``(C0, ...)`` int8 and ``(C0,)`` scales → float32."""
    shape = (-1,) + (1,) * (q.ndim - 1)
    return q.to(torch.float32) * scale.to(torch.float32).reshape(shape)


def _store(
    state: Mapping[str, torch.Tensor], storage: Storage | None, dtype: torch.dtype | None
) -> dict[str, torch.Tensor]:
    """The tensors to write: cast per ``dtype``, or int8 + scales per ``storage``.

    A tensor that a reduced dtype cannot hold (e.g. a batch-norm running variance above
    float16's 65504, which would become infinite) is kept in float32; in int8 storage the
    remaining tensors (biases, batch-norm statistics: 0.2 % of the parameters) stay float32.
    """
    if storage in ("float32", "int8"):
        dtype = torch.float32
    elif storage == "float16":
        dtype = torch.float16
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        t = value.detach().to("cpu")
        if storage == "int8" and t.is_floating_point() and t.ndim >= 2:
            q, scale = quantize_int8(t)
            tensors[key] = q.contiguous()
            tensors[key + INT8_SCALE_SUFFIX] = scale.contiguous()
            continue
        if dtype is not None and t.is_floating_point():
            cast = t.to(dtype)
            if torch.isfinite(t).all() and not torch.isfinite(cast).all():
                logger.warning("%s does not fit %s; stored as float32", key, dtype)
                cast = t.to(torch.float32)
            t = cast
        tensors[key] = t.contiguous().clone()
    return tensors


def _repair_overflowed_batch_norm(state: dict[str, torch.Tensor], path: Path) -> None:
    """Rewrite infinite batch-norm running variances in an exactly equivalent finite form.

    Older roadx files stored every tensor in float16, where a running variance above 65504
    became ``inf``. Such a channel's normalised output is 0, so the layer outputs its bias
    ``β`` there; ``γ = 0`` with variance 1 gives the same output with finite numbers (and lets
    fine-tuning learn ``γ`` again). Modifies ``state`` in place; logs a warning per layer.
    """
    for key in [k for k in state if k.endswith(".running_var")]:
        var = state[key]
        weight_key = key.removesuffix("running_var") + "weight"
        overflowed = torch.isposinf(var)
        if not overflowed.any() or weight_key not in state:
            continue
        state[key] = torch.where(overflowed, torch.ones_like(var), var)
        state[weight_key] = torch.where(overflowed, torch.zeros_like(state[weight_key]),
                                        state[weight_key])
        logger.warning(
            "%s: %d of %d running variances of %s overflowed float16 (inf); their channels "
            "output the batch-norm bias, now stored as weight 0 (same output)",
            path, int(overflowed.sum()), var.numel(), key.removesuffix(".running_var"),
        )


def _restore(tensors: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Float32 state dict from stored tensors: dequantize int8 + scale pairs, upcast floats.

    Raises:
        CheckpointError: an int8 weight without its scale, or a scale without its weight.
    """
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.endswith(INT8_SCALE_SUFFIX):
            if key.removesuffix(INT8_SCALE_SUFFIX) not in tensors:
                raise CheckpointError(f"{path}: int8 scale {key} has no weight tensor.")
            continue
        scale = tensors.get(key + INT8_SCALE_SUFFIX)
        if scale is not None:
            if value.dtype != torch.int8 or scale.shape != (value.shape[0],):
                raise CheckpointError(
                    f"{path}: {key} is {value.dtype} {tuple(value.shape)} with scales "
                    f"{tuple(scale.shape)}; expected int8 with one scale per channel."
                )
            state[key] = dequantize_int8(value, scale)
        elif value.dtype == torch.int8:
            raise CheckpointError(f"{path}: int8 tensor {key} has no {INT8_SCALE_SUFFIX} scale.")
        else:
            state[key] = value.float() if value.is_floating_point() else value
    return state


def _check_dtypes(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Refuse tensors of the wrong kind: a weight must be floating point (float16/32/64,
    bfloat16, or int8 with scales, already dequantized here), an integer buffer such as
    ``num_batches_tracked`` an integer; bool and complex tensors fit neither.

    Raises:
        CheckpointError: naming up to three offending tensors with their dtypes.
    """
    wrong = []
    for key, ref in expected.items():
        value = state[key]
        if ref.is_floating_point():
            ok = value.is_floating_point()
        else:
            ok = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
        if not ok:
            wrong.append(f"{key} is {str(value.dtype).removeprefix('torch.')}")
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise CheckpointError(
            f"{path} holds tensors of the wrong type: {', '.join(wrong[:3])}{more}; expected "
            "floating-point weights (float32, float16, bfloat16, or int8 with per-channel "
            "scales). The file is damaged or was not written by roadx."
        )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The float state dict stored in a roadx checkpoint (any storage: float32/16, bf16,
    int8 + scales), on the CPU, batch-norm overflows of float16 files repaired.

    Raises:
        CheckpointError: Corrupt tensor data, or tensors of an unknown storage.
    """
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path} has corrupt tensor data: {err}") from None
    state = _restore(tensors, path)
    _repair_overflowed_batch_norm(state, path)
    return state


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


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
    storage: Storage | None = None,
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
        storage: ``"float32"``, ``"float16"`` or ``"int8"`` (compact: weights as int8 with
            per-channel scales, the rest float16; see the module docstring); overrides
            ``dtype``. None: as ``dtype`` says.
        metadata: Extra string metadata; keys must not be the reserved ``roadx.*`` keys above.

    Raises:
        InputError: Unknown architecture or ``storage``, non-JSON ``model_kwargs``, bad
            ``metadata``, or a model whose state dict does not match the architecture.
        OutputError: The output folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(
            f"cannot write {path}: folder {path.parent} does not exist; create it first."
        )
    if storage is not None and storage not in STORAGES:
        raise InputError(f"unknown weight storage {storage!r}; expected one of {STORAGES}.")
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
    state = unwrap_model(model).state_dict()
    problem = describe_mismatch(_shapes(reference.state_dict()), _shapes(state))
    if problem:
        raise InputError(
            f"model does not match architecture {card.name!r} with {kwargs_json}: {problem}."
        )
    tensors = _store(state, storage, dtype)
    header = {
        KEY_MODEL: card.name,
        KEY_MODEL_KWARGS: kwargs_json,
        KEY_CARD: json.dumps(card.to_dict(), sort_keys=True),
        KEY_VERSION: __version__,
        **({KEY_STORAGE: INT8_STORAGE} if storage == "int8" else {}),
        **extra,
    }
    tmp = partial_path(path)
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
    reduced dtype (float16) are cast back and int8 weights dequantized with their
    per-channel scales, so the model is always float32.

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
            unexpected keys, shape mismatch; the message lists some), tensors of the wrong
            dtype (e.g. int64 or bool weights), int8 weights without their scales, or
            NaN/infinite weights.
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
    state = _read_state(path)
    problem = describe_mismatch(_shapes(model.state_dict()), _shapes(state))
    if problem:
        raise CheckpointError(f"{path} does not match architecture {name!r}: {problem}.")
    _check_dtypes(model.state_dict(), state, path)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise CheckpointError(
            f"{path} holds NaN or infinite weights in {', '.join(broken[:3])}{more} (a diverged "
            "training run?); use another checkpoint, e.g. an earlier best.safetensors."
        )
    model.load_state_dict(state, strict=True, assign=True)
    logger.debug("loaded checkpoint %s (%s, version %s)", path, name, meta.get(KEY_VERSION))
    return model.to(device).eval(), card


def load_matching_tensors(
    model: nn.Module, path: str | os.PathLike[str]
) -> tuple[list[str], ModelCard]:
    """Copy into ``model`` (in place) every tensor of a roadx checkpoint whose name and shape
    match one of the model's: initialise one architecture from another's weights, e.g. the
    ResNet-34 encoder (and LinkNet head) of ``d3fnet34`` into ``danet34``.

    Args:
        model: The model to initialise (any roadx architecture).
        path: A roadx ``.safetensors`` checkpoint of any architecture and storage.

    Returns:
        ``(names, card)``: the state-dict names that were loaded, sorted, and the source card.

    Raises:
        InputError: The file does not exist.
        CheckpointError: Not a roadx checkpoint, corrupt, NaN/infinite values among the
            matching tensors, or no tensor matching by name and shape.
    """
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    if KEY_CARD not in meta:
        raise CheckpointError(f"{path} has no roadx card; expected a roadx checkpoint.")
    try:
        card = ModelCard.from_dict(json.loads(meta[KEY_CARD]))
    except (json.JSONDecodeError, InputError) as err:
        raise CheckpointError(f"{path} has invalid roadx metadata: {err}") from None
    state = _read_state(path)
    target = unwrap_model(model).state_dict()
    matching = {
        k: v for k, v in state.items()
        if k in target and tuple(v.shape) == tuple(target[k].shape)
        and v.is_floating_point() == target[k].is_floating_point()
    }
    if not matching:
        raise CheckpointError(
            f"{path} ({card.name}) shares no tensor (by name and shape) with "
            f"{type(unwrap_model(model)).__name__}; expected weights of a compatible encoder."
        )
    _check_dtypes({k: target[k] for k in matching}, matching, path)
    broken = [k for k, v in matching.items()
              if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights in {', '.join(broken[:3])}.")
    unwrap_model(model).load_state_dict(matching, strict=False)
    logger.info("initialised %d of %d tensors from %s (%s)", len(matching), len(target), path,
                card.name)
    return sorted(matching), card


def restore_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    storage: Storage,
    overwrite: bool = False,
) -> Path:
    """Re-write a roadx checkpoint with another weight storage (e.g. compact int8).

    Card, constructor arguments and extra metadata are kept; the card's ``training`` record
    gains ``"storage"`` (what was done and from which file's sha256).

    Args:
        src: a roadx ``.safetensors`` checkpoint (any storage).
        dst: the file to write (``.safetensors``); must differ from ``src``.
        storage: ``"float32"``, ``"float16"`` or ``"int8"``.
        overwrite: replace an existing ``dst``.

    Returns:
        ``dst`` as a Path.

    Raises:
        InputError: ``src`` missing, ``dst`` is ``src``, or an unknown ``storage``.
        OutputError: ``dst`` exists without ``overwrite``; its folder is missing or cannot
            be written; its extension is not ``.safetensors``; its name is too long.
        CheckpointError: ``src`` is not a valid roadx checkpoint.
    """
    import hashlib

    src, dst = Path(src), Path(dst)
    if storage not in STORAGES:
        raise InputError(f"unknown weight storage {storage!r}; expected one of {STORAGES}.")
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError(f"{dst} is the input checkpoint; write the converted file elsewhere.")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; pass --overwrite to replace it.")
    check_output_path(dst, overwrite=overwrite, suffixes=(".safetensors",))  # writable, name
    meta = read_checkpoint_metadata(src)
    model, card = load_checkpoint(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    training = dict(card.training)
    training["storage"] = (
        f"{storage}" + (" per output channel, dequantized to float32 at load" if storage ==
                        "int8" else "") + f"; converted from sha256 {digest}"
    )
    card = dataclasses.replace(card, training=training)
    extra = {k: v for k, v in meta.items() if k not in _RESERVED}
    save_checkpoint(
        dst, model, card=card, model_kwargs=json.loads(meta[KEY_MODEL_KWARGS]),
        storage=storage, metadata=extra,
    )
    return dst
