"""D3FNet: D-LinkNet34 with a differential-attention centre (DADE) and a dual decoder (DDFM).

Reference: C. Liu, Y. Xu, T. Sziranyi, "D3FNet: A Differential Attention Fusion Network for
Fine-Grained Road Structure Extraction in Remote Perception Systems", ICCV Workshops (DriveX) 2025,
arXiv 2508.15537. Reference code (MIT): ``ChangLiu-bp/ICCV2025-DriveX-D3FNet``
``networks/Diffdlinknet_v6.py`` class ``DinkNet34`` (commit ``7540dfa``). Differential attention:
Ye et al., arXiv 2410.05258. Architecture as written down in ``shared/specs/d3fnet.md`` §3.

Dilation discrepancy (d3fnet.md §1): the paper gives DADE rates 1, 3, 5, 9; the released code uses
1, 2, 4, 8. The rates are a constructor argument defaulting to the paper's
(:data:`PAPER_DILATIONS`); :data:`RELEASED_CODE_DILATIONS` is the released-code preset. The
parameter count (39,501,313) is the same either way.

The network returns logits (the reference ends with a sigmoid).
"""

import contextlib
import math
from collections.abc import Sequence
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
    validate_dilations,
)
from roadx.models.card import DLINKNET_SCALE, ModelCard, uniform_bands

__all__ = [
    "D3FNET34_CARD",
    "DADE",
    "DDFM",
    "PAPER_DILATIONS",
    "RELEASED_CODE_DILATIONS",
    "D3FNet",
    "DiffAttention",
    "d3fnet34",
    "lambda_init_for",
]

#: DADE dilation rates given in the paper (abstract, Fig. 1).
PAPER_DILATIONS = (1, 3, 5, 9)
#: DADE dilation rates used by the released code (``Diffdlinknet_v6.py``).
RELEASED_CODE_DILATIONS = (1, 2, 4, 8)
#: Layer index ``l`` of attention1..4 in the lambda_init schedule (d3fnet.md §3.2).
ATTENTION_LAYER_IDS = (4, 8, 12, 16)

D3FNET34_CARD = ModelCard(
    name="d3fnet34",
    bands=uniform_bands("BGR", *DLINKNET_SCALE),
    gsd_m=1.0,
    tile_px=1024,
    output="logits",
    license="MIT (code: ChangLiu-bp/ICCV2025-DriveX-D3FNet)",
    paper=(
        "Liu, Xu, Sziranyi. D3FNet: A Differential Attention Fusion Network for Fine-Grained "
        "Road Structure Extraction in Remote Perception Systems. ICCV Workshops (DriveX) 2025, "
        "arXiv 2508.15537."
    ),
    description="D3FNet (D-LinkNet34 + DADE differential attention + DDFM dual decoder).",
)

AttentionImpl = Literal["sdpa", "explicit"]


def lambda_init_for(layer_id: int) -> float:
    """Return differential attention's ``lambda_init = 0.8 - 0.6 * exp(-0.3 * (l - 1))``.

    Args:
        layer_id: Layer index ``l`` (D3FNet uses 4, 8, 12, 16 for attention1..4).

    Returns:
        The initial lambda, e.g. 0.5561 for ``l = 4``.
    """
    return 0.8 - 0.6 * math.exp(-0.3 * (layer_id - 1))


