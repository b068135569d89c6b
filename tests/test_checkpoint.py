"""Checkpoint round trips, error paths, and the original D-LinkNet34 weight converter."""

import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from roadx.errors import CheckpointError, InputError, OutputError, OutputExistsError
from roadx.models import (
    RELEASED_CODE_DILATIONS,
    convert_dlinknet_checkpoint,
    create_model,
    get_card,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from roadx.models import checkpoint as checkpoint_module
from roadx.models.convert import from_reference_key, load_encoder_weights, to_reference_key



@pytest.fixture(scope="module")
def d3f() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("d3fnet34", dilations=RELEASED_CODE_DILATIONS)
    # Non-trivial BN statistics so that buffers are checked too.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    return model.eval()


@pytest.fixture(scope="module")
def d3f_file(d3f, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "d3f.safetensors"
    card = dataclasses.replace(get_card("d3fnet34"), training={"epochs": 2, "val": {"iou": 0.42}})
    save_checkpoint(
        path, d3f, card=card, model_kwargs={"dilations": list(RELEASED_CODE_DILATIONS)},
        metadata={"run": "test"},
    )
    return str(path)


def test_round_trip_is_exact(d3f, d3f_file) -> None:
    model, card = load_checkpoint(d3f_file)
    assert not model.training
    assert model.center.dilate4.dilation == (8, 8)
    assert card.training == {"epochs": 2, "val": {"iou": 0.42}} and card.gsd_m == 1.0
    for key, value in d3f.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), d3f(x), atol=0, rtol=0)


def test_metadata_is_readable_from_the_header(d3f_file) -> None:
    meta = read_checkpoint_metadata(d3f_file)
    assert meta["roadx.model"] == "d3fnet34"
    assert json.loads(meta["roadx.model_kwargs"]) == {"dilations": [1, 2, 4, 8]}
    assert json.loads(meta["roadx.card"])["name"] == "d3fnet34"
    assert meta["roadx.version"] == "0.1.0" and meta["run"] == "test"


def test_float16_checkpoint_is_half_size_and_loads_as_float32(d3f, d3f_file, tmp_path) -> None:
    path = tmp_path / "half.safetensors"
    save_checkpoint(path, d3f, card=get_card("d3fnet34"),
                    model_kwargs={"dilations": [1, 2, 4, 8]}, dtype=torch.float16)
    ratio = os.path.getsize(path) / os.path.getsize(d3f_file)
    assert 0.49 < ratio < 0.51
    raw = load_file(path)
    assert raw["encoder.conv1.weight"].dtype == torch.float16
    assert raw["encoder.bn1.num_batches_tracked"].dtype == torch.int64
    model, _ = load_checkpoint(path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), d3f(x), atol=5e-2, rtol=5e-2)


def test_save_unwraps_data_parallel(d3f, tmp_path) -> None:
    path = tmp_path / "dp.safetensors"
    save_checkpoint(path, nn.DataParallel(d3f), card=get_card("d3fnet34"),
                    model_kwargs={"dilations": [1, 2, 4, 8]})
    assert "encoder.conv1.weight" in load_file(path)


