"""Architecture tests: registry, cards, parameter counts, shapes, D3FNet wiring, attention maths."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from roadx.errors import InputError
from roadx.models import (
    PAPER_DILATIONS,
    RELEASED_CODE_DILATIONS,
    ModelCard,
    count_parameters,
    create_model,
    get_card,
    list_models,
)
from roadx.models.blocks import ResNet34Encoder
from roadx.models.d3fnet import DiffAttention, lambda_init_for

EXPECTED_PARAMS = {"d3fnet34": 39_501_313, "dlinknet34": 31_096_129}



@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in EXPECTED_PARAMS}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_the_linknets() -> None:
    assert {"d3fnet34", "dlinknet34"} <= set(list_models())  # the zoo: test_model_zoo.py


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_spec(models, name) -> None:
    assert n_params(models[name]) == EXPECTED_PARAMS[name]
    assert count_parameters(name) == EXPECTED_PARAMS[name]


def test_d3fnet_parameter_count_is_independent_of_dilations() -> None:
    assert count_parameters("d3fnet34", dilations=RELEASED_CODE_DILATIONS) == 39_501_313


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(InputError, match=r"unknown model 'unet'.*d3fnet34.*dlinknet34"):
        create_model("unet")
    with pytest.raises(InputError, match="unknown model"):
        get_card("unet")


def test_bad_builder_arguments_raise_input_error() -> None:
    with pytest.raises(InputError, match="bad arguments"):
        create_model("dlinknet34", depth=3)
    with pytest.raises(InputError, match="multiple of 4"):
        create_model("dlinknet34", width=6)
    with pytest.raises(InputError, match="four positive integers"):
        create_model("d3fnet34", dilations=(1, 2, 4))
    with pytest.raises(InputError, match="'sdpa' or 'explicit'"):
        create_model("d3fnet34", attention="flash")


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_forward_shape_and_logits(models, name) -> None:
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        y = models[name](x)
    assert y.shape == (2, 1, 64, 96)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # Logits, not probabilities: a constant shift of the last bias shifts the output 1:1.
    head = models[name].head.conv3
    with torch.inference_mode():
        head.bias += 5.0
        y2 = models[name](x)
        head.bias -= 5.0
    torch.testing.assert_close(y2 - y, torch.full_like(y, 5.0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_non_divisible_size_suggests_padding(models, name) -> None:
    with pytest.raises(InputError, match=r"100x64 px.*Pad the input to 128x64 px"):
        models[name](torch.zeros(1, 3, 100, 64))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        models[name](torch.zeros(1, 4, 64, 64))


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_backward_reaches_every_parameter(name) -> None:
    torch.manual_seed(1)
    model = create_model(name).train()
    out = model(torch.randn(2, 3, 64, 64))
    F.binary_cross_entropy_with_logits(out, torch.rand_like(out)).backward()
    no_grad = [
        k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []


def test_encoder_feature_channels_and_strides() -> None:
    feats = ResNet34Encoder().eval()(torch.zeros(1, 3, 64, 128))
    assert [tuple(f.shape) for f in feats] == [
        (1, 64, 16, 32),
        (1, 128, 8, 16),
        (1, 256, 4, 8),
        (1, 512, 2, 4),
    ]


def test_dlinknet_dblock_biases_are_zeroed_and_dilations_reference() -> None:
    center = create_model("dlinknet34").center
    convs = [center.dilate1, center.dilate2, center.dilate3, center.dilate4]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    assert [c.padding for c in convs] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)


def test_d3fnet_dilations_default_to_paper_with_released_preset(models) -> None:
    assert PAPER_DILATIONS == (1, 3, 5, 9)
    assert RELEASED_CODE_DILATIONS == (1, 2, 4, 8)
    center = models["d3fnet34"].center
    convs = [center.dilate1, center.dilate2, center.dilate3, center.dilate4]
    assert [c.dilation[0] for c in convs] == [1, 3, 5, 9]
    assert [c.padding[0] for c in convs] == [1, 3, 5, 9]
    # DADE keeps PyTorch's default init: biases are not zeroed (unlike the Dblock).
    assert all(torch.count_nonzero(c.bias) > 0 for c in convs)
    released = create_model("d3fnet34", dilations=list(RELEASED_CODE_DILATIONS)).center
    assert released.dilate4.dilation == (8, 8)


def test_diff_attention_hyperparameters(models) -> None:
    center = models["d3fnet34"].center
    attns = [center.attention1, center.attention2, center.attention3, center.attention4]
    inits = [a.lambda_init for a in attns]
    assert inits == pytest.approx([0.5561, 0.7265, 0.7779, 0.7933], abs=1e-4)
    assert inits[0] == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    for a in attns:
        assert a.n_heads == 4 and a.head_dim == 128 and a.causal
        for lam in (a.lambda_q1, a.lambda_k1, a.lambda_q2, a.lambda_k2):
            assert lam.shape == (4, 128)
            assert 0.08 < lam.std().item() < 0.12 and abs(lam.mean().item()) < 0.03
        assert a.v.weight.shape == (1024, 512) and a.c_proj.weight.shape == (512, 1024)
        assert a.q1.bias is None and a.c_proj.bias is None
        assert a.subln.normalized_shape == (256,) and a.subln.weight is None
        assert a.attn_dropout_p == 0.1 and a.resid_dropout.p == 0.1
        assert sum(p.numel() for p in a.parameters()) == 2_099_200


def explicit_diff_attention(attn: DiffAttention, x: torch.Tensor) -> torch.Tensor:
    """The reference formula of d3fnet.md §3.2, written out with full T x T matrices."""
    b, t, c = x.shape
    h, d = 4, c // 4

    def heads(y: torch.Tensor, dim: int) -> torch.Tensor:
        return y.view(b, t, h, dim).transpose(1, 2)

    q1, k1 = heads(x @ attn.q1.weight.T, d), heads(x @ attn.k1.weight.T, d)
    q2, k2 = heads(x @ attn.q2.weight.T, d), heads(x @ attn.k2.weight.T, d)
    v = heads(x @ attn.v.weight.T, 2 * d)
    s1 = q1 @ k1.transpose(-1, -2) / math.sqrt(d)
    s2 = q2 @ k2.transpose(-1, -2) / math.sqrt(d)
    if attn.causal:
        keep = torch.tril(torch.ones(t, t, dtype=torch.bool))
        s1 = s1.masked_fill(~keep, -math.inf)
        s2 = s2.masked_fill(~keep, -math.inf)
    lam = (
        torch.exp((attn.lambda_q1 * attn.lambda_k1).sum(-1))
        - torch.exp((attn.lambda_q2 * attn.lambda_k2).sum(-1))
        + attn.lambda_init
    ).view(1, h, 1, 1)
    out = (torch.softmax(s1, -1) - lam * torch.softmax(s2, -1)) @ v  # (B, h, T, 2d)
    out = F.layer_norm(out, (2 * d,), eps=1e-5) * (1 - attn.lambda_init)
    out = out.transpose(1, 2).reshape(b, t, 2 * c)
    return out @ attn.c_proj.weight.T


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_diff_attention_equals_explicit_formula_in_eval(causal, impl) -> None:
    torch.manual_seed(2)
    attn = DiffAttention(512, 4, lambda_init=lambda_init_for(8), causal=causal, attention=impl)
    attn.eval()
    x = torch.randn(2, 24, 512)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), explicit_diff_attention(attn, x), atol=2e-5, rtol=1e-4)


def test_causal_mask_follows_raster_order() -> None:
    torch.manual_seed(3)
    attn = DiffAttention(512, 4).eval()
    x = torch.randn(1, 16, 512)
    x2 = x.clone()
    x2[:, 10:] += torch.randn(1, 6, 512)  # change only later tokens
    with torch.no_grad():
        y, y2 = attn(x), attn(x2)
    torch.testing.assert_close(y[:, :10], y2[:, :10])
    assert not torch.allclose(y[:, 10:], y2[:, 10:])
    non_causal = DiffAttention(512, 4, causal=False).eval()
    with torch.no_grad():
        assert not torch.allclose(non_causal(x)[:, :10], non_causal(x2)[:, :10])


def test_explicit_attention_drops_out_the_combined_matrix_in_training() -> None:
    torch.manual_seed(4)
    attn = DiffAttention(512, 4, attention="explicit").train()
    x = torch.randn(1, 8, 512)
    assert not torch.allclose(attn(x), attn(x))  # dropout active
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))


def test_d3fnet_wiring_matches_spec(models) -> None:
    """Recompute D3FNet from its parts per d3fnet.md §3.1/§3.3 and compare to forward()."""
    model = models["d3fnet34"]
    torch.manual_seed(5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        e1, e2, e3, e4 = model.encoder(x)
        c = model.center
        xs = [e4]
        for conv in (c.dilate1, c.dilate2, c.dilate3, c.dilate4):
            xs.append(F.relu(conv(xs[-1])))
        s = sum(xs)  # x0 + x1 + x2 + x3 + x4
        attn = (c.attention1, c.attention2, c.attention3, c.attention4)
        a = sum(
            m(xi.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(xi.shape)
            for m, xi in zip(attn, xs[:4], strict=True)
        )
        dec = model.decoder.shared
        stream_a = dec.block1(dec.block2(dec.block3(dec.block4(s) + e3) + e2) + e1)
        stream_b = dec.block1(dec.block2(dec.block3(dec.block4(a))))
        fused = model.decoder.fuse(torch.cat([stream_a, stream_b], 1))
        expected = model.head(fused)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # One set of decoder weights: DDFM reuses the same modules for both streams.
    assert not any(k.startswith("decoder.") and "shared" not in k and "fuse" not in k
                   for k in model.state_dict())
    assert model.decoder.fuse[0].weight.shape == (64, 128, 1, 1)


def test_d3fnet_decoder_runs_twice_per_forward(models) -> None:
    calls = []
    handle = models["d3fnet34"].decoder.shared.block4.register_forward_hook(
        lambda m, i, o: calls.append(o.shape)
    )
    try:
        with torch.inference_mode():
            models["d3fnet34"](torch.zeros(1, 3, 64, 64))
    finally:
        handle.remove()
    assert calls == [(1, 256, 4, 4), (1, 256, 4, 4)]


@pytest.mark.slow
def test_d3fnet_full_tile_1024(models) -> None:
    with torch.inference_mode():
        y = models["d3fnet34"](torch.randn(1, 3, 1024, 1024))
    assert y.shape == (1, 1, 1024, 1024) and torch.isfinite(y).all()


def test_default_cards() -> None:
    for name in list_models():
        card = get_card(name)
        assert card.name == name
        if name.startswith(("d3fnet", "dlinknet")):
            extra = ("NIR",) if name == "d3fnet34-mm" else ()
            assert card.band_names == ("B", "G", "R", *extra)
            assert card.input_scales == pytest.approx((3.2 / 255,) * card.in_chans)
            assert card.input_offsets == (-1.6,) * card.in_chans
        assert card.tile_px == 1024 and card.output == "logits"
        assert "MIT" in card.license
    assert get_card("dlinknet34").gsd_m == 0.5
    assert get_card("d3fnet34").gsd_m == 1.0
    assert "2508.15537" in get_card("d3fnet34").paper
    assert "D-LinkNet" in get_card("dlinknet34").paper


def test_card_dict_json_round_trip() -> None:
    card = ModelCard(name="d3fnet34", gsd_m=1.0, training={"epochs": 3, "val": {"iou": 0.5}})
    back = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert back == card
    assert isinstance(back.bands, tuple)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output": "prob"}, "output"),
        ({"gsd_m": 0.0}, "gsd_m"),
        ({"tile_px": 1000}, "multiple of 32"),
        ({"bands": ()}, "no bands"),
        ({"colour": "x"}, "unknown fields"),
    ],
)
def test_card_rejects_bad_values(changes, message) -> None:
    with pytest.raises(InputError, match=message):
        ModelCard.from_dict({"name": "d3fnet34", **changes})
