"""The model registry: one explicit dict of architecture name -> :class:`ModelEntry`.

No decorators, no downloads. A new architecture is one module (builder + card) and one entry
here: the contract tests (``tests/test_model_zoo.py``), ``roadx models``, ``roadx train`` (its
auxiliary-loss weights) and ``roadx predict`` pick it up from the entry. Builders take keyword
arguments only; the arguments used are stored in checkpoints as ``"roadx.model_kwargs"``.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from roadx.errors import InputError
from roadx.models.card import ModelCard
from roadx.models.d3fnet import D3FNET34_CARD, d3fnet34
from roadx.models.d3fnet_mm import AUX_LOSS_WEIGHTS, D3FNET34_MM_CARD, d3fnet34_mm
from roadx.models.danet import DANET34_CARD, danet34
from roadx.models.ddrnet import DDRNET23_CARD, DDRNET23S_CARD, ddrnet23, ddrnet23s
from roadx.models.dlinknet import DLINKNET34_CARD, dlinknet34

__all__ = [
    "ModelEntry",
    "count_parameters",
    "create_model",
    "forward_seconds",
    "get_card",
    "get_entry",
    "list_models",
]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """Everything roadx knows about one architecture.

    Attributes:
        name: Registry name, e.g. ``"ddrnet23s"``.
        builder: Keyword-only constructor returning a :class:`~roadx.models.base.RoadModel`.
        card: Default card (bands and scaling, input multiple, GSD, window, paper, licence).
        aux_weights: Loss weight of each auxiliary output of ``forward_train``, in order (the
            main output weighs 1.0); ``()`` for single-output models.
        aux_modules: Names of the submodules used only by the auxiliary outputs (excluded from
            the deploy parameter count).
        spec_parameters: Parameter count of the default builder (all modules, auxiliary heads
            included) given by the architecture's spec; the contract tests check it.
        spec: Where ``spec_parameters`` comes from (spec file and section).
        test_kwargs: Builder arguments of the smallest model with every layer (contract tests).
        gflops_1024: FLOPs of one inference forward pass on a 1024 x 1024 window, in 1e9
            (``torch.utils.flop_counter``: convolutions, linear layers and attention matmuls;
            one multiply-add = 2 FLOPs, so half of this is the papers' "GFLOPs" = GMACs).
            Checked against a fresh count by the contract tests.
    """

    name: str
    builder: Callable[..., nn.Module]
    card: ModelCard
    aux_weights: tuple[float, ...] = ()
    aux_modules: tuple[str, ...] = ()
    spec_parameters: int | None = None
    spec: str = ""
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    gflops_1024: float | None = None

    @property
    def loss_weights(self) -> tuple[float, ...]:
        """Weights of ``(main, *aux)`` in the training loss, e.g. ``(1.0, 0.4)``."""
        return (1.0, *self.aux_weights)


_REGISTRY: Mapping[str, ModelEntry] = MappingProxyType({
    "d3fnet34": ModelEntry(
        "d3fnet34", d3fnet34, D3FNET34_CARD, spec_parameters=39_501_313,
        spec="d3fnet.md §3", test_kwargs={"width": 8}, gflops_1024=262.97,
    ),
    "dlinknet34": ModelEntry(
        "dlinknet34", dlinknet34, DLINKNET34_CARD, spec_parameters=31_096_129,
        spec="d3fnet.md §2", test_kwargs={"width": 8}, gflops_1024=212.63,
    ),
    "ddrnet23s": ModelEntry(
        "ddrnet23s", ddrnet23s, DDRNET23S_CARD, aux_weights=(0.4,),
        aux_modules=("seghead_extra",), spec_parameters=5_732_002,
        spec="ddrnet.md §7.6 (5,694,817 without the auxiliary head, §4.1)",
        test_kwargs={"planes": 8, "spp_planes": 16, "head_planes": 16}, gflops_1024=36.24,
    ),
    "ddrnet23": ModelEntry(
        "ddrnet23", ddrnet23, DDRNET23_CARD, aux_weights=(0.4,),
        aux_modules=("seghead_extra",), spec_parameters=20_294_722,
        spec="ddrnet.md §7.6 (20,146,625 without the auxiliary head, §4.1)",
        test_kwargs={"planes": 8, "spp_planes": 16, "head_planes": 16}, gflops_1024=142.99,
    ),
    "d3fnet34-mm": ModelEntry(
        "d3fnet34-mm", d3fnet34_mm, D3FNET34_MM_CARD,
        aux_weights=(AUX_LOSS_WEIGHTS["aux_rgb"], AUX_LOSS_WEIGHTS["aux_x"]),
        aux_modules=("aux_heads",), spec_parameters=55_869_883,
        spec="multimodal-fusion.md B4 (55,820,025 without the auxiliary heads)",
        test_kwargs={"width": 8}, gflops_1024=363.45,
    ),
    "danet34": ModelEntry(
        "danet34", danet34, DANET34_CARD, aux_weights=(0.4, 0.4),
        aux_modules=("center.aux_sa", "center.aux_sc"), spec_parameters=23_219_941,
        spec="danet.md §7.1A", test_kwargs={"width": 8}, gflops_1024=196.87,
    ),
})


def list_models() -> list[str]:
    """Return the registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """Return the registry entry of an architecture.

    Raises:
        InputError: Unknown name (the message lists the valid names).
    """
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
        The model: ``(B, C, H, W)`` float32 (C, H, W per its card) -> ``(B, 1, H, W)`` logits.

    Raises:
        InputError: Unknown name (the message lists the valid names), unknown keyword argument or
            invalid value.
    """
    builder = get_entry(name).builder
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise InputError(f"bad arguments for model {name!r}: {err}") from None


def get_card(name: str) -> ModelCard:
    """Return the default card of an architecture (the card of untrained/converted weights).

    Raises:
        InputError: Unknown name.
    """
    return get_entry(name).card


def count_parameters(name: str, *, deploy: bool = False, **kwargs: Any) -> int:
    """Count the parameters of an architecture without allocating its weights (meta device).

    Args:
        name: Registry name.
        deploy: Leave out the training-only auxiliary heads (``ModelEntry.aux_modules``).
        **kwargs: Builder keyword arguments.

    Returns:
        Number of parameters (39,501,313 for ``d3fnet34``, 31,096,129 for ``dlinknet34``,
        5,732,002 for ``ddrnet23s``, 5,694,817 with ``deploy=True``).

    Raises:
        InputError: Unknown name or bad arguments.
    """
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    total = sum(p.numel() for p in model.parameters())
    if deploy:
        for module_name in get_entry(name).aux_modules:
            total -= sum(p.numel() for p in model.get_submodule(module_name).parameters())
    return total


def forward_seconds(name: str, size_px: int = 1024, *, device: str | None = None) -> float:
    """Time one fp32 inference forward pass of an architecture on a ``size_px``² window.

    Random weights (the cost does not depend on them), batch 1, channels-last, after one
    warm-up pass; CUDA when available unless ``device`` says otherwise. For more settings
    (precisions, memory formats, FLOP rates) see ``benchmarks/bench_forward.py``.

    Args:
        name: Registry name.
        size_px: Window side in pixels (a multiple of the card's ``input_multiple_px``).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA if available).

    Returns:
        Seconds of the timed pass.

    Raises:
        InputError: Unknown name, or ``size_px`` not a multiple of the input multiple.
    """
    import time

    card = get_card(name)
    if size_px <= 0 or size_px % card.input_multiple_px:
        raise InputError(
            f"size_px={size_px}; {name} needs a multiple of {card.input_multiple_px} px."
        )
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = create_model(name).eval().to(target, memory_format=torch.channels_last)
    x = torch.zeros(1, card.in_chans, size_px, size_px, device=target)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        start = time.perf_counter()
        model(x)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
    return time.perf_counter() - start