def test_save_is_atomic(d3f, tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(
            path, d3f, card=get_card("d3fnet34"), model_kwargs={"dilations": [1, 2, 4, 8]}
        )
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_saved_file_has_normal_permissions(d3f, tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "perm.safetensors"
        save_checkpoint(path, d3f, card=get_card("d3fnet34"),
                        model_kwargs={"dilations": list(RELEASED_CODE_DILATIONS)})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others may read weights


def test_save_rejects_mismatched_model_and_bad_metadata(d3f, tmp_path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(InputError, match="does not match architecture 'dlinknet34'"):
        save_checkpoint(path, d3f, card=get_card("dlinknet34"), model_kwargs={})
    with pytest.raises(InputError, match="reserved"):
        save_checkpoint(path, d3f, card=get_card("d3fnet34"), model_kwargs={},
                        metadata={"roadx.model": "x"})
    with pytest.raises(OutputError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "x.safetensors", d3f, card=get_card("d3fnet34"),
                        model_kwargs={})
    assert not path.exists()


def test_load_errors_name_the_file(tmp_path, d3f_file) -> None:
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, not weights")
    with pytest.raises(CheckpointError, match=r"notes\.safetensors is not a safetensors file"):
        load_checkpoint(text)
    bad_json = tmp_path / "badheader.safetensors"
    bad_json.write_bytes((10).to_bytes(8, "little") + b"{not json}")
    with pytest.raises(CheckpointError, match="badheader.safetensors has a corrupt"):
        load_checkpoint(bad_json)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.safetensors has no roadx metadata"):
        load_checkpoint(plain)


def rewrite(src, dst, *, drop=None, meta=None, reshape=None):
    tensors = load_file(src)
    header = read_checkpoint_metadata(src)
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = torch.zeros(3)
    header.update(meta or {})
    save_file(tensors, dst, metadata=header)
    return dst


def test_load_rejects_unknown_architecture(d3f_file, tmp_path) -> None:
    path = rewrite(d3f_file, tmp_path / "u.safetensors", meta={"roadx.model": "unet"})
    msg = r"u\.safetensors is for architecture 'unet'.*d3fnet34"
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(path)


def test_load_lists_missing_and_mismatched_keys(d3f_file, tmp_path) -> None:
    path = rewrite(d3f_file, tmp_path / "k.safetensors", drop="head.conv3.bias",
                   reshape="center.attention2.lambda_q1")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "k.safetensors" in msg and "1 missing keys (head.conv3.bias)" in msg
    assert "center.attention2.lambda_q1: file (3,) vs model (4, 128)" in msg


# --- the original D-LinkNet34 layout (networks/dinknet.py, class DinkNet34) -----------------


class RefBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + idt)


def ref_layer(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
    rest = [RefBasicBlock(cout, cout, 1) for _ in range(n - 1)]
    return nn.Sequential(RefBasicBlock(cin, cout, stride), *rest)


class RefDblock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for i, d in enumerate((1, 2, 4, 8), 1):
            setattr(self, f"dilate{i}", nn.Conv2d(512, 512, 3, dilation=d, padding=d))

    def forward(self, x):
        o1 = F.relu(self.dilate1(x))
        o2 = F.relu(self.dilate2(o1))
        o3 = F.relu(self.dilate3(o2))
        o4 = F.relu(self.dilate4(o3))
        return x + o1 + o2 + o3 + o4


class RefDecoderBlock(nn.Module):
    def __init__(self, cin: int, nf: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(cin, cin // 4, 1), nn.BatchNorm2d(cin // 4)
        self.deconv2 = nn.ConvTranspose2d(cin // 4, cin // 4, 3, 2, padding=1, output_padding=1)
        self.norm2 = nn.BatchNorm2d(cin // 4)
        self.conv3, self.norm3 = nn.Conv2d(cin // 4, nf, 1), nn.BatchNorm2d(nf)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.deconv2(x)))
        return F.relu(self.norm3(self.conv3(x)))


class DinkNet34(nn.Module):
    """Same attribute names and forward as the reference; ends with a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.firstconv = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.firstbn = nn.BatchNorm2d(64)
        self.firstrelu = nn.ReLU()
        self.firstmaxpool = nn.MaxPool2d(3, 2, 1)
        self.encoder1 = ref_layer(64, 64, 3, 1)
        self.encoder2 = ref_layer(64, 128, 4, 2)
        self.encoder3 = ref_layer(128, 256, 6, 2)
        self.encoder4 = ref_layer(256, 512, 3, 2)
        self.dblock = RefDblock()
        self.decoder4 = RefDecoderBlock(512, 256)
        self.decoder3 = RefDecoderBlock(256, 128)
        self.decoder2 = RefDecoderBlock(128, 64)
        self.decoder1 = RefDecoderBlock(64, 64)
        self.finaldeconv1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.finalconv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.finalconv3 = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x):
        x = self.firstmaxpool(self.firstrelu(self.firstbn(self.firstconv(x))))
        e1 = self.encoder1(x)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.dblock(self.encoder4(e3))
        d4 = self.decoder4(e4) + e3
        d3 = self.decoder3(d4) + e2
        d2 = self.decoder2(d3) + e1
        d1 = self.decoder1(d2)
        out = F.relu(self.finalconv2(F.relu(self.finaldeconv1(d1))))
        return torch.sigmoid(self.finalconv3(out))


@pytest.fixture(scope="module")
def reference() -> DinkNet34:
    torch.manual_seed(10)
    ref = DinkNet34()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.05, 0.05)
        ref.finalconv3.weight *= 300.0  # spread the output over (0, 1), away from 0.5
    return ref.eval()


def save_reference(ref: nn.Module, path, *, old_torch: bool = False, edit=None) -> None:
    state = {f"module.{k}": v for k, v in ref.state_dict().items()
             if not (old_torch and k.endswith("num_batches_tracked"))}
    if edit:
        edit(state)
    torch.save(state, path)


def test_rename_table_round_trip(reference) -> None:
    roadx_keys = list(create_model("dlinknet34").state_dict())
    ref_keys = [to_reference_key(k) for k in roadx_keys]
    assert None not in ref_keys
    assert sorted(ref_keys) == sorted(reference.state_dict())
    assert [from_reference_key(k) for k in ref_keys] == roadx_keys
    key = "encoder.layer2.0.downsample.0.weight"
    assert to_reference_key(key) == "encoder2.0.downsample.0.weight"
    assert from_reference_key("finaldeconv1.weight") == "head.deconv1.weight"


@pytest.mark.parametrize("old_torch", [False, True])
def test_converted_weights_reproduce_reference_probabilities(reference, tmp_path, old_torch):
    src = tmp_path / "log01_dink34.th"
    save_reference(reference, src, old_torch=old_torch)
    dst = convert_dlinknet_checkpoint(src, tmp_path / "dlinknet34_deepglobe.safetensors")
    model, card = load_checkpoint(dst)
    assert card.name == "dlinknet34" and card.band_names == ("B", "G", "R") and card.gsd_m == 0.5
    assert card.output == "logits" and card.input_offsets == (-1.6,) * 3
    assert card.training["converted_from"] == "log01_dink34.th"
    torch.manual_seed(11)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = reference(x)
        got = torch.sigmoid(model(x))
    assert expected.std() > 0.05  # not saturated: the comparison means something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_converter_names_layout_problems(reference, tmp_path) -> None:
    def edit(state):
        del state["module.decoder2.norm3.running_var"]
        state["module.decoder5.conv1.weight"] = torch.zeros(1)

    src = tmp_path / "other.th"
    save_reference(reference, src, edit=edit)
    with pytest.raises(CheckpointError) as info:
        convert_dlinknet_checkpoint(src, tmp_path / "o.safetensors")
    msg = str(info.value)
    assert "other.th does not have the D-LinkNet34" in msg
    assert "missing keys (decoder2.norm3.running_var)" in msg
    assert "unexpected keys (decoder5.conv1.weight)" in msg
    assert not (tmp_path / "o.safetensors").exists()


def test_converter_rejects_non_checkpoints_and_unsafe_pickles(tmp_path) -> None:
    text = tmp_path / "readme.th"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="readme.th is not a PyTorch checkpoint"):
        convert_dlinknet_checkpoint(text, tmp_path / "o.safetensors")
    evil = tmp_path / "evil.th"
    torch.save({"module.x": torch.zeros(1), "obj": OSError("arbitrary object")}, evil)
    with pytest.raises(CheckpointError, match="evil.th is not a PyTorch checkpoint that can be"):
        convert_dlinknet_checkpoint(evil, tmp_path / "o.safetensors")


def test_converter_output_rules(reference, tmp_path) -> None:
    src = tmp_path / "log01_dink34.th"
    with pytest.raises(InputError, match="not found"):
        convert_dlinknet_checkpoint(src, tmp_path / "o.safetensors")
    save_reference(reference, src)
    with pytest.raises(OutputError, match=r"must end in \.safetensors"):
        convert_dlinknet_checkpoint(src, tmp_path / "o.pth")
    dst = tmp_path / "o.safetensors"
    dst.write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="already exists"):
        convert_dlinknet_checkpoint(src, dst)
    assert dst.read_bytes() == b"x"
    convert_dlinknet_checkpoint(src, dst, overwrite=True)
    assert read_checkpoint_metadata(dst)["roadx.converted_from"] == "log01_dink34.th"


def test_load_encoder_weights_from_torchvision_layout(reference, tmp_path) -> None:
    # torchvision resnet34 naming = roadx encoder naming; the reference encoder provides values.
    state = {from_reference_key(k).removeprefix("encoder."): v
             for k, v in reference.state_dict().items()
             if (from_reference_key(k) or "").startswith("encoder.")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    model = create_model("d3fnet34")
    load_encoder_weights(model, path)
    torch.testing.assert_close(model.encoder.layer3[5].bn2.running_var,
                               reference.encoder3[5].bn2.running_var, atol=0, rtol=0)
    del state["layer4.2.conv2.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"layer4\.2\.conv2\.weight"):
        load_encoder_weights(model, path)


def test_int8_quantization_error_is_half_a_step_per_channel() -> None:
    from roadx.models.checkpoint import dequantize_int8, quantize_int8

    torch.manual_seed(1)
    w = torch.randn(16, 8, 3, 3) * torch.logspace(-3, 0, 16)[:, None, None, None]
    w[3] = 0.0  # an all-zero channel keeps scale 1 and dequantizes to exact zeros
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (16,)
    assert int(q.abs().max()) == 127
    err = (dequantize_int8(q, scale) - w).abs().amax(dim=(1, 2, 3))
    assert torch.all(err <= scale / 2 + 1e-9)
    assert torch.equal(dequantize_int8(q, scale)[3], torch.zeros(8, 3, 3))
    # per channel: a small channel keeps its own resolution
    assert err[0] < err[-1] / 100


def test_int8_checkpoint_is_compact_and_predicts_like_its_float16_source(
    d3f, tmp_path, shared_data
) -> None:
    """Weights stored as int8 + per-channel scales load to float32 and give the same logits
    on a real Massachusetts crop as the float16 file they came from, to a small fraction of
    the logits' own spread (the shipped weights' held-out check is in weights/README.md)."""
    import numpy as np

    from roadx.io import open_scene
    from roadx.models.checkpoint import KEY_STORAGE, restore_checkpoint
    from roadx.tiling import Window

    f16 = tmp_path / "f16.safetensors"
    save_checkpoint(f16, d3f, card=get_card("d3fnet34"), storage="float16",
                    model_kwargs={"dilations": list(RELEASED_CODE_DILATIONS)})
    i8 = restore_checkpoint(f16, tmp_path / "i8.safetensors", storage="int8")
    assert i8.stat().st_size < 0.55 * f16.stat().st_size
    assert read_checkpoint_metadata(i8)[KEY_STORAGE] == "int8-per-channel"
    stored = load_file(i8)
    assert stored["encoder.conv1.weight"].dtype == torch.int8
    assert stored["encoder.conv1.weight::int8_scale"].dtype == torch.float32
    (m16, _), (m8, card8) = load_checkpoint(f16), load_checkpoint(i8)
    assert card8.training["storage"].startswith("int8 per output channel")
    assert all(v.dtype != torch.int8 for v in m8.state_dict().values())

    image = shared_data / "massachusetts_lorudarku" / "images" / "10078675_15_0_0.jpg"
    with open_scene(image, gsd_m=1.0, band_order=card8.band_names) as scene:
        pixels, _ = scene.read_window(Window(0, 0, 128, 128))
    x = torch.from_numpy(pixels.astype(np.float32)) * card8.input_scales[0] + card8.input_offsets[0]
    with torch.inference_mode():
        l16, l8 = (m(x[None]) for m in (m16, m8))
    spread = float(l16.std())
    assert spread > 1e-4  # the logits vary over the crop: the comparison is not vacuous
    assert float((l16 - l8).abs().max()) < 0.1 * spread
    assert float((l16 - l8).abs().mean()) < 0.02 * spread


def test_int8_file_without_scales_is_rejected(d3f, tmp_path) -> None:
    from roadx.models.checkpoint import restore_checkpoint

    src = tmp_path / "f32.safetensors"
    save_checkpoint(src, d3f, card=get_card("d3fnet34"),
                    model_kwargs={"dilations": list(RELEASED_CODE_DILATIONS)})
    i8 = restore_checkpoint(src, tmp_path / "i8.safetensors", storage="int8")
    tensors = load_file(i8)
    meta = read_checkpoint_metadata(i8)
    del tensors["center.dilate1.weight::int8_scale"]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, broken, metadata=meta)
    with pytest.raises(CheckpointError, match="center.dilate1.weight has no ::int8_scale"):
        load_checkpoint(broken)
    with pytest.raises(InputError, match="is the input checkpoint"):
        restore_checkpoint(i8, i8, storage="int8")
    with pytest.raises(OutputError, match="already exists"):
        restore_checkpoint(src, i8, storage="int8")


def test_non_finite_weights_are_rejected_at_load(tmp_path) -> None:
    model = create_model("d3fnet34", width=8)
    with torch.no_grad():
        model.head.conv3.weight[0, 0, 0, 0] = float("nan")
        model.center.dilate2.bias[3] = float("inf")
    path = tmp_path / "diverged.safetensors"
    save_checkpoint(path, model, card=get_card("d3fnet34"), model_kwargs={"width": 8})
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in .*center.dilate2.bias"):
        load_checkpoint(path)


def test_float16_overflowed_batch_norm_variance_loads_as_the_same_function(tmp_path, caplog):
    """roadx 0.1 saved float16 files in which a running variance above 65504 became inf (the
    shipped weights had a whole layer of them); such files still load, to a finite model that
    computes exactly what the inf one did, and new saves keep such tensors in float32."""
    torch.manual_seed(0)
    model = create_model("d3fnet34", width=8).eval()
    with torch.no_grad():
        model.decoder.shared.block4.norm1.running_var[:5] = 1e6  # overflows float16
    path = tmp_path / "f16.safetensors"
    with caplog.at_level("WARNING", logger="roadx"):
        save_checkpoint(path, model, card=get_card("d3fnet34"), model_kwargs={"width": 8},
                        dtype=torch.float16)
    assert "does not fit torch.float16; stored as float32" in caplog.text
    assert load_file(path)["decoder.shared.block4.norm1.running_var"].dtype == torch.float32

    tensors = load_file(path)  # an old-style file: the variance itself overflowed to inf
    tensors["decoder.shared.block4.norm1.running_var"] = (
        tensors["decoder.shared.block4.norm1.running_var"].half()
    )
    old = tmp_path / "old.safetensors"
    save_file(tensors, old, metadata=read_checkpoint_metadata(path))
    raw = create_model("d3fnet34", width=8).eval()
    raw.load_state_dict({k: v.float() for k, v in tensors.items()})
    assert torch.isinf(raw.decoder.shared.block4.norm1.running_var).sum() == 5
    caplog.clear()
    with caplog.at_level("WARNING", logger="roadx"):
        repaired, _ = load_checkpoint(old)
    channels = raw.decoder.shared.block4.norm1.num_features
    assert f"5 of {channels} running variances" in caplog.text
    bn = repaired.decoder.shared.block4.norm1
    assert torch.isfinite(bn.running_var).all() and torch.equal(bn.weight[:5], torch.zeros(5))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(repaired(x), raw(x))
