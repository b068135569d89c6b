"""DDRNet-23-slim and DDRNet-23: deep dual-resolution networks (real-time segmentation).

Reference: Y. Hong, H. Pan, W. Sun, Y. Jia, "Deep Dual-resolution Networks for Real-time and
Accurate Semantic Segmentation of Road Scenes", arXiv 2101.06085 (2021); journal version Pan et
al., IEEE T-ITS 2022. Official model code (MIT): ``ydhongHIT/DDRNet``
``segmentation/DDRNet_23_slim.py``, ``segmentation/DDRNet_23.py``. Written from the layer-by-layer
description in ``shared/specs/ddrnet.md`` §2–3 (no code copied); the module names are the
official ones (``conv1``, ``layer1``..``layer5``, ``layer3_``..``layer5_``, ``compression3/4``,
``down3/4``, ``spp``, ``final_layer``, ``seghead_extra``) so that official ImageNet/Cityscapes
state dicts load without a rename table.

A trunk runs to 1/8; a high-resolution branch stays at 1/8 while a low-resolution branch goes
to 1/64; two bilateral fusions swap information; DAPPM aggregates context at 1/64; the head
predicts at 1/8. roadx wrapper (ddrnet.md §7.2): the 1/8 logits are upsampled bilinearly
(``align_corners=False``) to the input size inside the model, so predict, TTA and stitching see
full-size logits; inputs must be multiples of 64 (the low branch reaches 1/64). The auxiliary
head (``seghead_extra``, on the high branch after the first fusion) runs in
:meth:`~roadx.models.base.RoadModel.forward_train` only; the registry weights it 0.4 in the loss
(ddrnet.md §5, mmsegmentation's 1.0 / 0.4).
"""

import torch
import torch.nn.functional as F
from torch import nn

from roadx.errors import InputError
from roadx.models.base import RoadModel
from roadx.models.blocks import init_conv_bn_
from roadx.models.card import ModelCard, imagenet_rgb_bands

__all__ = [
    "DAPPM",
    "DDRNET23S_CARD",
    "DDRNET23_CARD",
    "DDRNet",
    "DDRNetBasicBlock",
    "DDRNetBottleneck",
    "SegmentHead",
    "ddrnet23",
    "ddrnet23s",
]

_PAPER = (
    "Hong, Pan, Sun, Jia. Deep Dual-resolution Networks for Real-time and Accurate Semantic "
    "Segmentation of Road Scenes. arXiv 2101.06085 (2021); IEEE T-ITS 2022."
)
_LICENSE = "MIT (code: ydhongHIT/DDRNet)"
#: Input sizes must be multiples of this (the low-resolution branch reaches 1/64).
DDRNET_INPUT_MULTIPLE = 64

