"""``d3fnet34-mm``: dual-stream D3FNet for RGB + an auxiliary raster (NIR, nDSM, SAR, ...).

Design: ``shared/specs/multimodal-fusion.md`` Part B (B3-B8), which turns the ideas of MDDG
("Modality Divergence-aware Dynamic Gating for RGB-T Semantic Segmentation", 2025, code
``mlvccn/MDDG_RGBTSeg``; the paper text itself was not available) into a pure-PyTorch roadx model:

- RGB stream: D3FNet's ResNet-34 encoder (:class:`roadx.models.blocks.ResNet34Encoder`);
  auxiliary stream: a ResNet-18 (or -34) with a ``k``-channel stem (:class:`AuxEncoder`).
- After every encoder stage a Divergence-aware Gated Fusion block (:class:`DGF`) produces the
  fused skip ``f_i`` and, with ``feedback``, updated stream features for the next stage.
- A Dynamic Frequency Gate (:class:`DFG`) on the 1/4 skip (optionally also on 1/8).
- D3FNet's centre (DADE) and dual decoder (DDFM) and D-LinkNet's head, unchanged, on
  ``f_1..f_4`` (:mod:`roadx.models.d3fnet`; Liu, Xu, Sziranyi, ICCV-W 2025, arXiv 2508.15537).
- Training only: one auxiliary head per stream (:class:`AuxHead`, weights
  :data:`AUX_LOSS_WEIGHTS` from MDDG's 0.3) and modality dropout (p = 0.15, B6).

Model contract (issue #11): ONE ``(B, 3 + k, H, W)`` float tensor in card band order, the first
three channels the RGB stream (D3FNet's BGR order and ``x / 255 * 3.2 - 1.6`` scaling), the
other ``k`` channels the auxiliary stream; output ``(B, 1, H, W)`` logits, H and W divisible by
32. **Missing auxiliary data** (a roadx addition that makes spec B6's "zeros + validity mask 0"
exact): a non-finite value (NaN) in any auxiliary channel marks that pixel's auxiliary data as
no-data; a ``(B, 3, H, W)`` input means the auxiliary raster is absent altogether. No-data is
filled with 0 and a validity map ``v`` (min-pooled to each stage: a cell is valid only if all its
pixels are) multiplies every place where the auxiliary stream enters the RGB path (the
divergence map ``D`` of the stream update and the fused residual ``h``). Where ``v = 0`` the
model therefore computes *exactly* its RGB-only path (RGB encoder -> DADE -> DDFM -> head, with
the DFG), whatever the auxiliary values; modality dropout trains that path.

Sizes (full width, 1 aux band, DFG on 1/4 only; counted here, equal to spec B4):
55,820,025 parameters without the training-only auxiliary heads (:data:`SPEC_PARAMS`),
+49,858 with them; 181.7 GMACs per 1024² window (see :func:`d3fnet34_mm`).

Where this differs from spec B, and why:

- One input tensor, split inside (issue #11's model contract), instead of ``model(x_rgb,
  x_aux)``. :meth:`D3FNetMM.forward_train` returns roadx's ``(main, aux_rgb, aux_x)`` with
  ``aux_x`` made gradient-free where the auxiliary data was dropped (B6: no aux-stream loss
  there); :meth:`D3FNetMM.train_outputs` gives the parts (:class:`MMTrainOutput`, with the
  validity) for an exactly masked loss (:func:`mm_training_loss`).
- Auxiliary validity is a gate, not an extra input channel (B2 allows either): NaN marks
  no-data and ``v = 0`` makes the output *exactly* the RGB-only path, so "aux missing" has a
  defined result even for a model trained without dropout.
- Hidden widths of the DGF pixel gate (``C/4``) and channel gate (``2C/16``) are at least 4;
  this only changes test widths (``C < 16``), where a single hidden ReLU unit can die.
- Windowed attention uses ``max(1, C/32)`` heads (C/32 at full width) so narrow models work.
- GMACs: spec B4's 177.0 leaves out attention matmuls; counted, the model has 181.7.
- Spec B8's "every DGF parameter has a gradient on the second step" holds except for the last
  stage's auxiliary branch, which acts only through ``γ_a`` and ``β`` and needs a third step.
"""

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from roadx.errors import InputError
from roadx.models.base import RoadModel
from roadx.models.blocks import (
    OUTPUT_STRIDE,
    PAPER_WIDTH,
    LinkNetHead,
    ResNet34Encoder,
    encoder_channels,
    validate_dilations,
)
from roadx.models.card import DLINKNET_SCALE, BandSpec, ModelCard, uniform_bands
from roadx.models.d3fnet import DADE, DDFM, PAPER_DILATIONS, AttentionImpl

__all__ = [
    "AUX_LOSS_WEIGHTS",
    "DFG",
    "DGF",
    "MODALITY_DROPOUT_P",
    "SPEC_PARAMS",
    "AuxEncoder",
    "AuxHead",
    "D3FNET34_MM_CARD",
    "D3FNetMM",
    "D3FNetMMConfig",
    "MMTrainOutput",
    "WindowCrossAttention",
    "d3fnet34_mm",
    "init_from_d3fnet",
    "mm_training_loss",
]

