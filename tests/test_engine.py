"""predict_scene end to end: the identity-model seam test through the real grid, TTA and
stitcher, plus skipping, progress, read-ahead, OOM back-off, devices and a real D3FNet."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from roadx.errors import DeviceError, InputError
from roadx.models import ModelCard, create_model, uniform_bands
from roadx.predict import PredictOptions, ReadFn, predict_scene, resolve_device, tta_views
from roadx.tiling import TileGrid, Window

CARD = ModelCard(name="d3fnet34")



class SceneReader:
    """Boundless in-memory reader with the roadx.io contract: 0 / invalid outside the scene."""

    def __init__(self, image: np.ndarray, valid: np.ndarray) -> None:
        self.image, self.valid = image, valid
        self.calls: list[Window] = []
        self.threads: set[str] = set()

    def __call__(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(window)
        self.threads.add(threading.current_thread().name)
        _, h, w = self.image.shape
        img = np.zeros((3, *window.shape), np.uint8)
        val = np.zeros(window.shape, bool)
        inner = window.intersection(Window(0, 0, h, w))
        if inner.height and inner.width:
            rows, cols = inner.relative_to(window)
            src = (slice(inner.row_off, inner.row_end), slice(inner.col_off, inner.col_end))
            img[:, rows, cols] = self.image[:, src[0], src[1]]
            val[rows, cols] = self.valid[src]
        return img, val


class PixelModel(nn.Module):
    """Fake model: per-pixel logits a*x0 + b*x1 - c*x2, dihedral-equivariant; counts calls."""

    def __init__(self, oom_above: int | None = None) -> None:
        super().__init__()
        self.oom_above = oom_above
        self.batches: list[int] = []  # batch size of every call, failed ones included
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        if self.oom_above is not None and x.shape[0] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        self.inputs.append(x.clone())
        return 0.7 * x[:, 0:1] + 1.3 * x[:, 1:2] - 0.9 * x[:, 2:3]  # (B, 3, H, W) -> (B, 1, H, W)


def random_scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 image with a valid mask: right quarter missing plus a round hole."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
    valid = np.ones((height, width), bool)
    valid[:, (3 * width) // 4 :] = False
    yy, xx = np.mgrid[:height, :width]
    valid[(yy - height // 2) ** 2 + (xx - width // 3) ** 2 < (min(height, width) // 5) ** 2] = False
    return image, valid


def expected_prob(image: np.ndarray, valid: np.ndarray, card: ModelCard) -> np.ndarray:
    """sigmoid(f(whole scene)) with the engine's float32 input scaling; NaN where invalid."""
    scale, offset = np.float32(card.input_scales[0]), np.float32(card.input_offsets[0])
    x = image.astype(np.float32) * scale + offset
    with torch.inference_mode():
        p = torch.sigmoid(PixelModel()(torch.from_numpy(x)[None]))[0, 0].numpy()
    return np.where(valid, p, np.float32(np.nan))


def run(
    reader: ReadFn,
    grid: TileGrid,
    model: nn.Module,
    options: PredictOptions,
    card: ModelCard = CARD,
) -> np.ndarray:
    """Run predict_scene, check the band and progress contracts, return the whole scene."""
    progress: list[int] = []
    row = 0
    parts = []
    stream = predict_scene(reader, grid, model, card, options, on_progress=progress.append)
    for window, prob in stream:
        assert (window.row_off, window.col_off, window.width) == (row, 0, grid.width)
        assert prob.shape == window.shape and prob.dtype == np.float32
        row = window.row_end
        parts.append(prob)
    assert row == grid.height
    assert progress == [1] * len(grid)
    if isinstance(reader, SceneReader):
        assert reader.calls == [tile.read for tile in grid]  # each window read once, in order
    return np.concatenate(parts, axis=0)


def windows_with_data(grid: TileGrid, valid: np.ndarray) -> int:
    reader = SceneReader(np.zeros((3, *valid.shape), np.uint8), valid)
    return sum(bool(reader(t.read)[1].any()) for t in grid)


