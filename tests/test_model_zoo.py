"""Contract tests for every registered architecture: a new model gets them by being registered.

Parametrised over ``list_models()``; small widths (``ModelEntry.test_kwargs``) keep every layer
and shape rule while staying fast on CPU; the full-size parameter count is taken on the meta
device (``count_parameters``: no allocation). Architecture-specific checks (DDRNet fusion order
and DAPPM, DANet PAM/CAM maths) are at the end.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from roadx.errors import InputError
from roadx.models import RoadModel, count_parameters, create_model, get_entry, list_models
from roadx.models.danet import CAM, PAM
from roadx.predict import PredictOptions, predict_scene
from roadx.tiling import TileGrid, Window

MODELS = list_models()


def small(name: str) -> RoadModel:
    torch.manual_seed(0)
    model = create_model(name, **get_entry(name).test_kwargs)
    assert isinstance(model, RoadModel)
    return model


def excite_gammas(model: torch.nn.Module, value: float = 0.5) -> None:
    """Zero-initialised residual gates (DANet's γ; d3fnet34-mm's fusion γ/β and frequency
    filters, which make it start as d3fnet34) cut gradients to the paths behind them at init;
    open them so shape and gradient tests see every path."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(getattr(module, "gamma", None), torch.nn.Parameter):
                module.gamma.fill_(value)
        for name, parameter in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("gamma_r", "gamma_a", "beta", "filters"):
                parameter.fill_(value)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_equals_spec(name: str) -> None:
    entry = get_entry(name)
    assert entry.spec_parameters is not None, f"{name}: registry entry without a spec count"
    assert count_parameters(name) == entry.spec_parameters, entry.spec


@pytest.mark.parametrize(
    ("name", "deploy"),
    [("ddrnet23s", 5_694_817), ("ddrnet23", 20_146_625), ("danet34", 23_219_941 - 258),
     ("d3fnet34", 39_501_313), ("d3fnet34-mm", 55_820_025)],
)
def test_deploy_parameter_count_leaves_out_auxiliary_heads(name: str, deploy: int) -> None:
    assert count_parameters(name, deploy=True) == deploy  # ddrnet.md §4.1, danet.md §7.1A


