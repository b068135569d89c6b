"""Road segmentation networks, their cards, the registry and checkpoints.

Architectures (``create_model(name)``, listed by ``list_models()`` and ``roadx models``):
``d3fnet34`` (D3FNet), ``dlinknet34`` (D-LinkNet34), ``ddrnet23s``/``ddrnet23`` (DDRNet-23-slim
and DDRNet-23), ``danet34`` (DANet dual attention on ResNet-34); each module names its paper.

Contract (:mod:`roadx.models.base`): every model maps one ``(B, C, H, W)`` float32 tensor
(channels, scaling and the input multiple per its :class:`ModelCard`) to ``(B, 1, H, W)``
logits; ``forward_train`` adds the auxiliary outputs that the registry entry
(:class:`ModelEntry`) weights in the training loss. Checkpoints are single ``.safetensors``
files carrying the card and constructor arguments (:mod:`roadx.models.checkpoint`); original
D-LinkNet ``.th`` weights are imported by :func:`convert_dlinknet_checkpoint`.
"""

from roadx.models.base import RoadModel, training_outputs
from roadx.models.card import BandSpec, ModelCard, imagenet_rgb_bands, uniform_bands
from roadx.models.checkpoint import (
    load_checkpoint,
    load_matching_tensors,
    read_checkpoint_metadata,
    save_checkpoint,
)
from roadx.models.convert import convert_dlinknet_checkpoint
from roadx.models.d3fnet import PAPER_DILATIONS, RELEASED_CODE_DILATIONS
from roadx.models.registry import (
    ModelEntry,
    count_parameters,
    create_model,
    forward_seconds,
    get_card,
    get_entry,
    list_models,
)

__all__ = [
    "PAPER_DILATIONS",
    "RELEASED_CODE_DILATIONS",
    "BandSpec",
    "ModelCard",
    "ModelEntry",
    "RoadModel",
    "convert_dlinknet_checkpoint",
    "count_parameters",
    "create_model",
    "forward_seconds",
    "get_card",
    "get_entry",
    "imagenet_rgb_bands",
    "list_models",
    "load_checkpoint",
    "load_matching_tensors",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "training_outputs",
    "uniform_bands",
]