#: Loss weight of each training-only auxiliary head (spec B6; MDDG weights each of its two
#: auxiliary heads by 0.3, ``configs/mf_rgbt.yaml``). Keys as in :attr:`MMTrainOutput.aux`.
AUX_LOSS_WEIGHTS: dict[str, float] = {"aux_rgb": 0.3, "aux_x": 0.3}
#: Per-sample probability of dropping the auxiliary modality in training (spec B6).
MODALITY_DROPOUT_P = 0.15
#: Parameters of ``d3fnet34_mm(aux_bands=1)`` without auxiliary heads (spec B4/B8, verified).
SPEC_PARAMS = 55_820_025
#: Strides of the four encoder stages.
_STAGE_STRIDES = (4, 8, 16, 32)
_AUX_DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_CROSS_MODES = ("conv", "attn")

CrossMode = Literal["conv", "attn"]
AuxEncoderName = Literal["resnet18", "resnet34"]


@dataclass(frozen=True)
class D3FNetMMConfig:
    """Constructor arguments of :class:`D3FNetMM` (spec B7 flags).

    Attributes:
        aux_bands: ``k``, channels of the auxiliary stream (1 for NIR/nDSM, 2 for SAR VV+VH).
        width: Base width (64 = full size; a multiple of 4, e.g. 8 for tests).
        feedback: Feed the DGF-updated features back into both streams (MDDG; default on).
        neg_key: Negate the keys of the cross-attention (MDDG's divergence-seeking attention).
        hard_mask: Replace the soft divergence by MDDG's top-50 % mask (straight-through).
        dfg_levels: Skips that get a :class:`DFG`: subset of ``(1, 2)`` (1 = the 1/4 skip).
        cross_mode: Per stage, ``"conv"`` (depthwise cross-conv) or ``"attn"`` (windowed
            cross-attention).
        window: Attention window side in tokens (clamped to the feature map).
        aux_encoder: ``"resnet18"`` (default, the lighter stream as MDDG's MiT-B1) or
            ``"resnet34"``.
        modality_dropout: Per-sample probability of dropping the auxiliary data in training.
        aux_heads: Build the training-only auxiliary heads (their parameters are in the
            state dict; :meth:`D3FNetMM.drop_aux_heads` removes them for export).
        dilations: DADE dilation rates (D3FNet paper's by default).
        causal: Causal mask in DADE's differential attention (D3FNet's released code: on).
        attention: DADE attention implementation, ``"sdpa"`` or ``"explicit"``.

    Raises:
        InputError: On construction, for any invalid value.
    """

    aux_bands: int = 1
    width: int = PAPER_WIDTH
    feedback: bool = True
    neg_key: bool = True
    hard_mask: bool = False
    dfg_levels: tuple[int, ...] = (1,)
    cross_mode: tuple[CrossMode, CrossMode, CrossMode, CrossMode] = ("conv", "conv", "attn", "attn")
    window: int = 8
    aux_encoder: AuxEncoderName = "resnet18"
    modality_dropout: float = MODALITY_DROPOUT_P
    aux_heads: bool = True
    dilations: tuple[int, int, int, int] = field(default=PAPER_DILATIONS)
    causal: bool = True
    attention: AttentionImpl = "sdpa"

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> InputError:
            return InputError(f"{name}={getattr(self, name)!r}; expected {expected}.")

        if not isinstance(self.aux_bands, int) or isinstance(self.aux_bands, bool) or not (
            1 <= self.aux_bands <= 64
        ):
            raise bad("aux_bands", "an integer from 1 to 64")
        encoder_channels(self.width)  # raises InputError for a bad width
        levels = tuple(self.dfg_levels)
        if len(set(levels)) != len(levels) or not set(levels) <= {1, 2}:
            raise bad("dfg_levels", "a subset of (1, 2), e.g. (1,) or (1, 2) or ()")
        object.__setattr__(self, "dfg_levels", levels)
        modes = tuple(self.cross_mode)
        if len(modes) != 4 or any(m not in _CROSS_MODES for m in modes):
            raise bad("cross_mode", "four of 'conv'/'attn', e.g. ('conv', 'conv', 'attn', 'attn')")
        object.__setattr__(self, "cross_mode", modes)
        if not isinstance(self.window, int) or self.window < 1:
            raise bad("window", "a positive integer (8)")
        if self.aux_encoder not in _AUX_DEPTHS:
            raise bad("aux_encoder", f"one of {sorted(_AUX_DEPTHS)}")
        p = self.modality_dropout
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise bad("modality_dropout", "a probability in [0, 1]")
        object.__setattr__(self, "dilations", validate_dilations(self.dilations))
        if self.attention not in ("sdpa", "explicit"):
            raise bad("attention", "'sdpa' or 'explicit'")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel: ``(B, C, H, W) -> (B, C, H, W)``, affine."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, C, H, W)`` per pixel over C."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class AuxEncoder(ResNet34Encoder):
    """ResNet-18/34 encoder for the auxiliary stream with a ``k``-channel stem (spec B3 row 2).

    Same layers, attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``) and
    initialisation as :class:`roadx.models.blocks.ResNet34Encoder`, except the stem conv takes
    ``in_chans`` channels and the stages have ``depths`` basic blocks (ResNet-18: 2, 2, 2, 2;
    He et al., "Deep Residual Learning", CVPR 2016, Table 1).

    Args:
        in_chans: Auxiliary channels ``k``.
        width: Stem channels; stages have ``width × (1, 2, 4, 8)``.
        depths: Basic blocks per stage.
    """

    def __init__(
        self, in_chans: int, width: int = PAPER_WIDTH, depths: Sequence[int] = (2, 2, 2, 2)
    ) -> None:
        super().__init__(width, in_chans=in_chans, depths=depths)