DDRNET23S_CARD = ModelCard(
    name="ddrnet23s",
    bands=imagenet_rgb_bands(),
    gsd_m=1.0,
    tile_px=1024,
    input_multiple_px=DDRNET_INPUT_MULTIPLE,
    output_stride=8,
    output="logits",
    license=_LICENSE,
    paper=_PAPER,
    description="DDRNet-23-slim (planes 32), real-time dual-resolution network; predicts at "
    "1/8 and upsamples bilinearly.",
)
DDRNET23_CARD = ModelCard(
    name="ddrnet23",
    bands=imagenet_rgb_bands(),
    gsd_m=1.0,
    tile_px=1024,
    input_multiple_px=DDRNET_INPUT_MULTIPLE,
    output_stride=8,
    output="logits",
    license=_LICENSE,
    paper=_PAPER,
    description="DDRNet-23 (planes 64), dual-resolution network; predicts at 1/8 and upsamples "
    "bilinearly.",
)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class DDRNetBasicBlock(nn.Module):
    """3x3 conv (stride) + BN + ReLU, 3x3 conv + BN, plus shortcut; ReLU unless ``no_relu``.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first conv; a 1x1 conv + BN shortcut when the shape changes.
        no_relu: Return the pre-activation sum (the last block of a DDRNet stage).

    Shapes: ``(B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride)``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, no_relu: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = (
            nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))
            if stride != 1 or in_ch != out_ch else None
        )
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y)) + shortcut
        return y if self.no_relu else F.relu(y)


class DDRNetBottleneck(nn.Module):
    """Bottleneck with expansion 2: 1x1 in->p, 3x3 (stride) p->p, 1x1 p->2p, each + BN (ReLU
    after the first two), plus shortcut; no final ReLU (``no_relu`` default True, as upstream).

    Shapes: ``(B, in_ch, H, W) -> (B, 2 * planes, H / stride, W / stride)``.
    """

    expansion = 2

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, no_relu: bool = True) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = (
            nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))
            if stride != 1 or in_ch != out_ch else None
        )
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W) -> (B, 2 * planes, H/stride, W/stride)``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y)) + shortcut
        return y if self.no_relu else F.relu(y)


def _basic_stage(in_ch: int, out_ch: int, n_blocks: int, stride: int = 1) -> nn.Sequential:
    """``n_blocks`` basic blocks, the first with the stride; the last (n >= 2) without ReLU."""
    blocks = [DDRNetBasicBlock(in_ch, out_ch, stride)]
    blocks += [
        DDRNetBasicBlock(out_ch, out_ch, no_relu=i == n_blocks - 1) for i in range(1, n_blocks)
    ]
    return nn.Sequential(*blocks)


def _pre_act(in_ch: int, out_ch: int, kernel: int, pool: nn.Module | None = None) -> nn.Sequential:
    """(pool) -> BN -> ReLU -> conv (no bias): DAPPM's pre-activation unit."""
    layers = [] if pool is None else [pool]
    layers += [
        nn.BatchNorm2d(in_ch), nn.ReLU(),
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
    ]
    return nn.Sequential(*layers)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module (ddrnet.md §3.1).

    Five branches (identity, avg-pools 5/2, 9/4, 17/8 and global), each BN-ReLU-1x1 to
    ``branch_ch``; every pooled branch is upsampled, added to the previous branch's output and
    refined by a BN-ReLU-3x3 (hierarchical residual fusion); the concatenation is compressed by
    BN-ReLU-1x1 to ``out_ch`` and added to a BN-ReLU-1x1 shortcut of the input.

    Shapes: ``(B, in_ch, h, w) -> (B, out_ch, h, w)``.
    """

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int) -> None:
        super().__init__()
        self.scale0 = _pre_act(in_ch, branch_ch, 1)
        self.scale1 = _pre_act(in_ch, branch_ch, 1, nn.AvgPool2d(5, stride=2, padding=2))
        self.scale2 = _pre_act(in_ch, branch_ch, 1, nn.AvgPool2d(9, stride=4, padding=4))
        self.scale3 = _pre_act(in_ch, branch_ch, 1, nn.AvgPool2d(17, stride=8, padding=8))
        self.scale4 = _pre_act(in_ch, branch_ch, 1, nn.AdaptiveAvgPool2d((1, 1)))
        self.process1 = _pre_act(branch_ch, branch_ch, 3)
        self.process2 = _pre_act(branch_ch, branch_ch, 3)
        self.process3 = _pre_act(branch_ch, branch_ch, 3)
        self.process4 = _pre_act(branch_ch, branch_ch, 3)
        self.compression = _pre_act(5 * branch_ch, out_ch, 1)
        self.shortcut = _pre_act(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, h, w) -> (B, out_ch, h, w)``."""
        size = x.shape[-2:]
        ys = [self.scale0(x)]
        pairs = ((self.scale1, self.process1), (self.scale2, self.process2),
                 (self.scale3, self.process3), (self.scale4, self.process4))
        for scale, process in pairs:
            up = F.interpolate(scale(x), size=size, mode="bilinear", align_corners=False)
            ys.append(process(up + ys[-1]))
        return self.compression(torch.cat(ys, dim=1)) + self.shortcut(x)


