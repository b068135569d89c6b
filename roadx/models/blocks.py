"""Layers shared by D-LinkNet34, D3FNet and DANet34: ResNet-34 encoder, LinkNet decoder, head.

Written from the architecture description in ``shared/specs/d3fnet.md`` §2 (D-LinkNet34,
Zhou et al., CVPR-W 2018, reference code ``zlckanata/DeepGlobe-Road-Extraction-Challenge``
``networks/dinknet.py``). No torchvision: the encoder is built here, with torchvision's
attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``downsample``) so that an ImageNet
ResNet-34 state dict loads into :class:`ResNet34Encoder` unchanged. Nothing is ever downloaded.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from roadx.errors import InputError
from roadx.models.base import check_input

__all__ = [
    "ENCODER_CHANNELS",
    "PAPER_WIDTH",
    "BasicBlock",
    "DecoderBlock",
    "LinkNetDecoder",
    "LinkNetHead",
    "ResNet34Encoder",
    "check_input",
    "encoder_channels",
    "validate_dilations",
]

#: Channels of the encoder features e1..e4 (strides 4, 8, 16, 32) of the published models.
ENCODER_CHANNELS = (64, 128, 256, 512)
#: Base width of the published models (the stem's channels); see :func:`encoder_channels`.
PAPER_WIDTH = 64
#: Total downsampling of the encoder; input sizes must be multiples of it.
OUTPUT_STRIDE = 32


def encoder_channels(width: int = PAPER_WIDTH) -> tuple[int, int, int, int]:
    """Channels of e1..e4 for base ``width``: ``(w, 2w, 4w, 8w)``; 64 gives the papers' models.

    Narrower widths (e.g. 8: 1/64 of the parameters) keep every layer, shape rule and
    attribute name of the published architecture, for fast contract tests and tiny models
    (the "width-reduced model" idea of timm's and SMP's test suites).

    Raises:
        InputError: ``width`` is not a positive multiple of 4 (the decoder blocks use
            ``channels / 4``).
    """
    if not isinstance(width, int) or width < 4 or width % 4:
        raise InputError(f"width={width!r}; expected a positive multiple of 4 (64 = paper).")
    return (width, 2 * width, 4 * width, 8 * width)


def validate_dilations(dilations: Sequence[int]) -> tuple[int, int, int, int]:
    """Return ``dilations`` as a tuple of four positive ints.

    Args:
        dilations: Dilation rates of the four centre convolutions, e.g. ``(1, 2, 4, 8)``.

    Returns:
        The rates as a 4-tuple of int.

    Raises:
        InputError: If there are not exactly four positive integers.
    """
    rates = tuple(dilations)
    valid = all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in rates)
    if len(rates) != 4 or not valid:
        raise InputError(
            f"dilations={dilations!r} is invalid; expected four positive integers such as "
            "(1, 3, 5, 9) (D3FNet paper) or (1, 2, 4, 8) (released code, D-LinkNet)."
        )
    return (rates[0], rates[1], rates[2], rates[3])


def init_conv_bn_(module: nn.Module) -> None:
    """Initialise like torchvision's ResNets, in place: every ``nn.Conv2d`` weight
    Kaiming-normal (fan-out, ReLU gain), every ``nn.BatchNorm2d`` weight 1 and bias 0
    (He et al., ICCV 2015; other parameters unchanged)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity (or 1x1 conv+BN) shortcut, ReLU.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first conv (2 halves H and W).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + shortcut, inplace=True)


