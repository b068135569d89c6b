"""On a CUDA GPU: which SDPA kernels give finite gradients for D3FNet's differential attention,
does the model's own choice train, and do fused and math kernels agree at inference?

Prints JSON lines. Needs torch alone (and the packed tiles of ``gpu_finetune.py pack`` for real
image crops, else random input). Usage: ``python benchmarks/gpu_attention_check.py [--pack DIR]``.
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import roadx.models.d3fnet as d3fnet  # noqa: E402
from roadx.models import load_checkpoint  # noqa: E402
from roadx.train.loss import dice_bce_loss  # noqa: E402


def batch(pack: Path | None, size: int, n: int, card) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """(x (n, 3, size, size) network input, y (n, 1, size, size) road) from the pack or noise."""
    if pack is not None and (pack / "index.json").exists():
        sys.path.insert(0, str(HERE))
        from gpu_finetune import load_pack

        tiles = load_pack(pack)[0][:n]
        img = np.stack([t.image[:size, :size] for t in tiles])
        lab = np.stack([t.label[:size, :size] & 1 for t in tiles])
        x = torch.from_numpy(img[..., ::-1].copy()).permute(0, 3, 1, 2).float()
        return x * card.input_scales[0] + card.input_offsets[0], torch.from_numpy(lab[:, None]).float()
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), (torch.rand(n, 1, size, size, generator=g) > 0.9).float()


def grads_finite(model, x, y, dtype) -> tuple[bool, float]:  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        loss = dice_bce_loss(model(x), y)
    loss.backward()
    bad = sum(not torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    return bad == 0, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pack", type=Path, default=HERE.parent / ".gpu" / "pack")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    model, card = load_checkpoint(HERE.parent / "weights" / "d3fnet34.safetensors")
    model = model.cuda().to(memory_format=torch.channels_last)
    x, y = batch(args.pack, args.size, 4, card)
    x, y = x.cuda().contiguous(memory_format=torch.channels_last), y.cuda()
    model.train()
    for dtype in (torch.float32, torch.bfloat16):
        ok, loss = grads_finite(model, x, y, dtype)
        print(json.dumps({"train": "model as shipped (math kernel when training on CUDA)",
                          "dtype": str(dtype), "finite_grads": ok, "loss": loss}), flush=True)
        original = d3fnet._sdpa_backends
        d3fnet._sdpa_backends = lambda q: contextlib.nullcontext()  # noqa: E731
        try:
            for name, backend in (("efficient", SDPBackend.EFFICIENT_ATTENTION),
                                  ("cudnn", SDPBackend.CUDNN_ATTENTION),
                                  ("flash", SDPBackend.FLASH_ATTENTION),
                                  ("math", SDPBackend.MATH)):
                try:
                    with sdpa_kernel([backend]):
                        ok, loss = grads_finite(model, x, y, dtype)
                    row = {"finite_grads": ok, "loss": loss}
                except RuntimeError as err:
                    row = {"unavailable": str(err).splitlines()[0][:120]}
                print(json.dumps({"train_kernel": name, "dtype": str(dtype), **row}), flush=True)
            for p_drop in (0.0,):
                for m in model.modules():
                    if isinstance(m, d3fnet.DiffAttention):
                        m.attn_dropout_p = p_drop
                with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                    ok, loss = grads_finite(model, x, y, dtype)
                print(json.dumps({"train_kernel": "efficient, attention dropout 0",
                                  "dtype": str(dtype), "finite_grads": ok}), flush=True)
                for m in model.modules():
                    if isinstance(m, d3fnet.DiffAttention):
                        m.attn_dropout_p = 0.1
        finally:
            d3fnet._sdpa_backends = original
    model.eval()
    with torch.no_grad():
        fused = torch.sigmoid(model(x).float())
        with sdpa_kernel([SDPBackend.MATH]):
            math_p = torch.sigmoid(model(x).float())
        x_cpu = x.float().cpu().contiguous()
        cpu_p = torch.sigmoid(model.float().cpu()(x_cpu)).float()
    print(json.dumps({"inference_fused_vs_math_max_abs_dp": float((fused - math_p).abs().max()),
                      "inference_gpu_vs_cpu_max_abs_dp": float((fused.cpu() - cpu_p).abs().max()),
                      "inference_gpu_vs_cpu_mean_abs_dp": float((fused.cpu() - cpu_p).abs().mean())}),
          flush=True)


if __name__ == "__main__":
    main()