class DiffAttention(nn.Module):
    """Multi-head differential attention over tokens (reference class ``MultiHeadDiffAttention``).

    Per head (d3fnet.md §3.2): ``A_i = softmax(Q_i K_iᵀ / sqrt(d) + causal mask)``,
    ``λ = exp(<λq1, λk1>) - exp(<λq2, λk2>) + λ_init``,
    ``out = LN((A_1 - λ A_2) V) * (1 - λ_init)``
    with a non-affine LayerNorm over the ``2d`` value dims; heads are concatenated, projected
    by ``c_proj`` and dropped out. The λ vectors are per head, shape ``(heads, d)``.

    ``attention="sdpa"`` (default) computes ``A_1 V`` and ``A_2 V`` with two fused
    :func:`torch.nn.functional.scaled_dot_product_attention` calls and combines them, never
    materialising the ``T x T`` matrices. In eval mode this equals the explicit formula. In
    training mode the attention dropout is then drawn independently for ``A_1`` and ``A_2``
    instead of once on ``A_1 - λ A_2`` (same expectation; a small regularisation difference).
    ``attention="explicit"`` builds the matrices and applies dropout to the combined matrix
    exactly as the reference (memory ``~ B * heads * T² * 4 B`` per map).

    Args:
        channels: Embedding size ``C`` (512).
        n_heads: Number of heads ``h``; head size ``d = C / h``.
        lambda_init: Initial lambda (see :func:`lambda_init_for`).
        causal: Apply the lower-triangular mask over raster token order (released code: on).
        attn_dropout_p: Dropout on the attention matrix (0.1).
        resid_dropout_p: Dropout after ``c_proj`` (0.1).
        attention: ``"sdpa"`` or ``"explicit"`` (see above).
    """

    def __init__(
        self,
        channels: int = 512,
        n_heads: int = 4,
        *,
        lambda_init: float = lambda_init_for(ATTENTION_LAYER_IDS[0]),
        causal: bool = True,
        attn_dropout_p: float = 0.1,
        resid_dropout_p: float = 0.1,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        if channels % n_heads:
            raise InputError(f"channels={channels} is not divisible by n_heads={n_heads}.")
        if attention not in ("sdpa", "explicit"):
            raise InputError(f"attention={attention!r}; expected 'sdpa' or 'explicit'.")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.lambda_init = float(lambda_init)
        self.causal = bool(causal)
        self.attn_dropout_p = float(attn_dropout_p)
        self.attention = attention
        self.q1 = nn.Linear(channels, channels, bias=False)
        self.k1 = nn.Linear(channels, channels, bias=False)
        self.q2 = nn.Linear(channels, channels, bias=False)
        self.k2 = nn.Linear(channels, channels, bias=False)
        self.v = nn.Linear(channels, 2 * channels, bias=False)
        self.c_proj = nn.Linear(2 * channels, channels, bias=False)
        shape = (n_heads, self.head_dim)
        self.lambda_q1 = nn.Parameter(torch.empty(shape).normal_(0.0, 0.1))
        self.lambda_k1 = nn.Parameter(torch.empty(shape).normal_(0.0, 0.1))
        self.lambda_q2 = nn.Parameter(torch.empty(shape).normal_(0.0, 0.1))
        self.lambda_k2 = nn.Parameter(torch.empty(shape).normal_(0.0, 0.1))
        self.subln = nn.LayerNorm(2 * self.head_dim, eps=1e-5, elementwise_affine=False)
        self.resid_dropout = nn.Dropout(resid_dropout_p)

    def lambda_full(self) -> torch.Tensor:
        """Return the per-head λ, ``(heads,)`` float32."""
        lam1 = torch.exp(torch.sum(self.lambda_q1.float() * self.lambda_k1.float(), dim=-1))
        lam2 = torch.exp(torch.sum(self.lambda_q2.float() * self.lambda_k2.float(), dim=-1))
        return lam1 - lam2 + self.lambda_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over tokens ``(B, T, C) -> (B, T, C)``."""
        b, t, c = x.shape
        h, d = self.n_heads, self.head_dim
        q1 = self.q1(x).view(b, t, h, d).transpose(1, 2)  # (B, h, T, d)
        k1 = self.k1(x).view(b, t, h, d).transpose(1, 2)
        q2 = self.q2(x).view(b, t, h, d).transpose(1, 2)
        k2 = self.k2(x).view(b, t, h, d).transpose(1, 2)
        v = self.v(x).view(b, t, h, 2 * d).transpose(1, 2)  # (B, h, T, 2d)
        lam = self.lambda_full().view(1, h, 1, 1)
        p = self.attn_dropout_p if self.training else 0.0
        if self.attention == "sdpa":
            with _sdpa_backends(q1):
                o1 = F.scaled_dot_product_attention(q1, k1, v, dropout_p=p, is_causal=self.causal)
                o2 = F.scaled_dot_product_attention(q2, k2, v, dropout_p=p, is_causal=self.causal)
            out = o1 - lam.to(o2.dtype) * o2  # (B, h, T, 2d)
        else:
            out = self._attend_explicit(q1, k1, q2, k2, v, lam, p)
        out = self.subln(out) * (1.0 - self.lambda_init)
        out = out.transpose(1, 2).reshape(b, t, h * 2 * d)  # (B, T, 2C)
        return self.resid_dropout(self.c_proj(out.to(x.dtype)))

    def _attend_explicit(
        self,
        q1: torch.Tensor,
        k1: torch.Tensor,
        q2: torch.Tensor,
        k2: torch.Tensor,
        v: torch.Tensor,
        lam: torch.Tensor,
        p: float,
    ) -> torch.Tensor:
        t = q1.shape[-2]
        scale = 1.0 / math.sqrt(self.head_dim)
        s1 = (q1 @ k1.transpose(-2, -1)) * scale  # (B, h, T, T)
        s2 = (q2 @ k2.transpose(-2, -1)) * scale
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=q1.device).triu(1)
            s1 = s1.masked_fill(future, float("-inf"))
            s2 = s2.masked_fill(future, float("-inf"))
        attn = torch.softmax(s1, dim=-1) - lam.to(s1.dtype) * torch.softmax(s2, dim=-1)
        attn = F.dropout(attn, p=p, training=p > 0)
        return attn.to(v.dtype) @ v  # (B, h, T, 2d)


def _sdpa_backends(q: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Kernels for the two SDPA calls: PyTorch's choice, except when training on CUDA.

    Measured on an H200 (PyTorch 2.11, CUDA 13): with gradients on, the fused CUDA kernels
    return NaN gradients for this attention (value width 2d != query width d, causal mask,
    dropout) in the very first backward pass, in fp32 and bf16 alike, while the math kernel
    trains normally. So backward passes on CUDA use the math kernel (memory ``~ B * heads *
    T² * 4 B`` per map, small at the centre's ``T = (side / 32)²`` tokens); inference keeps the
    fused kernels.
    """
    if q.is_cuda and torch.is_grad_enabled():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C), raster order