class ResNet34Encoder(nn.Module):
    """ResNet-34 without avgpool/fc, returning the four stage features (d3fnet.md §2.1).

    Stem: 7x7/2 conv (no bias) + BN + ReLU + 3x3/2 max-pool; then 3, 4, 6, 3 basic blocks.
    Initialised like torchvision (Kaiming-normal fan-out convs, BN weight 1 and bias 0); load
    ImageNet weights with ``encoder.load_state_dict(sd, strict=False)`` minus ``fc.*``.

    Args:
        width: Stem channels; stages have ``width × (1, 2, 4, 8)`` (64: ResNet-34).
        in_chans: Input channels of the stem (3: RGB/BGR).
        depths: Basic blocks per stage: ``(3, 4, 6, 3)`` ResNet-34, ``(2, 2, 2, 2)``
            ResNet-18 (He et al., CVPR 2016, Table 1).
    """

    def __init__(
        self, width: int = PAPER_WIDTH, in_chans: int = 3, depths: Sequence[int] = (3, 4, 6, 3)
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = encoder_channels(width)
        d1, d2, d3, d4 = depths
        self.conv1 = nn.Conv2d(in_chans, c1, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(c1, c1, d1, stride=1)
        self.layer2 = self._make_layer(c1, c2, d2, stride=2)
        self.layer3 = self._make_layer(c2, c3, d3, stride=2)
        self.layer4 = self._make_layer(c3, c4, d4, stride=2)
        init_conv_bn_(self)

    @staticmethod
    def _make_layer(in_ch: int, out_ch: int, n_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_ch, out_ch, stride)]
        blocks += [BasicBlock(out_ch, out_ch) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode ``(B, 3, H, W)`` into ``[e1, e2, e3, e4]``.

        Returns:
            e1 ``(B, 64, H/4, W/4)``, e2 ``(B, 128, H/8, W/8)``, e3 ``(B, 256, H/16, W/16)``,
            e4 ``(B, 512, H/32, W/32)``.
        """
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))  # (B, 64, H/4, W/4)
        e1 = self.layer1(x)
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [e1, e2, e3, e4]


class DecoderBlock(nn.Module):
    """LinkNet decoder block: 1x1 reduce, 3x3 transposed conv x2, 1x1 expand (d3fnet.md §2.3).

    Each conv has a bias and is followed by BN + ReLU. The attribute names (``conv1``,
    ``norm1``, ``deconv2``, ``norm2``, ``conv3``, ``norm3``) match the D-LinkNet reference code.

    Args:
        in_ch: Input channels ``m``; the middle width is ``m // 4``.
        out_ch: Output channels ``n``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch // 4
        self.conv1 = nn.Conv2d(in_ch, mid, 1)
        self.norm1 = nn.BatchNorm2d(mid)
        self.deconv2 = nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1)
        self.norm3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W) -> (B, out_ch, 2H, 2W)``."""
        x = F.relu(self.norm1(self.conv1(x)), inplace=True)
        x = F.relu(self.norm2(self.deconv2(x)), inplace=True)  # (B, m/4, 2H, 2W)
        return F.relu(self.norm3(self.conv3(x)), inplace=True)


class LinkNetDecoder(nn.Module):
    """The four D-LinkNet decoder blocks with optional additive skips (d3fnet.md §2.3).

    ``block4`` 512->256, ``block3`` 256->128, ``block2`` 128->64, ``block1`` 64->64 (at the
    paper's ``width`` 64; channels scale with ``width``).
    """

    def __init__(self, width: int = PAPER_WIDTH) -> None:
        super().__init__()
        c1, c2, c3, c4 = encoder_channels(width)
        self.block4 = DecoderBlock(c4, c3)
        self.block3 = DecoderBlock(c3, c2)
        self.block2 = DecoderBlock(c2, c1)
        self.block1 = DecoderBlock(c1, c1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None) -> torch.Tensor:
        """Decode a centre feature to half the input resolution.

        Args:
            x: ``(B, 512, H/32, W/32)`` centre feature.
            skips: ``[e1, e2, e3]`` (as returned by the encoder, e4 may follow) added after
                block4/3/2, or ``None`` for no skips (D3FNet's attention stream).

        Returns:
            ``(B, 64, H/2, W/2)``.
        """
        d = self.block4(x)  # (B, 256, H/16, W/16)
        if skips is not None:
            d = d + skips[2]
        d = self.block3(d)  # (B, 128, H/8, W/8)
        if skips is not None:
            d = d + skips[1]
        d = self.block2(d)  # (B, 64, H/4, W/4)
        if skips is not None:
            d = d + skips[0]
        return self.block1(d)  # (B, 64, H/2, W/2)


class LinkNetHead(nn.Module):
    """D-LinkNet head: 4x4/2 transposed conv 64->32 + ReLU, 3x3 conv + ReLU, 3x3 conv 32->1.

    Returns logits; the reference's final sigmoid is left to the caller (d3fnet.md §2.4).
    Channels 64/32 at the paper's ``width`` 64 (``width`` and ``width / 2`` in general).
    """

    def __init__(self, width: int = PAPER_WIDTH) -> None:
        super().__init__()
        c1 = encoder_channels(width)[0]
        self.deconv1 = nn.ConvTranspose2d(c1, c1 // 2, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c1 // 2, c1 // 2, 3, padding=1)
        self.conv3 = nn.Conv2d(c1 // 2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 64, H/2, W/2) -> (B, 1, H, W)`` logits."""
        x = F.relu(self.deconv1(x), inplace=True)  # (B, 32, H, W)
        x = F.relu(self.conv2(x), inplace=True)
        return self.conv3(x)
