"""Road segmentation networks, their cards, the registry and checkpoints.

Architectures (``create_model(name)``):

- ``"d3fnet34"``: D3FNet (ICCV-W 2025, arXiv 2508.15537), :mod:`roadx.models.d3fnet`;
- ``"dlinknet34"``: D-LinkNet34 (CVPR-W 2018), :mod:`roadx.models.dlinknet`.

Every model maps ``(B, 3, H, W)`` float32 (H, W divisible by 32, channels and scaling per its
:class:`ModelCard`) to ``(B, 1, H, W)`` logits. Checkpoints are single ``.safetensors`` files
carrying the card and constructor arguments (:mod:`roadx.models.checkpoint`); original
D-LinkNet ``.th`` weights are imported by :func:`convert_dlinknet_checkpoint`.
"""

from roadx.models.card import ModelCard
from roadx.models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from roadx.models.convert import convert_dlinknet_checkpoint
from roadx.models.d3fnet import PAPER_DILATIONS, RELEASED_CODE_DILATIONS
from roadx.models.registry import count_parameters, create_model, get_card, list_models

__all__ = [
    "PAPER_DILATIONS",
    "RELEASED_CODE_DILATIONS",
    "ModelCard",
    "convert_dlinknet_checkpoint",
    "count_parameters",
    "create_model",
    "get_card",
    "list_models",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