def check_identity(
    height: int, width: int, tile_px: int, overlap_px: int, tta: str, blend: str
) -> tuple[int, int]:
    """Identity-model seam check; returns (windows with data, windows in the grid)."""
    image, valid = random_scene(height, width, seed=height + tile_px)
    grid = TileGrid(height, width, tile_px=tile_px, overlap_px=overlap_px)
    model = PixelModel()
    options = PredictOptions(
        tta=tta,  # type: ignore[arg-type]
        blend=blend,  # type: ignore[arg-type]
        batch_size=3,
        device="cpu",
    )
    out = run(SceneReader(image, valid), grid, model, options)
    expected = expected_prob(image, valid, CARD)
    assert np.array_equal(np.isnan(out), ~valid)
    if blend == "crop":
        assert np.array_equal(out[valid], expected[valid])
    else:
        np.testing.assert_allclose(out[valid], expected[valid], rtol=0, atol=1e-5)
    # windows without data never reach the model; the others go in with all their views
    n_views = len(tta_views(tta))  # type: ignore[arg-type]
    n_data = windows_with_data(grid, valid)
    assert sum(model.batches) == n_data * n_views
    assert max(model.batches) <= 3 * n_views
    return n_data, len(grid)


SMALL = [
    (150, 333, 128, 32),
    (150, 333, 256, 64),
    (100, 90, 128, 32),  # smaller than one window
]


@pytest.mark.parametrize("blend", ["crop", "cosine"])
@pytest.mark.parametrize("tta", ["none", "flip", "d4"])
@pytest.mark.parametrize(("height", "width", "tile_px", "overlap_px"), SMALL)
def test_identity_model_reproduces_whole_scene(
    height: int, width: int, tile_px: int, overlap_px: int, tta: str, blend: str
) -> None:
    check_identity(height, width, tile_px, overlap_px, tta, blend)


@pytest.mark.parametrize(
    ("tile_px", "overlap_px", "tta", "blend"),
    [
        (256, 64, "d4", "crop"),
        (256, 64, "flip", "cosine"),
        (128, 32, "d4", "cosine"),
        (128, 32, "none", "crop"),
    ],
)
def test_identity_model_big_scene_skips_empty_windows(
    tile_px: int, overlap_px: int, tta: str, blend: str
) -> None:
    n_data, n_windows = check_identity(1000, 1337, tile_px, overlap_px, tta, blend)
    assert 0 < n_data < n_windows  # the missing right quarter holds whole windows


