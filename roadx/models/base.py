"""The roadx model contract and its small base class.

Contract (every registered architecture): the model takes ONE ``(B, C, H, W)`` float tensor,
the channels in the card's band order and scaled per band (:class:`roadx.models.card.
ModelCard`), H and W multiples of the card's ``input_multiple_px``, and ``model(x)`` returns
``(B, 1, H, W)`` road logits at the input size (models that predict at a coarser stride
upsample inside). Multi-stream models split the channels themselves. Training may use
:meth:`RoadModel.forward_train`, which returns ``(main, *aux)``, every output ``(B, 1, H, W)``
logits; the registry entry (:class:`roadx.models.registry.ModelEntry`) gives the loss weight of
each auxiliary output. The design follows ``architecture-v2.md`` §3.1 ("one tensor in card band
order"), which keeps the predict engine, TTA and stitching model-agnostic.
"""

import torch
from torch import nn

from roadx.errors import InputError

__all__ = ["RoadModel", "check_input", "training_outputs", "unwrap_model"]


def check_input(x: torch.Tensor, model_name: str, *, in_chans: int = 3, multiple: int = 32) -> None:
    """Check that ``x`` is a ``(B, in_chans, H, W)`` batch with H and W multiples of ``multiple``.

    Args:
        x: Network input, ``(B, C, H, W)`` float.
        model_name: Used in the error message.
        in_chans: Expected channel count ``C``.
        multiple: Required multiple of H and W in pixels (the card's ``input_multiple_px``).

    Raises:
        InputError: Wrong rank or channel count, or H/W not a multiple of ``multiple`` (the
            message gives the padded size to use).
    """
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise InputError(
            f"{model_name} expects a (B, {in_chans}, H, W) batch, got shape {tuple(x.shape)}."
        )
    h_px, w_px = int(x.shape[2]), int(x.shape[3])
    if h_px % multiple or w_px % multiple:
        pad_h = -(-h_px // multiple) * multiple
        pad_w = -(-w_px // multiple) * multiple
        raise InputError(
            f"{model_name} got an input of {h_px}x{w_px} px; height and width must be multiples "
            f"of {multiple}. Pad the input to {pad_h}x{pad_w} px."
        )


class RoadModel(nn.Module):
    """Base of the roadx networks: input check from the card's numbers, one forward skeleton.

    Subclasses implement :meth:`outputs`; ``forward`` checks the input and returns the main
    logits only (auxiliary heads are not run), ``forward_train`` returns all outputs.

    Class attribute ``min_train_batch``: the smallest training batch the network supports
    (1; 2 for networks with batch norm after global pooling, e.g. DDRNet's DAPPM, whose
    statistics need more than one value per channel). ``roadx train`` refuses smaller ones.

    Args:
        name: Registry name, used in error messages (e.g. ``"ddrnet23s"``).
        in_chans: Number of input channels ``C`` (the card's ``in_chans``).
        input_multiple_px: H and W must be multiples of this (the card's
            ``input_multiple_px``: 32 for the LinkNets, 64 for DDRNet).
    """

    min_train_batch: int = 1

    def __init__(self, *, name: str, in_chans: int = 3, input_multiple_px: int = 32) -> None:
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise InputError(f"{name}: in_chans={in_chans!r}; expected a positive integer.")
        self.model_name = name
        self.in_chans = in_chans
        self.input_multiple_px = input_multiple_px

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~roadx.errors.InputError` unless ``x`` is ``(B, in_chans, H, W)``
        with H, W multiples of ``input_multiple_px``."""
        check_input(x, self.model_name, in_chans=self.in_chans, multiple=self.input_multiple_px)

    def outputs(self, x: torch.Tensor, *, aux: bool) -> tuple[torch.Tensor, ...]:
        """``(B, C, H, W)`` -> ``(main, *aux)`` logits, each ``(B, 1, H, W)``; the auxiliary
        outputs only when ``aux`` is True. Implemented by subclasses (input already checked)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict road logits.

        Args:
            x: ``(B, C, H, W)`` float32, channels and scaling per the model card.

        Returns:
            ``(B, 1, H, W)`` logits (apply a sigmoid for probabilities).

        Raises:
            InputError: Wrong channel count, or H/W not multiples of ``input_multiple_px``.
        """
        self.check_input(x)
        return self.outputs(x, aux=False)[0]

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Main and auxiliary logits for the training loss, each ``(B, 1, H, W)``.

        Raises:
            InputError: As :meth:`forward`.
        """
        self.check_input(x)
        return self.outputs(x, aux=True)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network behind ``torch.compile`` and (Distributed)DataParallel wrappers (the
    module itself when it is not wrapped)."""
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def training_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(main, *aux)`` of any model: ``forward_train`` of a :class:`RoadModel` (also behind
    ``torch.compile``/DataParallel wrappers), else ``(model(x),)``; each ``(B, 1, H, W)``
    logits for an input ``(B, C, H, W)``.

    Raises:
        InputError: As :meth:`RoadModel.forward_train`.
    """
    inner = unwrap_model(model)
    if isinstance(inner, RoadModel):
        return inner.forward_train(x)
    return (model(x),)
