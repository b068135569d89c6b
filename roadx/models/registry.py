"""The model registry: one explicit dict of architecture name -> (builder, default card).

No decorators, no downloads (``shared/specs/style.md`` §3.7). Builders take keyword arguments
only; the arguments used are stored in checkpoints as ``"roadx.model_kwargs"``.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from roadx.errors import InputError
from roadx.models.card import ModelCard
from roadx.models.d3fnet import D3FNET34_CARD, d3fnet34
from roadx.models.dlinknet import DLINKNET34_CARD, dlinknet34

__all__ = ["count_parameters", "create_model", "get_card", "list_models"]

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelCard]] = {
    "d3fnet34": (d3fnet34, D3FNET34_CARD),
    "dlinknet34": (dlinknet34, DLINKNET34_CARD),
}


def list_models() -> list[str]:
    """Return the registered architecture names, sorted: ``["d3fnet34", "dlinknet34"]``."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[Callable[..., nn.Module], ModelCard]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}; expected one of {list_models()} (see `roadx models`)."
        ) from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture with random weights, in training mode.

    Args:
        name: Registry name, e.g. ``"d3fnet34"``.
        **kwargs: Builder keyword arguments, e.g. ``dilations=(1, 2, 4, 8)``.

    Returns:
        The model: ``(B, 3, H, W)`` float32 -> ``(B, 1, H, W)`` logits, H and W divisible by 32.

    Raises:
        InputError: Unknown name (the message lists the valid names), unknown keyword argument or
            invalid value.
    """
    builder, _ = _entry(name)
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise InputError(f"bad arguments for model {name!r}: {err}") from None


def get_card(name: str) -> ModelCard:
    """Return the default card of an architecture (the card of untrained/converted weights).

    Raises:
        InputError: Unknown name.
    """
    return _entry(name)[1]


def count_parameters(name: str, **kwargs: Any) -> int:
    """Count the parameters of an architecture without allocating its weights (meta device).

    Args:
        name: Registry name.
        **kwargs: Builder keyword arguments.

    Returns:
        Number of parameters (39,501,313 for ``d3fnet34``, 31,096,129 for ``dlinknet34``).

    Raises:
        InputError: Unknown name or bad arguments.
    """
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())
