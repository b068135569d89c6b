"""DANet34: D-LinkNet34 with a DANet dual-attention centre (position + channel attention).

Reference: J. Fu, J. Liu, H. Tian, Y. Li, Y. Bao, Z. Fang, H. Lu, "Dual Attention Network for
Scene Segmentation", CVPR 2019, arXiv 1809.02983; official code (MIT) ``junfu1115/DANet``
``encoding/nn/da_att.py`` (PAM/CAM) and ``encoding/models/sseg/danet.py`` (head). Written from
``shared/specs/danet.md`` §2, §3 and §7.1A (option A, recommended there; no code copied).

The DANet head's two branches (3x3 conv -> PAM -> 3x3 conv and 3x3 conv -> CAM -> 3x3 conv,
inter = 1/4 of the encoder's channels) sit where D-LinkNet has its dilated ``Dblock``; their sum
is projected back (1x1 conv + BN) and added to e4. The ResNet-34 encoder, LinkNet decoder and
head are roadx's (:mod:`roadx.models.blocks`), with D-LinkNet's module names, so the encoder (and
head) of a ``d3fnet34``/``dlinknet34`` checkpoint load by name (``roadx train --init``).
Auxiliary heads on the two attention branches (1x1 conv to 1 channel at 1/32, upsampled) are
used in training only, weight 0.4 each (danet.md §7.1A).

Numerics: the attention energies sum over all positions/channels and can overflow fp16, so PAM
and CAM run in float32 with autocast disabled (danet.md §2.2).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from roadx.errors import InputError
from roadx.models.base import RoadModel
from roadx.models.blocks import (
    PAPER_WIDTH,
    LinkNetDecoder,
    LinkNetHead,
    ResNet34Encoder,
    encoder_channels,
)
from roadx.models.card import DLINKNET_SCALE, ModelCard, uniform_bands

__all__ = ["CAM", "DANET34_CARD", "PAM", "DANet34", "DualAttentionCentre", "danet34"]

PamImpl = Literal["sdpa", "naive"]
CamMode = Literal["max_minus", "standard"]

DANET34_CARD = ModelCard(
    name="danet34",
    bands=uniform_bands("BGR", *DLINKNET_SCALE),
    gsd_m=1.0,
    tile_px=1024,
    input_multiple_px=32,
    output_stride=1,
    output="logits",
    license="MIT (code: junfu1115/DANet)",
    paper=(
        "Fu, Liu, Tian, Li, Bao, Fang, Lu. Dual Attention Network for Scene Segmentation. "
        "CVPR 2019, arXiv 1809.02983."
    ),
    description="DANet34: ResNet-34 encoder, DANet position + channel attention centre, "
    "D-LinkNet decoder (D-LinkNet's BGR scaling, so d3fnet34/dlinknet34 encoders initialise it).",
)


class _Fp32(nn.Module):
    """Runs its subclass's ``attend`` in float32 with autocast off; returns float32."""

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` any float dtype -> ``(B, C, H, W)`` float32."""
        if not torch.amp.is_autocast_available(x.device.type):  # e.g. meta (FLOP counting)
            return self.attend(x.float())
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.attend(x.float())


class PAM(_Fp32):
    """Position attention module (danet.md §2.1): self-attention over the H*W positions.

    ``q, k = 1x1 conv C -> C/8`` (bias), ``v = 1x1 conv C -> C``; ``A = softmax(q^T k)`` over
    keys with **no** 1/sqrt(d) scaling; ``out = v A^T``; ``y = gamma * out + x`` with ``gamma``
    a scalar initialised to 0. ``impl="sdpa"`` is scaled-dot-product attention with one head and
    scale 1 (no N x N map on fused kernels); ``"naive"`` builds the map (reference checks).

    Args:
        channels: ``C`` (a multiple of 8).
        impl: ``"sdpa"`` (default) or ``"naive"``.

    Raises:
        InputError: ``channels`` not a positive multiple of 8, unknown ``impl``.
    """

    def __init__(self, channels: int, impl: PamImpl = "sdpa") -> None:
        super().__init__()
        if channels < 8 or channels % 8:
            raise InputError(f"PAM channels={channels}; expected a positive multiple of 8.")
        if impl not in ("sdpa", "naive"):
            raise InputError(f"pam_impl={impl!r}; expected 'sdpa' or 'naive'.")
        self.impl = impl
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 -> ``(B, C, H, W)`` float32."""
        b, c, h, w = x.shape
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.key_conv(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        v = self.value_conv(x).flatten(2).transpose(1, 2)  # (B, N, C)
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)
            out = out[:, 0]  # (B, N, C)
        else:
            attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, N, N), rows sum to 1
            out = attn @ v  # (B, N, C)
        return self.gamma * out.transpose(1, 2).reshape(b, c, h, w) + x


class CAM(_Fp32):
    """Channel attention module (danet.md §2.2): self-attention over the C channels.

    ``E = F F^T`` (``F`` = x as ``(B, C, N)``); ``mode="max_minus"`` (default, the official
    code) applies softmax to ``rowmax(E) - E`` (each channel attends most to the channels
    *least* similar to it); ``"standard"`` is the paper's ``softmax(E)`` (stabilised);
    ``y = gamma * (A F) + x``, ``gamma`` scalar initialised to 0. No convolutions.

    Raises:
        InputError: Unknown ``mode``.
    """

    def __init__(self, mode: CamMode = "max_minus") -> None:
        super().__init__()
        if mode not in ("max_minus", "standard"):
            raise InputError(f"cam_mode={mode!r}; expected 'max_minus' or 'standard'.")
        self.mode = mode
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float32 -> ``(B, C, H, W)`` float32."""
        b, c, h, w = x.shape
        f = x.flatten(2)  # (B, C, N)
        energy = f @ f.transpose(1, 2)  # (B, C, C)
        rowmax = energy.amax(dim=-1, keepdim=True)
        logits = rowmax - energy if self.mode == "max_minus" else energy - rowmax
        out = torch.softmax(logits, dim=-1) @ f  # (B, C, N)
        return self.gamma * out.reshape(b, c, h, w) + x


def _conv3_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()
    )


def _aux_head(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, 1, 1))


class DualAttentionCentre(nn.Module):
    """DANet head as a residual centre (danet.md §7.1A rows 2-8, 10).

    ``sa = conv51(PAM(conv5a(e4)))``, ``sc = conv52(CAM(conv5c(e4)))``,
    ``centre = e4 + proj(sa + sc)`` with ``proj`` a 1x1 conv (no bias) + BN back to the
    encoder width; ``aux_sa``/``aux_sc`` (Dropout2d 0.1 + 1x1 conv to one channel) give the
    training-only auxiliary logits.

    Args:
        channels: Encoder channels (512); ``inter = channels // 4``.
        pam_impl: See :class:`PAM`.
        cam_mode: See :class:`CAM`.
    """

    def __init__(
        self, channels: int = 512, *, pam_impl: PamImpl = "sdpa", cam_mode: CamMode = "max_minus"
    ) -> None:
        super().__init__()
        inter = channels // 4
        self.conv5a = _conv3_bn_relu(channels, inter)
        self.sa = PAM(inter, pam_impl)
        self.conv51 = _conv3_bn_relu(inter, inter)
        self.conv5c = _conv3_bn_relu(channels, inter)
        self.sc = CAM(cam_mode)
        self.conv52 = _conv3_bn_relu(inter, inter)
        self.proj = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.aux_sa = _aux_head(inter)
        self.aux_sc = _aux_head(inter)

    def forward(self, e4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, C, h, w)`` -> ``(centre (B, C, h, w), sa_conv, sc_conv (B, C/4, h, w))``."""
        sa = self.conv51(self.sa(self.conv5a(e4)))
        sc = self.conv52(self.sc(self.conv5c(e4)))
        return e4 + self.proj(sa + sc), sa, sc


class DANet34(RoadModel):
    """DANet34: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` road logits; H, W multiples of 32.

    ResNet-34 encoder -> :class:`DualAttentionCentre` -> LinkNet decoder (additive skips) ->
    D-LinkNet head. 23,219,941 parameters (258 of them in the auxiliary heads), danet.md §7.1A.

    Args:
        width: Base channel width (64: the spec's model; a smaller multiple of 4 for tiny
            test models).
        pam_impl: ``"sdpa"`` (default) or ``"naive"``.
        cam_mode: ``"max_minus"`` (official code, default) or ``"standard"`` (paper formula).
        in_chans: Input channels (3).

    References:
        Fu et al., CVPR 2019; ``shared/specs/danet.md`` §7.1A.
    """

    def __init__(
        self,
        *,
        width: int = PAPER_WIDTH,
        pam_impl: PamImpl = "sdpa",
        cam_mode: CamMode = "max_minus",
        in_chans: int = 3,
    ) -> None:
        super().__init__(name="danet34", in_chans=in_chans)
        self.encoder = ResNet34Encoder(width, in_chans=in_chans)
        self.center = DualAttentionCentre(
            encoder_channels(width)[3], pam_impl=pam_impl, cam_mode=cam_mode
        )
        self.decoder = LinkNetDecoder(width)
        self.head = LinkNetHead(width)

    def outputs(self, x: torch.Tensor, *, aux: bool) -> tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` -> ``(main,)`` or ``(main, aux_sa, aux_sc)``, each ``(B, 1, H, W)``."""
        feats = self.encoder(x)  # e1..e4
        centre, sa, sc = self.center(feats[3])  # (B, 512, H/32, W/32), 2 x (B, 128, ...)
        main = self.head(self.decoder(centre, feats))  # (B, 1, H, W)
        if not aux:
            return (main,)
        size = tuple(x.shape[-2:])
        ups = (F.interpolate(head(t), size=size, mode="bilinear", align_corners=False)
               for head, t in ((self.center.aux_sa, sa), (self.center.aux_sc, sc)))
        return (main, *ups)


def danet34(
    *,
    width: int = PAPER_WIDTH,
    pam_impl: PamImpl = "sdpa",
    cam_mode: CamMode = "max_minus",
    in_chans: int = 3,
) -> DANet34:
    """Build DANet34 with random weights (nothing is downloaded), in training mode.

    Args:
        width: Base channel width, 64 (spec) or a smaller multiple of 4.
        pam_impl: ``"sdpa"`` or ``"naive"`` (see :class:`PAM`).
        cam_mode: ``"max_minus"`` or ``"standard"`` (see :class:`CAM`).
        in_chans: Input channels (3).

    Raises:
        InputError: Bad ``width``, ``pam_impl`` or ``cam_mode``.
    """
    return DANet34(width=width, pam_impl=pam_impl, cam_mode=cam_mode, in_chans=in_chans)