def _stem(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet stem of ``encoder`` (its ``conv1``, ``bn1``, ``maxpool``): ``(B, k, H, W) ->
    (B, width, H/4, W/4)``."""
    return encoder.maxpool(F.relu(encoder.bn1(encoder.conv1(x)), inplace=True))


class WindowCrossAttention(nn.Module):
    """One direction of DGF's cross-modal attention in non-overlapping windows (spec B3.1 4a).

    ``q = 1×1(2C -> C)(query_src)``, ``k = 1×1(C -> C)(other)``, ``v = 1×1(C -> C)(other)``;
    ``heads = max(1, C / 32)`` (head dim 32 at full width), softmax scale ``1/sqrt(head dim)``.
    With ``neg_key`` the keys are negated, so each query attends most to the *least* similar
    positions of the other modality (MDDG's "divergence-aware" attention, ``MultiModality_CA.py``).
    Windows are ``s × s`` tokens with ``s = min(window, H, W)``; the map is zero-padded on the
    bottom/right to a multiple of ``s`` and padded keys are masked out (every window keeps at
    least one real key because the padding is smaller than ``s``).

    Args:
        channels: ``C``.
        window: Window side in tokens (8).
        neg_key: Negate the keys (default on).
    """

    def __init__(self, channels: int, window: int = 8, *, neg_key: bool = True) -> None:
        super().__init__()
        self.heads = max(1, channels // 32)
        if channels % self.heads:
            raise InputError(f"channels={channels} is not divisible by {self.heads} heads.")
        self.window = window
        self.neg_key = neg_key
        self.q = nn.Conv2d(2 * channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)

    def _windows(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """``(B, C, Hp, Wp) -> (B * nH * nW, heads, s*s, C / heads)``."""
        b, c, hp, wp = x.shape
        nh, nw, d = hp // s, wp // s, c // self.heads
        x = x.view(b, self.heads, d, nh, s, nw, s)
        return x.permute(0, 3, 5, 1, 4, 6, 2).reshape(b * nh * nw, self.heads, s * s, d)

    def forward(self, query_src: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Attend from ``query_src`` ``(B, 2C, H, W)`` to ``other`` ``(B, C, H, W)``.

        Returns:
            ``(B, C, H, W)``, same dtype as the inputs.
        """
        b, c, h, w = other.shape
        s = min(self.window, h, w)
        pad_h, pad_w = -h % s, -w % s
        q, k, v = self.q(query_src), self.k(other), self.v(other)
        if self.neg_key:
            k = -k
        mask = None  # (N, 1, 1, T): True = the key takes part
        hp, wp = h + pad_h, w + pad_w
        nh, nw, d = hp // s, wp // s, c // self.heads
        if pad_h or pad_w:
            q, k, v = (F.pad(t, (0, pad_w, 0, pad_h)) for t in (q, k, v))
            real = torch.zeros(hp, wp, dtype=torch.bool, device=q.device)
            real[:h, :w] = True
            real = real.view(nh, s, nw, s).permute(0, 2, 1, 3).reshape(1, nh * nw, 1, 1, s * s)
            mask = real.expand(b, -1, -1, -1, -1).reshape(b * nh * nw, 1, 1, s * s)
        out = F.scaled_dot_product_attention(
            self._windows(q, s), self._windows(k, s), self._windows(v, s), attn_mask=mask
        )  # (N, heads, T, d)
        out = out.view(b, nh, nw, self.heads, s, s, d).permute(0, 3, 6, 1, 4, 2, 5)
        return out.reshape(b, c, hp, wp)[:, :, :h, :w]


class DGF(nn.Module):
    """Divergence-aware Gated Fusion of one encoder stage (spec B3.1; MDDG ``FusionBlock``).

    For RGB feature ``r`` and auxiliary feature ``a`` (both ``(B, C, H, W)``):

    1. ``r̂ = LN(r)``, ``â = LN(a)`` (per-pixel LayerNorm over channels);
    2. divergence ``D = ½ (1 - cos(P_r r̂, P_a â))`` per pixel, ``P`` 1×1 convs to
       ``max(C/4, 16)`` channels; with ``hard_mask`` the per-image top-50 % most divergent
       pixels get 1, the rest 0, with the soft map's gradient (straight-through, MDDG);
    3. pixel gates ``[g_r, g_a] = sigmoid(1×1 ∘ ReLU ∘ 1×1 ([r̂; â]))`` (2C -> C/4 -> 2);
    4. cross context ``t_r, t_a``: ``"attn"`` -- :class:`WindowCrossAttention` each way;
       ``"conv"`` -- ``t_r = 1×1(2C -> C)([r̂; DW7×7(â)])`` and symmetrically;
    5. ``m = g·t + (1 - g)·x̂``; ``r' = r + γ_r · (D·v) ⊙ 1×1(m_r)``, same for ``a'``;
    6. channel gate ``z = sigmoid(MLP(GAP([r'; a'])))`` (2C -> 2C/16 -> 2C);
    7. ``h = ReLU(BN(1×1(z ⊙ [r'; a'])))``; ``h = h + ReLU(BN(1×1(DW3×3(h))))``;
    8. ``f = r' + β ⊙ (v · h)``.

    ``γ`` (two scalars) and ``β`` (per channel) start at 0, so at initialisation ``f = r' = r``:
    the block is the identity on the RGB stream (spec B3.1 "initialisation property").
    ``v`` ``(B, 1, H, W)`` in {0, 1} is the auxiliary validity at this stage (roadx addition,
    see the module docstring); where it is 0, ``r' = r`` and ``f = r`` exactly.

    Args:
        channels: ``C``.
        mode: ``"conv"`` or ``"attn"`` for step 4.
        window: Attention window (``"attn"`` only).
        neg_key: Negated keys (``"attn"`` only).
        hard_mask: MDDG's hard top-50 % divergence mask.

    Parameters at full width (spec B3.1, verified): 51,164 (C 64, conv), 188,340 (128, conv),
    958,308 (256, attn), 3,817,156 (512, attn).
    """

    def __init__(
        self,
        channels: int,
        mode: CrossMode = "conv",
        *,
        window: int = 8,
        neg_key: bool = True,
        hard_mask: bool = False,
    ) -> None:
        super().__init__()
        c = channels
        if mode not in _CROSS_MODES:
            raise InputError(f"mode={mode!r}; expected 'conv' or 'attn'.")
        self.mode = mode
        self.hard_mask = hard_mask
        self.norm_r, self.norm_a = ChannelLayerNorm(c), ChannelLayerNorm(c)
        proj = max(c // 4, 16)
        self.proj_r, self.proj_a = nn.Conv2d(c, proj, 1), nn.Conv2d(c, proj, 1)
        hidden = max(c // 4, 4)  # the max() only acts at test widths (C < 16)
        self.gate = nn.Sequential(
            nn.Conv2d(2 * c, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 2, 1)
        )
        if mode == "attn":
            self.cross_r: nn.Module = WindowCrossAttention(c, window, neg_key=neg_key)
            self.cross_a: nn.Module = WindowCrossAttention(c, window, neg_key=neg_key)
        else:
            self.dw_a = nn.Conv2d(c, c, 7, padding=3, groups=c)  # â seen by the RGB direction
            self.dw_r = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.cross_r = nn.Conv2d(2 * c, c, 1)
            self.cross_a = nn.Conv2d(2 * c, c, 1)
        self.out_r, self.out_a = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.gamma_r = nn.Parameter(torch.zeros(()))
        self.gamma_a = nn.Parameter(torch.zeros(()))
        squeeze = max(2 * c // 16, 4)
        self.channel_gate = nn.Sequential(
            nn.Linear(2 * c, squeeze), nn.ReLU(inplace=True), nn.Linear(squeeze, 2 * c)
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        self.refine = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=c),
            nn.Conv2d(c, c, 1),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def divergence(self, r_hat: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        """``D`` ``(B, 1, H, W)`` in [0, 1] from the normalised features (step 2)."""
        cos = F.cosine_similarity(self.proj_r(r_hat), self.proj_a(a_hat), dim=1, eps=1e-6)
        d = (0.5 * (1.0 - cos)).unsqueeze(1)
        if not self.hard_mask:
            return d
        flat = d.flatten(1)
        k = math.ceil(0.5 * flat.shape[1])
        hard = torch.zeros_like(flat).scatter_(1, flat.topk(k, dim=1).indices, 1.0)
        return (hard + (flat - flat.detach())).view_as(d)  # exactly 0/1 forward

    def forward(
        self, r: torch.Tensor, a: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fuse one stage.

        Args:
            r: RGB feature ``(B, C, H, W)``.
            a: Auxiliary feature ``(B, C, H, W)``.
            valid: Auxiliary validity ``(B, 1, H, W)`` in {0, 1}, same dtype as ``r``.

        Returns:
            ``(f, r', a', D)``: fused feature, updated RGB and auxiliary features (all
            ``(B, C, H, W)``) and the divergence map ``(B, 1, H, W)`` (log it in training).
        """
        r_hat, a_hat = self.norm_r(r), self.norm_a(a)
        d = self.divergence(r_hat, a_hat)
        both = torch.cat([r_hat, a_hat], dim=1)
        g = torch.sigmoid(self.gate(both))
        g_r, g_a = g[:, :1], g[:, 1:]
        if self.mode == "attn":
            t_r = self.cross_r(both, a_hat)
            t_a = self.cross_a(torch.cat([a_hat, r_hat], dim=1), r_hat)
        else:
            t_r = self.cross_r(torch.cat([r_hat, self.dw_a(a_hat)], dim=1))
            t_a = self.cross_a(torch.cat([a_hat, self.dw_r(r_hat)], dim=1))
        m_r = g_r * t_r + (1.0 - g_r) * r_hat
        m_a = g_a * t_a + (1.0 - g_a) * a_hat
        dv = d * valid
        r2 = r + self.gamma_r * dv * self.out_r(m_r)
        a2 = a + self.gamma_a * dv * self.out_a(m_a)
        cat = torch.cat([r2, a2], dim=1)
        z = torch.sigmoid(self.channel_gate(cat.mean(dim=(2, 3))))  # (B, 2C)
        h = self.fuse(cat * z[:, :, None, None])
        h = h + self.refine(h)
        return r2 + self.beta * (valid * h), r2, a2, d


class DFG(nn.Module):
    """Dynamic Frequency Gate on a skip feature (spec B3.2; fixes MDDG's frequency gating).

    Routing ``ρ = softmax_K(Linear(C_route -> K·C)(GAP(route)))`` ``(B, K, C)``; filter bank
    ``Φ`` ``(K, 32, 17)`` (vertical-frequency axis stored fft-shifted), bilinearly resized
    (align_corners) to ``(H, W/2 + 1)`` and inverse-shifted; gain
    ``G = 2·sigmoid(Σ_k ρ_kc Φ_k)`` in (0, 2); ``y = irfft2(rfft2(x, ortho) ⊙ G, (H, W))``,
    in float32 even under autocast. ``Φ = 0`` at initialisation, so ``G ≡ 1`` and ``y = x`` up
    to FFT round-off (≈1e-7). Works for any H, W (odd or even): the filters are
    resolution-independent, unlike MDDG's fixed 120×81 filters.

    Args:
        channels: ``C`` of the gated feature.
        route_channels: Channels of the routing feature (``f_4``: 512 at full width).
        n_filters: ``K`` (4).
        filter_size: Stored filter size (32, 17).

    Parameters at full width: 133,504 on ``f_1`` (C 64), 264,832 on ``f_2`` (C 128).
    """

    def __init__(
        self,
        channels: int,
        route_channels: int,
        n_filters: int = 4,
        filter_size: tuple[int, int] = (32, 17),
    ) -> None:
        super().__init__()
        self.channels, self.n_filters = channels, n_filters
        self.route = nn.Linear(route_channels, n_filters * channels)
        self.filters = nn.Parameter(torch.zeros(n_filters, *filter_size))

    def gain(self, route: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The per-image, per-channel gain ``(B, C, h, w // 2 + 1)`` in (0, 2), float32."""
        b = route.shape[0]
        rho = self.route(route.float().mean(dim=(2, 3)))
        rho = rho.view(b, self.n_filters, self.channels).softmax(dim=1)  # (B, K, C)
        phi = F.interpolate(
            self.filters.float()[None], size=(h, w // 2 + 1), mode="bilinear", align_corners=True
        )[0]  # (K, h, w/2+1), DC row at the centre
        phi = torch.fft.ifftshift(phi, dim=1)  # DC row first, as rfft2's layout
        return 2.0 * torch.sigmoid(torch.einsum("bkc,kuv->bcuv", rho, phi))

    def forward(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` ``(B, C, H, W)`` per frequency; ``route`` ``(B, C_route, h, w)``.

        Returns:
            ``(B, C, H, W)``, dtype of ``x``.
        """
        h, w = x.shape[-2:]
        with _no_autocast(x.device):
            spec = torch.fft.rfft2(x.float(), norm="ortho")
            y = torch.fft.irfft2(spec * self.gain(route, h, w), s=(h, w), norm="ortho")
        return y.to(x.dtype)


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Autocast off on ``device`` (none to turn off on e.g. the meta device)."""
    if device.type in ("cuda", "cpu", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class AuxHead(nn.Module):
    """Training-only head on one stream's stage-3/4 features (spec B3.3).

    ``1×1(C3 -> m)(x3) + up×2(1×1(C4 -> m)(x4))`` (no biases), BN, ReLU, 3×3 conv ``m -> 1``,
    bilinear ×16 -> ``(B, 1, H, W)`` logits; ``m = width / 2`` (32 at full width: 24,929
    parameters).

    Args:
        width: Base width of the model.
    """

    def __init__(self, width: int = PAPER_WIDTH) -> None:
        super().__init__()
        _, _, c3, c4 = encoder_channels(width)
        m = width // 2
        self.lat3 = nn.Conv2d(c3, m, 1, bias=False)
        self.lat4 = nn.Conv2d(c4, m, 1, bias=False)
        self.bn = nn.BatchNorm2d(m)
        self.cls = nn.Conv2d(m, 1, 3, padding=1)

    def forward(self, x3: torch.Tensor, x4: torch.Tensor) -> torch.Tensor:
        """``x3 (B, C3, H/16, W/16)``, ``x4 (B, C4, H/32, W/32)`` -> ``(B, 1, H, W)`` logits."""
        y = self.lat3(x3) + F.interpolate(
            self.lat4(x4), size=x3.shape[-2:], mode="bilinear", align_corners=False
        )
        y = self.cls(F.relu(self.bn(y), inplace=True))
        return F.interpolate(y, scale_factor=16, mode="bilinear", align_corners=False)


class MMTrainOutput(NamedTuple):
    """What :meth:`D3FNetMM.train_outputs` returns.

    Attributes:
        logits: Main output ``(B, 1, H, W)`` float logits.
        aux: ``{"aux_rgb": (B, 1, H, W), "aux_x": (B, 1, H, W)}`` auxiliary logits (empty
            without auxiliary heads); weight their losses with :data:`AUX_LOSS_WEIGHTS`.
        aux_valid: ``(B, 1, H, W)`` float in {0, 1}: where the auxiliary data was valid and not
            dropped; restrict the ``"aux_x"`` loss to it (spec B6: no aux-stream loss for a
            dropped sample).
    """

    logits: torch.Tensor
    aux: dict[str, torch.Tensor]
    aux_valid: torch.Tensor


class D3FNetMM(RoadModel):
    """``d3fnet34-mm``: ``(B, 3 + k, H, W)`` -> ``(B, 1, H, W)`` road logits, H, W divisible by 32.

    Channels 0-2: RGB stream (card order, D3FNet scaling); channels 3..3+k-1: auxiliary stream.
    NaN in an auxiliary channel = no auxiliary data at that pixel; a ``(B, 3, H, W)`` input =
    no auxiliary raster (both give the RGB-only path there; see the module docstring).
    Submodules ``encoder``, ``center``, ``decoder``, ``head`` have D3FNet's names and shapes,
    so a D3FNet state dict loads into them unchanged (:func:`init_from_d3fnet`).

    In training mode each sample's auxiliary data is dropped with probability
    ``config.modality_dropout`` (torch's global RNG; seed it for reproducibility). In eval mode
    the model is deterministic.

    Args:
        config: Architecture flags (:class:`D3FNetMMConfig`).

    References:
        ``shared/specs/multimodal-fusion.md`` Part B; MDDG (``mlvccn/MDDG_RGBTSeg``, 2025);
        D3FNet (Liu et al., ICCV-W 2025, arXiv 2508.15537).
    """

    def __init__(self, config: D3FNetMMConfig | None = None) -> None:
        cfg = config or D3FNetMMConfig()
        super().__init__(name="d3fnet34-mm", in_chans=3 + cfg.aux_bands,
                         input_multiple_px=OUTPUT_STRIDE)
        self.config = cfg
        channels = encoder_channels(cfg.width)
        self.encoder = ResNet34Encoder(cfg.width)
        self.aux_encoder = AuxEncoder(cfg.aux_bands, cfg.width, _AUX_DEPTHS[cfg.aux_encoder])
        self.fusions = nn.ModuleList(
            DGF(c, mode, window=cfg.window, neg_key=cfg.neg_key, hard_mask=cfg.hard_mask)
            for c, mode in zip(channels, cfg.cross_mode, strict=True)
        )
        self.dfg = nn.ModuleDict({str(i): DFG(channels[i - 1], channels[3]) for i in
                                  cfg.dfg_levels})
        self.center = DADE(channels[3], cfg.dilations, causal=cfg.causal, attention=cfg.attention)
        self.decoder = DDFM(cfg.width)
        self.head = LinkNetHead(cfg.width)
        self.aux_heads: nn.ModuleDict | None = None
        if cfg.aux_heads:
            self.aux_heads = nn.ModuleDict({"aux_rgb": AuxHead(cfg.width),
                                            "aux_x": AuxHead(cfg.width)})

    def drop_aux_heads(self) -> None:
        """Remove the training-only auxiliary heads (for export: the state dict then matches
        ``d3fnet34_mm(..., aux_heads=False)``)."""
        self.aux_heads = None
        self.config = D3FNetMMConfig(**{**asdict(self.config), "aux_heads": False})

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check ``x`` and split it into the streams and the auxiliary validity.

        Applies modality dropout in training mode.

        Args:
            x: ``(B, 3 + k, H, W)`` or ``(B, 3, H, W)`` float.

        Returns:
            ``(rgb (B, 3, H, W), aux (B, k, H, W) with no-data = 0, valid (B, 1, H, W))``,
            ``valid`` in {0, 1} with the dtype of ``x``.

        Raises:
            InputError: Not a 4-D floating tensor, channels other than 3 or ``3 + k``, or H/W
                not divisible by 32 (the message gives the padded size).
        """
        k = self.config.aux_bands
        if x.ndim != 4 or x.shape[1] not in (3, 3 + k) or not x.is_floating_point():
            raise InputError(
                f"d3fnet34-mm expects a float (B, {3 + k}, H, W) batch (3 RGB + {k} auxiliary "
                f"channels; (B, 3, H, W) if the auxiliary raster is missing), got "
                f"{str(x.dtype).removeprefix('torch.')} {tuple(x.shape)}."
            )
        b, _, h, w = x.shape
        if h % OUTPUT_STRIDE or w % OUTPUT_STRIDE:
            ph, pw = -(-h // OUTPUT_STRIDE) * OUTPUT_STRIDE, -(-w // OUTPUT_STRIDE) * OUTPUT_STRIDE
            raise InputError(
                f"d3fnet34-mm got an input of {h}x{w} px; height and width must be multiples of "
                f"{OUTPUT_STRIDE}. Pad the input to {ph}x{pw} px."
            )
        rgb = x[:, :3]
        if x.shape[1] == 3:
            aux = x.new_zeros(b, k, h, w)
            valid = x.new_zeros(b, 1, h, w)
        else:
            aux = x[:, 3:]
            finite = torch.isfinite(aux)
            valid = finite.all(dim=1, keepdim=True).to(x.dtype)
            aux = torch.where(finite, aux, torch.zeros((), dtype=x.dtype, device=x.device))
        p = self.config.modality_dropout
        if self.training and p > 0:
            keep = (torch.rand(b, device=x.device) >= p).to(x.dtype).view(b, 1, 1, 1)
            valid = valid * keep
            aux = aux * keep
        return rgb, aux, valid

    def _run(self, x: torch.Tensor, with_aux: bool) -> MMTrainOutput:
        rgb, aux, valid = self.split_input(x)
        cfg = self.config
        # min-pool: a stage cell is valid only if every pixel under it is
        valids = [-F.max_pool2d(-valid, s) for s in _STAGE_STRIDES]
        r = _stem(self.encoder, rgb)
        # No auxiliary raster at all (3 channels): f = r exactly, so skip the auxiliary stream.
        # (All-NaN auxiliary data takes the full path, which gives the same output, so that the
        # control flow depends on shapes only: meta device, torch.compile and export work.)
        # Training on a batch without any auxiliary data (an RGB-only dataset, or every sample
        # dropped) skips the stream as well: run on the zero placeholder, its batch norms would
        # learn the statistics of a constant input (variance -> 0), and real auxiliary data
        # would then overflow to inf at inference (0 * inf = NaN through the closed gates).
        use_aux = x.shape[1] > 3 and not (self.training and not bool(valid.any()))
        a = _stem(self.aux_encoder, aux) if use_aux else None
        rgb_layers = (self.encoder.layer1, self.encoder.layer2, self.encoder.layer3,
                      self.encoder.layer4)
        aux_layers = (self.aux_encoder.layer1, self.aux_encoder.layer2, self.aux_encoder.layer3,
                      self.aux_encoder.layer4)
        fused, r_after, a_before = [], [], []
        for i in range(4):
            r = rgb_layers[i](r)
            if a is None:
                fused.append(r)
                r_after.append(r)
                continue
            a = aux_layers[i](a)
            a_before.append(a)
            f, r2, a2, _ = self.fusions[i](r, a, valids[i].to(r.dtype))
            fused.append(f)
            r_after.append(r2)
            if cfg.feedback:
                r, a = r2, a2
        skips = list(fused[:3])
        for key, dfg in self.dfg.items():
            level = int(key) - 1
            skips[level] = dfg(skips[level], fused[3])
        s, att = self.center(fused[3])
        logits = self.head(self.decoder(s, att, skips))
        heads: dict[str, torch.Tensor] = {}
        if with_aux and self.aux_heads is not None:
            heads["aux_rgb"] = self.aux_heads["aux_rgb"](r_after[2], r_after[3])
            if a_before:
                heads["aux_x"] = self.aux_heads["aux_x"](a_before[2], a_before[3])
            else:  # no auxiliary raster: constant logits, masked by aux_valid = 0
                heads["aux_x"] = torch.zeros_like(logits)
        return MMTrainOutput(logits, heads, valid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict road logits.

        Args:
            x: ``(B, 3 + k, H, W)`` float32 in card band order (or ``(B, 3, H, W)`` when the
                auxiliary raster is missing); NaN in auxiliary channels = no-data.

        Returns:
            ``(B, 1, H, W)`` logits.

        Raises:
            InputError: Wrong shape, dtype or size (see :meth:`split_input`).
        """
        return self._run(x, with_aux=False).logits

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The roadx training contract (:class:`~roadx.models.base.RoadModel`): ``(main,
        aux_rgb, aux_x)`` logits, each ``(B, 1, H, W)``, weighted in the loss by the registry
        entry (:data:`AUX_LOSS_WEIGHTS`). Where the auxiliary data was missing or dropped,
        ``aux_x`` is replaced by the detached main logits, so that those pixels give the
        auxiliary-stream head no gradient (spec B6; :func:`mm_training_loss` masks them
        exactly instead). Only ``(main,)`` when the model has no auxiliary heads.

        Raises:
            InputError: As :meth:`forward`.
        """
        out = self.train_outputs(x)
        if not out.aux:
            return (out.logits,)
        aux_x = torch.where(out.aux_valid > 0, out.aux["aux_x"], out.logits.detach())
        return (out.logits, out.aux["aux_rgb"], aux_x)

    def train_outputs(self, x: torch.Tensor) -> MMTrainOutput:
        """Main logits plus the auxiliary heads' logits and the auxiliary validity.

        Args:
            x: As :meth:`forward`.

        Returns:
            :class:`MMTrainOutput` ``(logits, {"aux_rgb", "aux_x"}, aux_valid)``, all
            ``(B, 1, H, W)``.

        Raises:
            InputError: As :meth:`forward`.
        """
        return self._run(x, with_aux=True)


def mm_training_loss(
    out: MMTrainOutput,
    target: torch.Tensor,
    valid: torch.Tensor | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    weights: Mapping[str, float] = AUX_LOSS_WEIGHTS,
) -> torch.Tensor:
    """Spec B6 loss: ``loss_fn(main) + Σ w_name · loss_fn(aux_name)``, the ``"aux_x"`` term
    restricted to pixels with valid, non-dropped auxiliary data.

    Args:
        out: :meth:`D3FNetMM.train_outputs` output.
        target: ``(B, 1, H, W)`` float in {0, 1}.
        valid: ``(B, 1, H, W)`` label validity (bool or {0, 1}) or None.
        loss_fn: ``(logits, target, valid) -> scalar``, e.g. roadx's ``dice_bce_loss``.
        weights: Weight per auxiliary output (:data:`AUX_LOSS_WEIGHTS`).

    Returns:
        Scalar loss tensor.
    """
    total = loss_fn(out.logits, target, valid)
    for name, logits in out.aux.items():
        mask = valid
        if name == "aux_x":
            mask = out.aux_valid if valid is None else valid.to(out.aux_valid.dtype) * out.aux_valid
        total = total + weights.get(name, 0.0) * loss_fn(logits, target, mask)
    return total


#: Default card: B, G, R with D3FNet's scaling (so the shipped d3fnet34 weights warm-start the
#: RGB stream) plus one near-infrared band scaled the same way; weights trained at 1 m.
D3FNET34_MM_CARD = ModelCard(
    name="d3fnet34-mm",
    bands=(*uniform_bands("BGR"), BandSpec("NIR", "nir", *DLINKNET_SCALE, optional=True)),
    gsd_m=1.0,
    tile_px=1024,
    input_multiple_px=OUTPUT_STRIDE,
    output="logits",
    license="MIT",
    paper="D3FNet (Liu et al., ICCV-W 2025, arXiv 2508.15537) with divergence-aware gated "
    "fusion after MDDG (RGB-T segmentation, 2025)",
    description="Dual-stream D3FNet: RGB stream + auxiliary (NIR) stream fused per encoder "
    "stage; works without the auxiliary band (modality dropout in training).",
)


def d3fnet34_mm(
    *,
    aux_bands: int = 1,
    width: int = PAPER_WIDTH,
    feedback: bool = True,
    neg_key: bool = True,
    hard_mask: bool = False,
    dfg_levels: Sequence[int] = (1,),
    cross_mode: Sequence[CrossMode] = ("conv", "conv", "attn", "attn"),
    window: int = 8,
    aux_encoder: AuxEncoderName = "resnet18",
    modality_dropout: float = MODALITY_DROPOUT_P,
    aux_heads: bool = True,
    dilations: Sequence[int] = PAPER_DILATIONS,
    causal: bool = True,
    attention: AttentionImpl = "sdpa",
) -> D3FNetMM:
    """Build ``d3fnet34-mm`` with random weights (nothing is downloaded); arguments as
    :class:`D3FNetMMConfig`.

    Size at full width, ``aux_bands=1``, ``dfg_levels=(1,)``: **55,820,025** parameters
    without the auxiliary heads (= spec B4; RGB D3FNet 39,501,313 + ResNet-18 stream 11,170,240
    + DGF₁₋₄ 5,014,968 + DFG₁ 133,504), 55,869,883 with them (+2 × 24,929). Each extra aux
    band adds 3,136 (stem). Cost per 1024² window (``torch.utils.flop_counter``, torch 2.13, meta
    device; convolutions, linear layers and attention matmuls, FFTs and element-wise ops not
    counted): **181.7 GMACs = 363.5 GFLOPs** (43.0 GMACs at 512²), against 131.5 GMACs for
    ``d3fnet34`` counted the same way: +50.2 GMACs (aux stream ≈ 36.3, DGF₁₋₄ 3.1 + 2.9 +
    4.0 + 3.9). Spec B4's 177.0 (D3FNet 127.2) leaves out the attention matmuls (DADE's and
    the DGF windows'); without them the numbers agree. DFG₂ adds no counted MACs.

    Returns:
        The model, in training mode.

    Raises:
        InputError: For any invalid argument.
    """
    config = D3FNetMMConfig(
        aux_bands=aux_bands,
        width=width,
        feedback=feedback,
        neg_key=neg_key,
        hard_mask=hard_mask,
        dfg_levels=tuple(dfg_levels),
        cross_mode=tuple(cross_mode),  # type: ignore[arg-type]
        window=window,
        aux_encoder=aux_encoder,
        modality_dropout=modality_dropout,
        aux_heads=aux_heads,
        dilations=tuple(dilations),  # type: ignore[arg-type]
        causal=causal,
        attention=attention,
    )
    return D3FNetMM(config)


def init_from_d3fnet(
    model: D3FNetMM,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    aux_stream: bool = False,
) -> int:
    """Warm-start ``model`` from a D3FNet checkpoint (spec B5).

    Copies every D3FNet tensor whose name and shape match into the RGB stream (``encoder``),
    the centre, the decoder and the head; the DGF's ``γ``/``β`` and the DFG filters stay 0, so
    the warm-started model computes exactly that D3FNet's output (spec B3.1). With
    ``aux_stream``, the auxiliary stream is also initialised: its ``k``-channel stem with the
    sum over the RGB channels of the D3FNet stem kernels divided by ``k`` (spec B5), and each of
    its stages with the first blocks of the same ResNet-34 stage (shapes match; residual
    networks degrade gracefully when blocks are dropped: Veit, Wilber, Belongie, NeurIPS 2016)
    -- a substitute for the ImageNet ResNet-18 of spec B5, which roadx does not ship.

    Args:
        model: A :class:`D3FNetMM` of the same ``width`` as the checkpoint.
        source: A roadx ``d3fnet34`` checkpoint (``.safetensors``; float32, float16 or int8,
            read with :func:`roadx.models.checkpoint.load_checkpoint`) or a D3FNet state dict.
        aux_stream: Also initialise the auxiliary stream (see above).

    Returns:
        The number of tensors copied (the D3FNet state dict has 361 entries, weights and
        batch-norm statistics, all copied from the shipped file; more with ``aux_stream``).

    Raises:
        InputError / CheckpointError: The file is missing or is not a valid roadx checkpoint.
        InputError: Nothing matched (another architecture or width).
    """
    if isinstance(source, str | Path):
        from roadx.models.checkpoint import load_checkpoint  # heavy import, only when needed

        source, _ = load_checkpoint(source)
        state = source.state_dict()
    else:
        state = dict(source)
    target = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in target and target[key].shape == value.shape:
            copied[key] = value
    if aux_stream:
        stem = state.get("encoder.conv1.weight")
        k = model.config.aux_bands
        if stem is not None and stem.shape[0] == target["aux_encoder.conv1.weight"].shape[0]:
            copied["aux_encoder.conv1.weight"] = (stem.sum(dim=1, keepdim=True) / k).expand(
                -1, k, -1, -1
            )
        for key, value in state.items():
            if key.startswith("encoder.") and not key.startswith("encoder.conv1."):
                aux_key = "aux_" + key
                if aux_key in target and target[aux_key].shape == value.shape:
                    copied[aux_key] = value
    if not copied:
        raise InputError(
            "no tensor of the D3FNet checkpoint matches d3fnet34-mm; expected a d3fnet34 "
            f"checkpoint of width {model.config.width}."
        )
    with torch.no_grad():
        for key, value in copied.items():
            target[key].copy_(value.to(target[key].dtype))
    return len(copied)