class SegmentHead(nn.Module):
    """BN -> ReLU -> 3x3 conv in->mid (no bias) -> BN -> ReLU -> 1x1 conv mid->1 (bias).

    Shapes: ``(B, in_ch, h, w) -> (B, 1, h, w)`` logits.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, h, w) -> (B, out_ch, h, w)``."""
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class DDRNet(RoadModel):
    """DDRNet-23(-slim): ``(B, C, H, W)`` -> ``(B, 1, H, W)`` road logits; H, W multiples of 64.

    Layer table: ddrnet.md §3 (``p = planes``, high-branch width ``2p``). Parameters with
    the auxiliary head: 5,732,002 (slim: planes 32, spp 128, head 64) and 20,294,722 (planes
    64, spp 128, head 128); without it 5,694,817 and 20,146,625 (ddrnet.md §4.1, §7.6).

    Args:
        name: Registry name for messages (``"ddrnet23s"`` or ``"ddrnet23"``).
        planes: Base width ``p`` (32 slim, 64 full; any positive int for tiny test models).
        spp_planes: DAPPM branch width (128).
        head_planes: Middle width of the heads (64 slim, 128 full).
        in_chans: Input channels (3).
        blocks: Basic blocks per stage (2, 2, 2, 2 for DDRNet-23).

    References:
        Hong et al., arXiv 2101.06085; ``shared/specs/ddrnet.md``.
    """

    min_train_batch = 2  # DAPPM's batch norms after global pooling see one value per image

    def __init__(
        self,
        *,
        name: str = "ddrnet23s",
        planes: int = 32,
        spp_planes: int = 128,
        head_planes: int = 64,
        in_chans: int = 3,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__(name=name, in_chans=in_chans, input_multiple_px=DDRNET_INPUT_MULTIPLE)
        widths = {"planes": planes, "spp_planes": spp_planes, "head_planes": head_planes}
        bad = {k: v for k, v in widths.items() if not isinstance(v, int) or v < 1}
        if bad or len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise InputError(
                f"{name}: invalid widths {bad or widths} or blocks {blocks}; expected positive "
                "integers (planes 32, spp_planes 128, head_planes 64 for DDRNet-23-slim)."
            )
        p, high = planes, 2 * planes
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_chans, p, 3, stride=2, padding=1), nn.BatchNorm2d(p), nn.ReLU(),
            nn.Conv2d(p, p, 3, stride=2, padding=1), nn.BatchNorm2d(p), nn.ReLU(),
        )
        self.layer1 = _basic_stage(p, p, blocks[0])
        self.layer2 = _basic_stage(p, 2 * p, blocks[1], stride=2)
        self.layer3 = _basic_stage(2 * p, 4 * p, blocks[2], stride=2)
        self.layer4 = _basic_stage(4 * p, 8 * p, blocks[3], stride=2)
        self.layer3_ = _basic_stage(2 * p, high, 2)
        self.layer4_ = _basic_stage(high, high, 2)
        self.layer5_ = nn.Sequential(DDRNetBottleneck(high, high))
        self.layer5 = nn.Sequential(DDRNetBottleneck(8 * p, 8 * p, stride=2))
        self.compression3 = nn.Sequential(*_conv_bn(4 * p, high, 1))
        self.compression4 = nn.Sequential(*_conv_bn(8 * p, high, 1))
        self.down3 = nn.Sequential(*_conv_bn(high, 4 * p, 3, stride=2))
        self.down4 = nn.Sequential(
            *_conv_bn(high, 4 * p, 3, stride=2), nn.ReLU(), *_conv_bn(4 * p, 8 * p, 3, stride=2)
        )
        self.spp = DAPPM(16 * p, spp_planes, 4 * p)
        self.final_layer = SegmentHead(4 * p, head_planes)
        self.seghead_extra = SegmentHead(high, head_planes)
        init_conv_bn_(self)

    def outputs(self, x: torch.Tensor, *, aux: bool) -> tuple[torch.Tensor, ...]:
        """``(B, C, H, W)`` -> ``(main,)`` or ``(main, aux)`` logits, each ``(B, 1, H, W)``."""
        size = (x.shape[-2] // 8, x.shape[-1] // 8)

        def up(t: torch.Tensor, to: tuple[int, int]) -> torch.Tensor:
            return F.interpolate(t, size=to, mode="bilinear", align_corners=False)

        x1 = self.layer1(self.conv1(x))  # (B, p, H/4, W/4), pre-activation
        x2 = self.layer2(F.relu(x1))  # (B, 2p, H/8, W/8)
        low = self.layer3(F.relu(x2))  # (B, 4p, H/16, W/16)
        high = self.layer3_(F.relu(x2))  # (B, 2p, H/8, W/8)
        # fusion 1, simultaneous: both paths read the pre-fusion tensors
        low, high = (low + self.down3(F.relu(high)),
                     high + up(self.compression3(F.relu(low)), size))
        tap = high  # the auxiliary head's input
        low4 = self.layer4(F.relu(low))  # (B, 8p, H/32, W/32)
        high = self.layer4_(F.relu(high))
        low, high = (low4 + self.down4(F.relu(high)),
                     high + up(self.compression4(F.relu(low4)), size))
        high = self.layer5_(F.relu(high))  # (B, 4p, H/8, W/8)
        context = self.spp(self.layer5(F.relu(low)))  # (B, 4p, H/64, W/64)
        main = self.final_layer(high + up(context, size))  # (B, 1, H/8, W/8)
        full = tuple(x.shape[-2:])
        if not aux:
            return (up(main, full),)
        return up(main, full), up(self.seghead_extra(tap), full)


def ddrnet23s(
    *, planes: int = 32, spp_planes: int = 128, head_planes: int = 64, in_chans: int = 3
) -> DDRNet:
    """Build DDRNet-23-slim (5,732,002 parameters, 5,694,817 without the auxiliary head).

    Args:
        planes: Base width (32; smaller for tiny test models).
        spp_planes: DAPPM branch width (128).
        head_planes: Head middle width (64).
        in_chans: Input channels (3).

    Returns:
        The model with random weights (nothing is downloaded), in training mode.

    Raises:
        InputError: Non-positive widths.
    """
    return DDRNet(name="ddrnet23s", planes=planes, spp_planes=spp_planes,
                  head_planes=head_planes, in_chans=in_chans)


def ddrnet23(
    *, planes: int = 64, spp_planes: int = 128, head_planes: int = 128, in_chans: int = 3
) -> DDRNet:
    """Build DDRNet-23 (20,294,722 parameters, 20,146,625 without the auxiliary head).

    Args and errors as :func:`ddrnet23s` (defaults planes 64, spp 128, head 128).
    """
    return DDRNet(name="ddrnet23", planes=planes, spp_planes=spp_planes,
                  head_planes=head_planes, in_chans=in_chans)
