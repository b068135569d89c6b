"""D-LinkNet34: ResNet-34 encoder, dilated centre block, LinkNet decoder (the baseline).

Reference: L. Zhou, C. Zhang, M. Wu, "D-LinkNet: LinkNet with Pretrained Encoder and Dilated
Convolution for High Resolution Satellite Imagery Road Extraction", CVPR Workshops 2018.
Reference code (MIT): ``zlckanata/DeepGlobe-Road-Extraction-Challenge`` ``networks/dinknet.py``
class ``DinkNet34``. Architecture as written down in ``shared/specs/d3fnet.md`` §2.

Differences from the reference: the network returns logits (no final sigmoid), and the module
tree is ``encoder`` / ``center`` / ``decoder`` / ``head``; :mod:`roadx.models.convert` holds the
one rename table to and from the reference names (``firstconv``, ``encoder1``, ``dblock``...).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from roadx.models.base import RoadModel
from roadx.models.blocks import (
    PAPER_WIDTH,
    LinkNetDecoder,
    LinkNetHead,
    ResNet34Encoder,
    encoder_channels,
    validate_dilations,
)
from roadx.models.card import DLINKNET_SCALE, ModelCard, uniform_bands

__all__ = ["DLINKNET34_CARD", "DLinkNet", "Dblock", "dlinknet34"]

DLINKNET34_CARD = ModelCard(
    name="dlinknet34",
    bands=uniform_bands("BGR", *DLINKNET_SCALE),
    gsd_m=0.5,
    tile_px=1024,
    output="logits",
    license="MIT (code: zlckanata/DeepGlobe-Road-Extraction-Challenge)",
    paper=(
        "Zhou, Zhang, Wu. D-LinkNet: LinkNet with Pretrained Encoder and Dilated Convolution "
        "for High Resolution Satellite Imagery Road Extraction. CVPR Workshops 2018."
    ),
    description="D-LinkNet34 (DeepGlobe Road 2018 winner's architecture), BGR input at 0.5 m.",
)


class Dblock(nn.Module):
    """D-LinkNet centre: cascaded dilated 3x3 convs 512->512 + ReLU, summed with the input.

    ``out = x + r1 + r2 + r3 + r4`` with ``r_i = relu(dilate_i(r_{i-1}))``, ``r_0 = x``
    (d3fnet.md §2.2). Conv biases are zeroed at construction, as in the reference.

    Args:
        channels: Feature channels (512 for ResNet-34).
        dilations: Dilation (= padding) of the four convs.
    """

    def __init__(self, channels: int = 512, dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        d1, d2, d3, d4 = (int(d) for d in dilations)
        self.dilate1 = nn.Conv2d(channels, channels, 3, dilation=d1, padding=d1)
        self.dilate2 = nn.Conv2d(channels, channels, 3, dilation=d2, padding=d2)
        self.dilate3 = nn.Conv2d(channels, channels, 3, dilation=d3, padding=d3)
        self.dilate4 = nn.Conv2d(channels, channels, 3, dilation=d4, padding=d4)
        for conv in (self.dilate1, self.dilate2, self.dilate3, self.dilate4):
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w) -> (B, C, h, w)``."""
        r1 = F.relu(self.dilate1(x))
        r2 = F.relu(self.dilate2(r1))
        r3 = F.relu(self.dilate3(r2))
        r4 = F.relu(self.dilate4(r3))
        return x + r1 + r2 + r3 + r4


class DLinkNet(RoadModel):
    """D-LinkNet34: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` road logits.

    H and W must be divisible by 32. 31,096,129 parameters.

    Args:
        dilations: Dilation rates of the centre block (reference: 1, 2, 4, 8).
        width: Base channel width (64: the reference model; a smaller multiple of 4 gives a
            tiny model with the same layers).

    References:
        Zhou et al., CVPR-W 2018; ``shared/specs/d3fnet.md`` §2.
    """

    def __init__(
        self, dilations: Sequence[int] = (1, 2, 4, 8), *, width: int = PAPER_WIDTH
    ) -> None:
        super().__init__(name="dlinknet34")
        self.dilations = tuple(int(d) for d in dilations)
        self.encoder = ResNet34Encoder(width)
        self.center = Dblock(encoder_channels(width)[3], self.dilations)
        self.decoder = LinkNetDecoder(width)
        self.head = LinkNetHead(width)

    def outputs(self, x: torch.Tensor, *, aux: bool) -> tuple[torch.Tensor]:
        """``(B, 3, H, W)`` -> ``((B, 1, H, W) logits,)``; no auxiliary outputs."""
        feats = self.encoder(x)  # e1..e4
        center = self.center(feats[3])  # (B, 512, H/32, W/32)
        d1 = self.decoder(center, feats)  # (B, 64, H/2, W/2)
        return (self.head(d1),)  # (B, 1, H, W)


def dlinknet34(
    *, dilations: Sequence[int] = (1, 2, 4, 8), width: int = PAPER_WIDTH
) -> DLinkNet:
    """Build D-LinkNet34 with random weights (nothing is downloaded).

    Args:
        dilations: Four dilation rates of the centre block (reference: 1, 2, 4, 8).
        width: Base channel width, 64 (reference) or a smaller multiple of 4.

    Returns:
        The model, in training mode.

    Raises:
        InputError: If ``dilations`` does not hold four positive integers, or a bad ``width``.
    """
    return DLinkNet(dilations=validate_dilations(dilations), width=width)