def test_inputs_are_scaled_and_nodata_set_to_black_probabilities_card() -> None:
    card = ModelCard(name="d3fnet34", bands=uniform_bands("BGR", 0.5, -3.0), output="probabilities")
    image = np.full((3, 64, 64), 10, np.uint8)
    valid = np.ones((64, 64), bool)
    valid[:8] = False
    grid = TileGrid(64, 64, tile_px=64, overlap_px=0)

    class Half(PixelModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            super().forward(x)
            return torch.full_like(x[:, :1], 0.25)  # already a probability: no sigmoid

    model = Half()
    options = PredictOptions(tta="none", device="cpu")
    out = run(SceneReader(image, valid), grid, model, options, card)
    x = model.inputs[0][0]  # (3, 64, 64)
    assert x.dtype == torch.float32
    assert torch.all(x[:, 8:] == 10 * 0.5 - 3.0) and torch.all(x[:, :8] == -3.0)
    assert np.all(out[8:] == 0.25) and np.isnan(out[:8]).all()


def test_cuda_oom_halves_the_batch_and_retries_the_same_windows() -> None:
    image, valid = random_scene(300, 400, seed=2)
    grid = TileGrid(300, 400, tile_px=128, overlap_px=32)
    model = PixelModel(oom_above=2)
    options = PredictOptions(
        tta="flip", blend="crop", batch_size=4, device="cpu", max_images_per_forward=16
    )
    out = run(SceneReader(image, valid), grid, model, options)
    expected = expected_prob(image, valid, CARD)
    assert np.array_equal(out[valid], expected[valid])
    assert model.batches[:4] == [16, 8, 4, 2]  # 4 windows x 4 views, halved until it fits
    assert max(model.batches[4:]) == 2  # the smaller batch is kept afterwards
    assert sum(b for b in model.batches if b <= 2) == windows_with_data(grid, valid) * 4


def test_oom_with_a_single_window_is_a_device_error() -> None:
    image, valid = random_scene(64, 64, seed=1)
    grid = TileGrid(64, 64, tile_px=64, overlap_px=0)
    options = PredictOptions(tta="none", batch_size=2, device="cpu")
    with pytest.raises(DeviceError, match="out of memory.*--tile"):
        list(predict_scene(SceneReader(image, valid), grid, PixelModel(oom_above=0), CARD, options))


def test_reading_runs_ahead_in_a_worker_thread() -> None:
    image, valid = np.zeros((3, 64, 200), np.uint8), np.ones((64, 200), bool)
    grid = TileGrid(64, 200, tile_px=64, overlap_px=0)  # 4 windows, batches of 1
    second_read = threading.Event()

    class Reader(SceneReader):
        def __call__(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
            if len(self.calls) == 1:
                second_read.set()
            return super().__call__(window)

    class WaitsForReadAhead(PixelModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.batches:  # the first forward only ends once batch 2 is being read
                assert second_read.wait(timeout=10), "the next batch was not read ahead"
            return super().forward(x)

    reader = Reader(image, valid)
    run(reader, grid, WaitsForReadAhead(), PredictOptions(tta="none", batch_size=1, device="cpu"))
    assert threading.current_thread().name not in reader.threads
    assert len(reader.threads) == 1


def test_closing_the_stream_early_stops_reading() -> None:
    image, valid = random_scene(1000, 100, seed=4)
    grid = TileGrid(1000, 100, tile_px=64, overlap_px=16)
    reader = SceneReader(image, valid)
    options = PredictOptions(batch_size=1, device="cpu")
    stream = predict_scene(reader, grid, PixelModel(), CARD, options)
    window, _ = next(stream)
    stream.close()
    assert window.row_off == 0 and len(reader.calls) < len(grid)


def test_bad_reader_output_and_bad_model_output_are_input_errors() -> None:
    grid = TileGrid(64, 64, tile_px=64, overlap_px=0)
    options = PredictOptions(tta="none", device="cpu")

    def short_read(window: Window) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((3, 32, 32), np.uint8), np.ones((32, 32), bool)

    with pytest.raises(InputError, match="boundless"):
        list(predict_scene(short_read, grid, PixelModel(), CARD, options))

    class TwoChannels(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2]

    reader = SceneReader(*random_scene(64, 64, seed=0))
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        list(predict_scene(reader, grid, TwoChannels(), CARD, options))


def test_options_are_validated() -> None:
    with pytest.raises(InputError, match="TTA"):
        PredictOptions(tta="flip4")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="blend"):
        PredictOptions(blend="mean")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_size"):
        PredictOptions(batch_size=0)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    message = r"CUDA was requested but torch.cuda.is_available\(\) is False; use --device cpu"
    with pytest.raises(DeviceError, match=message):
        resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")


def test_real_d3fnet_smoke() -> None:
    torch.manual_seed(0)
    model = create_model("d3fnet34", width=16)  # every layer of the paper's model, narrower
    image, valid = random_scene(256, 300, seed=9)
    grid = TileGrid(256, 300, tile_px=128, overlap_px=32)
    options = PredictOptions(tta="flip", blend="cosine", batch_size=2, device="cpu")
    out = run(SceneReader(image, valid), grid, model, options)
    assert out.shape == (256, 300)
    assert np.array_equal(np.isnan(out), ~valid)
    assert np.all((out[valid] >= 0) & (out[valid] <= 1))
    assert np.ptp(out[valid]) > 0  # a real, input-dependent map
    assert not model.training  # put in eval mode


def test_cpu_forward_passes_are_capped_to_bound_memory() -> None:
    image, valid = random_scene(300, 400, seed=3)
    grid = TileGrid(300, 400, tile_px=128, overlap_px=32)
    model = PixelModel()
    options = PredictOptions(tta="d4", blend="cosine", batch_size=4, device="cpu")
    out = run(SceneReader(image, valid), grid, model, options)
    assert max(model.batches) == 2  # 4 windows x 8 views, 2 images per forward on CPU
    assert np.allclose(out[valid], expected_prob(image, valid, CARD)[valid], atol=1e-5)


def test_mostly_non_finite_outputs_warn(caplog) -> None:
    """A model whose outputs are NaN (a diverged run, an fp16 overflow) warns instead of
    silently finding no roads (issue #13, item 6)."""
    import logging

    import torch

    from roadx.models import get_card
    from roadx.predict import PredictOptions, predict_scene
    from roadx.tiling import TileGrid

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x[:, :1], float("nan"))

    grid = TileGrid(64, 64, tile_px=64, overlap_px=0)

    def read(window):
        return np.full((3, 64, 64), 100, np.uint8), np.ones((64, 64), bool)

    with caplog.at_level(logging.WARNING, logger="roadx"):
        bands = list(predict_scene(read, grid, Broken(), get_card("d3fnet34"),
                                   PredictOptions(tta="none", device="cpu")))
    assert all(np.isnan(b).all() for _, b in bands)
    assert "100 % of the model's outputs were NaN or infinite" in caplog.text