@pytest.mark.parametrize("name", MODELS)
def test_recorded_gflops_equal_a_fresh_count(name: str) -> None:
    """``ModelEntry.gflops_1024`` (shown by ``roadx models``) is what the model costs now:
    counted on the meta device (shapes only) for one 1024² window."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(name).eval()
        x = torch.zeros(1, get_entry(name).card.in_chans, 1024, 1024)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() / 1e9 == pytest.approx(get_entry(name).gflops_1024,
                                                            abs=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_card_agrees_with_model(name: str) -> None:
    entry = get_entry(name)
    model = small(name)
    assert entry.card.name == name == entry.name
    assert model.in_chans == entry.card.in_chans
    assert model.input_multiple_px == entry.card.input_multiple_px
    assert entry.card.tile_px % entry.card.input_multiple_px == 0
    assert len(entry.loss_weights) == 1 + len(entry.aux_weights)
    for module_name in entry.aux_modules:
        model.get_submodule(module_name)  # raises if the registry names a missing module


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes_at_several_sizes(name: str) -> None:
    model = small(name).eval()
    m = get_entry(name).card.input_multiple_px
    c = get_entry(name).card.in_chans
    for h, w in ((m, m), (m, 2 * m), (3 * m, 2 * m)):
        x = torch.randn(2, c, h, w)
        with torch.inference_mode():
            y = model(x)
            outs = model.forward_train(x)
        assert y.shape == (2, 1, h, w) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
        assert len(outs) == len(get_entry(name).loss_weights)
        assert all(o.shape == (2, 1, h, w) for o in outs)
        torch.testing.assert_close(outs[0], y)  # forward = the main training output


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = small(name).train()
    excite_gammas(model)
    m = get_entry(name).card.input_multiple_px
    # two positions per side at the coarsest stride: attention over one token has no q/k grad
    x = torch.randn(2, get_entry(name).card.in_chans, 2 * m, 2 * m)
    outs = model.forward_train(x)
    target = torch.rand_like(outs[0])
    loss = sum(w * F.binary_cross_entropy_with_logits(o, target)
               for w, o in zip(get_entry(name).loss_weights, outs, strict=True))
    loss.backward()
    no_grad = [k for k, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("name", MODELS)
def test_input_not_a_multiple_names_the_multiple_and_the_padded_size(name: str) -> None:
    model = small(name).eval()
    m = get_entry(name).card.input_multiple_px
    c = get_entry(name).card.in_chans
    h = m + 16
    with pytest.raises(InputError, match=rf"{h}x{m} px.*multiples of {m}.*Pad the input to "
                                         rf"{2 * m}x{m} px"):
        model(torch.zeros(1, c, h, m))
    with pytest.raises(InputError, match=rf"\(B, {c}, H, W\)"):
        model(torch.zeros(1, c + 1, m, m))


def _direct(model: torch.nn.Module, name: str, pixels: np.ndarray) -> np.ndarray:
    """sigmoid(model(x)) of one uint8 ``(C, h, w)`` window, scaled per band as the card says."""
    card = get_entry(name).card
    x = torch.from_numpy(pixels).float()
    x = x * torch.tensor(card.input_scales).view(-1, 1, 1) + torch.tensor(
        card.input_offsets).view(-1, 1, 1)
    with torch.inference_mode():
        return torch.sigmoid(model(x[None]))[0, 0].numpy()


def _d4_direct(model: torch.nn.Module, name: str, pixels: np.ndarray) -> np.ndarray:
    """Mean probability over the 8 rotations/flips, each mapped back (independent of tta.py)."""
    views = []
    for flip in (False, True):
        base = pixels[:, :, ::-1] if flip else pixels
        for k in range(4):
            p = _direct(model, name, np.ascontiguousarray(np.rot90(base, k, axes=(1, 2))))
            p = np.rot90(p, -k)
            views.append(p[:, ::-1] if flip else p)
    return np.mean(views, axis=0)


@pytest.mark.parametrize("name", MODELS)
def test_engine_tta_and_stitching_equal_direct_predictions(name: str) -> None:
    """Through the real predict engine: per-band card scaling, d4 TTA and crop stitching of a
    scene of several windows equal the model run on each window by hand."""
    model = small(name).eval()
    card = get_entry(name).card
    tile = card.input_multiple_px * (2 if card.input_multiple_px < 64 else 1)
    height, width = tile + tile // 2, 2 * tile - 8  # edge windows read past the scene
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (card.in_chans, height, width), dtype=np.uint8)

    def read(window: Window) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((card.in_chans, *window.shape), np.uint8)
        valid = np.zeros(window.shape, bool)
        inner = window.intersection(Window(0, 0, height, width))
        rows, cols = inner.relative_to(window)
        out[:, rows, cols] = image[:, inner.row_off:inner.row_end, inner.col_off:inner.col_end]
        valid[rows, cols] = True
        return out, valid

    grid = TileGrid(height, width, tile_px=tile, overlap_px=tile // 4)
    assert len(grid) > 1
    for tta, by_hand in (("none", _direct), ("d4", _d4_direct)):
        options = PredictOptions(tta=tta, blend="crop", batch_size=2, device="cpu",
                                 precision="fp32", channels_last=False)
        got = np.concatenate(
            [p for _, p in predict_scene(read, grid, model, card, options)], axis=0
        )
        expected = np.full((height, width), np.nan, np.float32)
        for t in grid:
            prob = by_hand(model, name, read(t.read)[0])
            rows, cols = t.core.relative_to(t.read)
            expected[t.core.row_off:t.core.row_end, t.core.col_off:t.core.col_end] = prob[
                rows, cols]
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"tta={tta}")


# --- DDRNet ---------------------------------------------------------------------------------


def test_ddrnet_per_module_parameters_match_spec() -> None:
    """ddrnet.md §4.1, DDRNet-23-slim with one class."""
    with torch.device("meta"):
        model = create_model("ddrnet23s")
    expected = {
        "conv1": 10_272, "layer1": 37_120, "layer2": 131_712, "layer3": 525_568,
        "layer4": 2_099_712, "layer5": 920_576, "layer3_": 147_968, "layer4_": 147_968,
        "layer5_": 58_112, "compression3": 8_320, "compression4": 16_512, "down3": 73_984,
        "down4": 369_408, "spp": 1_073_408, "final_layer": 74_177, "seghead_extra": 37_185,
    }
    got = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_children()}
    assert got == expected


def test_ddrnet_fusion_reads_pre_fusion_low_branch() -> None:
    """compression3 receives layer3's output itself (ReLU'd), not the low branch after down3
    was added (ddrnet.md §3, fusion timing)."""
    model = small("ddrnet23s").eval()
    seen: dict[str, torch.Tensor] = {}
    model.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("layer3", o.clone()))
    model.compression3.register_forward_hook(
        lambda m, i, o: seen.__setitem__("compression3_in", i[0].clone()))
    with torch.inference_mode():
        model(torch.randn(1, 3, 128, 128))
    torch.testing.assert_close(seen["compression3_in"], F.relu(seen["layer3"]))


def test_ddrnet_predicts_at_one_eighth_and_upsamples() -> None:
    model = small("ddrnet23s").eval()
    seen: dict[str, torch.Size] = {}
    model.final_layer.register_forward_hook(lambda m, i, o: seen.__setitem__("head", o.shape))
    with torch.inference_mode():
        y = model(torch.randn(1, 3, 128, 192))
    assert seen["head"] == (1, 1, 16, 24) and y.shape == (1, 1, 128, 192)


def test_ddrnet_official_key_names_load_with_the_expected_key_sets() -> None:
    """An ImageNet-classification state dict (official names, plus down5/last_layer/linear,
    without spp/final_layer/seghead_extra) loads with exactly those key sets (ddrnet.md §3.2)."""
    model = small("ddrnet23s")
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("spp.", "final_layer.", "seghead_extra."))}
    state |= {"down5.0.weight": torch.zeros(1), "last_layer.0.weight": torch.zeros(1),
              "linear.weight": torch.zeros(1)}
    result = small("ddrnet23s").load_state_dict(state, strict=False)
    assert sorted(result.unexpected_keys) == ["down5.0.weight", "last_layer.0.weight",
                                              "linear.weight"]
    assert {k.split(".")[0] for k in result.missing_keys} == {"spp", "final_layer",
                                                              "seghead_extra"}


# --- DANet ----------------------------------------------------------------------------------


def test_pam_sdpa_equals_naive() -> None:
    torch.manual_seed(0)
    naive, fused = PAM(16, "naive"), PAM(16, "sdpa")
    fused.load_state_dict(naive.state_dict())
    for pam in (naive, fused):
        pam.gamma.data.fill_(0.7)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(fused(x), naive(x), atol=1e-5, rtol=1e-5)


def test_cam_modes_differ_and_max_minus_favours_dissimilar_channels() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 4, 4)
    quirk, paper = CAM("max_minus"), CAM("standard")
    for cam in (quirk, paper):
        cam.gamma.data.fill_(1.0)
    assert not torch.allclose(quirk(x), paper(x))
    f = x.flatten(2)
    energy = f @ f.transpose(1, 2)
    attn = torch.softmax(energy.amax(-1, keepdim=True) - energy, -1)
    torch.testing.assert_close(quirk(x), (attn @ f).view_as(x) + x)


def test_attention_runs_in_float32_under_autocast() -> None:
    """Large activations whose energies overflow bfloat16/float16 precision stay exact."""
    torch.manual_seed(0)
    pam, cam = PAM(16, "naive"), CAM()
    pam.gamma.data.fill_(1.0)
    cam.gamma.data.fill_(1.0)
    x = torch.randn(1, 16, 16, 16) * 300.0
    for module in (pam, cam):
        reference = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x.bfloat16())
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, module(x.bfloat16().float()))
        assert torch.isfinite(reference).all()


def test_danet_with_zero_projection_is_a_linknet_without_centre() -> None:
    """γ = 0 at init makes both attention branches identities; with ``proj`` zeroed the centre
    returns e4, i.e. the network is the ResNet-34 LinkNet (danet.md §7.3)."""
    model = small("danet34").eval()
    with torch.no_grad():
        model.center.proj[1].weight.zero_()
        model.center.proj[1].bias.zero_()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        feats = model.encoder(x)
        expected = model.head(model.decoder(feats[3], feats))
        torch.testing.assert_close(model(x), expected)


# --- roadx predict --model ------------------------------------------------------------------


def test_roadx_predict_model_ddrnet23s(tmp_path, monkeypatch, capsys) -> None:
    """``roadx predict --model ddrnet23s`` finds ddrnet23s weights, feeds them RGB with
    ImageNet scaling and windows that are multiples of 64 (a 300 x 400 px scene runs one
    448² window), and refuses a --tile that is not a multiple of 64 before any forward pass."""
    import sys

    import rasterio
    from rasterio.transform import from_origin

    from roadx.cli import main
    from roadx.models import get_card, save_checkpoint

    torch.manual_seed(0)
    kwargs = dict(get_entry("ddrnet23s").test_kwargs)
    save_checkpoint(tmp_path / "ddrnet23s.safetensors", create_model("ddrnet23s", **kwargs),
                    card=get_card("ddrnet23s"), model_kwargs=kwargs)
    monkeypatch.setenv("ROADX_WEIGHTS_DIR", str(tmp_path))
    scene = tmp_path / "scene.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (3, 300, 400), dtype=np.uint8)
    with rasterio.open(scene, "w", driver="GTiff", width=400, height=300, count=3,
                       dtype="uint8", crs="EPSG:32611", transform=from_origin(5e5, 4e6, 1, 1),
                       photometric="RGB") as dst:
        dst.write(pixels)

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["roadx", "predict", str(scene), "--model",
                                          "ddrnet23s", "--tta", "none", "--device", "cpu",
                                          *args])
        with pytest.raises(SystemExit) as exc:
            main()
        code = exc.value.code
        return (0 if code is None else code if isinstance(code, int) else 1,
                capsys.readouterr().err)

    code, err = run("-o", str(tmp_path / "roads.gpkg"), "--prob", str(tmp_path / "p.tif"))
    assert code == 0, err
    assert "ddrnet23s" in err and "448 px" in err
    with rasterio.open(tmp_path / "p.tif") as prob:
        assert prob.shape == (300, 400)
    code, err = run("-o", str(tmp_path / "r2.gpkg"), "--tile", "96")
    flat = " ".join(err.split())
    assert code == 1 and "--tile" in flat and "multiple of 64" in flat and "use 128" in flat