class DADE(nn.Module):
    """Dilation-aware differential-attention encoding centre (d3fnet.md §3.1).

    ``x_i = relu(dilate_i(x_{i-1}))`` with ``x_0 = e4``; ``b_i = attention_i(tokens(x_{i-1}))``.
    Returns the structural feature ``S = x_0 + x_1 + x_2 + x_3 + x_4`` and the attention feature
    ``A = b_1 + b_2 + b_3 + b_4`` (no residual on the b's). The convs keep PyTorch's default
    initialisation (no bias zeroing, unlike D-LinkNet's Dblock).

    Args:
        channels: Feature channels (512).
        dilations: Four dilation rates (paper 1,3,5,9; released code 1,2,4,8).
        n_heads: Attention heads (4).
        causal: Causal mask in the attention (released code: on).
        attention: Attention implementation, see :class:`DiffAttention`.
    """

    def __init__(
        self,
        channels: int = 512,
        dilations: Sequence[int] = PAPER_DILATIONS,
        n_heads: int = 4,
        *,
        causal: bool = True,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        d1, d2, d3, d4 = validate_dilations(dilations)
        self.dilate1 = nn.Conv2d(channels, channels, 3, dilation=d1, padding=d1)
        self.dilate2 = nn.Conv2d(channels, channels, 3, dilation=d2, padding=d2)
        self.dilate3 = nn.Conv2d(channels, channels, 3, dilation=d3, padding=d3)
        self.dilate4 = nn.Conv2d(channels, channels, 3, dilation=d4, padding=d4)
        attn = [
            DiffAttention(
                channels,
                n_heads,
                lambda_init=lambda_init_for(layer_id),
                causal=causal,
                attention=attention,
            )
            for layer_id in ATTENTION_LAYER_IDS
        ]
        self.attention1, self.attention2, self.attention3, self.attention4 = attn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, h, w) -> (S, A)``, both ``(B, C, h, w)``."""
        b, c, h, w = x.shape
        convs = (self.dilate1, self.dilate2, self.dilate3, self.dilate4)
        attns = (self.attention1, self.attention2, self.attention3, self.attention4)
        s = x
        a = torch.zeros_like(x)
        for conv, attn in zip(convs, attns, strict=True):
            b_i = attn(_tokens(x)).transpose(1, 2).reshape(b, c, h, w)  # (B, T, C) -> (B, C, h, w)
            a = a + b_i
            x = F.relu(conv(x))
            s = s + x
        return s, a


class DDFM(nn.Module):
    """Dual-stream decoding and fusion (d3fnet.md §3.3).

    The SAME :class:`LinkNetDecoder` (``shared``) decodes the structural stream with the encoder
    skips and the attention stream without; the two 64-channel maps are concatenated
    (structural first) and fused by a 1x1 conv 128->64 + BN + ReLU.
    """

    def __init__(self, width: int = PAPER_WIDTH) -> None:
        super().__init__()
        c = encoder_channels(width)[0]
        self.shared = LinkNetDecoder(width)
        self.fuse = nn.Sequential(nn.Conv2d(2 * c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, s: torch.Tensor, a: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """``S, A (B, 512, H/32, W/32)``, encoder features -> ``(B, 64, H/2, W/2)``."""
        stream_a = self.shared(s, feats)  # structural, with skips e3, e2, e1
        stream_b = self.shared(a, None)  # attention, no skips
        return self.fuse(torch.cat([stream_a, stream_b], dim=1))  # (B, 128 -> 64, H/2, W/2)


class D3FNet(RoadModel):
    """D3FNet: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` road logits; H, W divisible by 32.

    ResNet-34 encoder -> DADE -> DDFM -> D-LinkNet head. 39,501,313 parameters.

    Args:
        dilations: DADE dilation rates (default: paper's 1, 3, 5, 9).
        causal: Causal mask in the differential attention (default on, as the released code).
        attention: ``"sdpa"`` (fused, default) or ``"explicit"``; see :class:`DiffAttention`.
        width: Base channel width (64: the paper's model; e.g. 8 for a tiny test model with
            the same layers, see :func:`roadx.models.blocks.encoder_channels`).

    References:
        Liu et al., ICCV-W 2025, arXiv 2508.15537; ``shared/specs/d3fnet.md`` §3.
    """

    def __init__(
        self,
        dilations: Sequence[int] = PAPER_DILATIONS,
        *,
        causal: bool = True,
        attention: AttentionImpl = "sdpa",
        width: int = PAPER_WIDTH,
    ) -> None:
        super().__init__(name="d3fnet34")
        self.dilations = validate_dilations(dilations)
        channels = encoder_channels(width)
        self.encoder = ResNet34Encoder(width)
        self.center = DADE(channels[3], self.dilations, causal=causal, attention=attention)
        self.decoder = DDFM(width)
        self.head = LinkNetHead(width)

    def outputs(self, x: torch.Tensor, *, aux: bool) -> tuple[torch.Tensor]:
        """``(B, 3, H, W)`` -> ``((B, 1, H, W) logits,)``; no auxiliary outputs."""
        feats = self.encoder(x)  # e1..e4
        s, a = self.center(feats[3])  # (B, 512, H/32, W/32) each
        fused = self.decoder(s, a, feats)  # (B, 64, H/2, W/2)
        return (self.head(fused),)  # (B, 1, H, W)


def d3fnet34(
    *,
    dilations: Sequence[int] = PAPER_DILATIONS,
    causal: bool = True,
    attention: AttentionImpl = "sdpa",
    width: int = PAPER_WIDTH,
) -> D3FNet:
    """Build D3FNet (ResNet-34) with random weights (nothing is downloaded).

    Args:
        dilations: DADE rates; :data:`PAPER_DILATIONS` (default) or
            :data:`RELEASED_CODE_DILATIONS`.
        causal: Causal attention mask (default on, as the released code).
        attention: ``"sdpa"`` (default) or ``"explicit"`` (see :class:`DiffAttention`).
        width: Base channel width, 64 (paper) or a smaller multiple of 4.

    Returns:
        The model, in training mode.

    Raises:
        InputError: For invalid ``dilations``, ``attention`` or ``width``.
    """
    return D3FNet(dilations=dilations, causal=causal, attention=attention, width=width)
