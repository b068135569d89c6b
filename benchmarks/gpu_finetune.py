"""Fine-tune the default weights on a lent GPU machine, within a fixed time budget.

A GPU machine here has torch but no GDAL/rasterio, and takes at most 64 MiB of files. So the
run has two halves:

``pack`` (here, with the full roadx installed): discover and split the training data exactly
as ``roadx train`` does (same folders, same held-out list), decode every tile at the training
GSD, and store it compactly in a folder that git ignores: the image as a JPEG (quality ``-q``),
the label byte (bit 0 road, bit 1 valid) as a PNG, and ``index.json``. A tile larger than
``--max-side`` is cut to its central square of that side, so the pack fits the size limit.

``run`` (on the GPU machine): rebuild the tiles from the pack, measure the training throughput
for a few steps, size the run (epochs x crops) so that it ends inside ``--minutes``, and train
with :func:`roadx.train.fit` itself (``tiles=`` the packed tiles; the same loop, loss, schedule,
checkpoints and card as ``roadx train``), starting from ``--init``. After every epoch the last
weights are written, compact (int8 per channel), to ``--out`` so that a killed call still brings
back the newest epoch (in parts of at most 15 MiB, ``d3fnet34.eN.safetensors.000`` ...: join
them with ``cat``); the metrics table goes there too.

Usage::

    python benchmarks/gpu_finetune.py pack --out .gpu/pack            # here
    python benchmarks/gpu_finetune.py run --pack .gpu/pack --out $OUT --minutes 6   # GPU

The JPEG round trip slightly softens the images (quality 90: PSNR about 38 dB on these tiles);
the domain augmentation re-encodes crops as JPEG anyway.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

DATA = Path(os.environ.get("ROADX_DATA", HERE.parent.parent / "shared" / "data"))
MASS = ["massachusetts_cskanani", "massachusetts_riya_l209", "massachusetts_parth1620",
        "massachusetts_lorudarku"]
# GIS-layout links of the SpaceNet scenes used by the shipped weights (weights/README.md)
SPACENET_LINKS = {
    "RGB-PanSharpen_AOI_2_Vegas_img0.tif": "spacenet_apls/RGB-PanSharpen_AOI_2_Vegas_img0.tif",
    "RGB-PanSharpen_AOI_2_Vegas_img0.geojson": "spacenet_apls/AOI_2_Vegas_img0_roads_gt.geojson",
    "RGB-PanSharpen_img1447.tif": "spacenet_apls/RGB-PanSharpen_img1447.tif",
    "RGB-PanSharpen_img1447.geojson": "spacenet_apls/OSMroads_img1447.geojson",
    "road_mask_input.tif": "spacenet_solaris/road_mask_input.tif",
    "road_mask_input.geojson": "spacenet_solaris/sample_roads_for_masking.geojson",
}


def spacenet_folder(root: Path) -> Path:
    """A GIS-layout folder of links to the labelled SpaceNet scenes in ``ROADX_DATA``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, target in SPACENET_LINKS.items():
        link = root / name
        if not link.exists():
            link.symlink_to(DATA / target)
    return root


def pack(args: argparse.Namespace) -> None:
    """Decode the training and held-out tiles at 1 m and write the compact pack."""
    from PIL import Image

    from roadx.train.data import load_tiles
    from roadx.train.datasets import discover_samples, read_val_list, split_samples

    folders = [DATA / m for m in MASS] + [spacenet_folder(Path(args.spacenet_dir))]
    samples = discover_samples(folders, fmt="auto", labels=(), source_gsd_m=None)
    train, val = split_samples(samples, val_fraction=0.1, val_ids=read_val_list(args.val_list),
                               seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index, total = [], 0
    for split, group in (("train", train), ("val", val)):
        tiles, skipped = load_tiles(group, gsd_m=1.0, road_width_m=4.0,
                                    cache_dir=Path(args.cache_dir))
        assert not skipped, skipped
        for k, tile in enumerate(tiles):
            image, label = tile.image, tile.label
            side = args.max_side if split == "train" else args.val_side
            h, w = label.shape
            r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
            image, label = image[r0 : r0 + side, c0 : c0 + side], label[r0 : r0 + side, c0 : c0 + side]
            name = f"{split}{k:03d}"
            jpg, png = io.BytesIO(), io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image)).save(jpg, "JPEG", quality=args.quality)
            Image.fromarray(np.ascontiguousarray(label)).save(png, "PNG", optimize=True)
            (out / f"{name}.jpg").write_bytes(jpg.getvalue())
            (out / f"{name}.png").write_bytes(png.getvalue())
            total += len(jpg.getvalue()) + len(png.getvalue())
            index.append({
                "name": name, "split": split, "source": tile.sample.source.name,
                "tile_id": tile.sample.tile_id, "image": str(tile.sample.image.name),
                "gsd_m": tile.gsd_m, "rows": int(label.shape[0]), "cols": int(label.shape[1]),
            })
    (out / "index.json").write_text(json.dumps(index, indent=1))
    n_train = sum(e["split"] == "train" for e in index)
    print(f"packed {n_train} train + {len(index) - n_train} val tiles, {total / 2**20:.1f} MiB")


def load_pack(folder: Path) -> tuple[list, list]:
    """Rebuild (train, val) :class:`roadx.train.data.Tile` lists from a pack."""
    from PIL import Image

    from roadx.train.data import Tile
    from roadx.train.datasets import Sample

    train, val = [], []
    for entry in json.loads((folder / "index.json").read_text()):
        image = np.asarray(Image.open(folder / f"{entry['name']}.jpg").convert("RGB"))
        label = np.asarray(Image.open(folder / f"{entry['name']}.png"))
        source = Path(entry["source"])
        sample = Sample(source / entry["image"], (), "pair", entry["tile_id"], source)
        (train if entry["split"] == "train" else val).append(
            Tile(image, label, sample, entry["gsd_m"]))
    return train, val


def probe_rate(config, tiles, seconds: float) -> float:  # noqa: ANN001
    """Crops per second of the real training step (a throwaway model copy, same data path)."""
    import torch

    from roadx.models import load_checkpoint
    from roadx.runtime import choose_precision
    from roadx.train.augment import AugmentParams
    from roadx.train.data import PatchDataset
    from roadx.train.loop import optional_bands
    from roadx.train.loss import dice_bce_loss

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, card = load_checkpoint(config.init)
    model.to(device).train().to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    precision = choose_precision(config.precision, device)
    params = AugmentParams(p_sensor=config.sensor_aug, p_domain=config.domain_aug,
                           scale_jitter=config.scale_jitter)
    dataset = PatchDataset(tiles, length=10**6, crop_px=config.crop_px,
                           bands=card.band_names, optional_bands=optional_bands(card),
                           scale=card.input_scales,
                           offset=card.input_offsets, seed=99, augment_params=params,
                           min_source_share=config.min_source_share)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size,
                                         num_workers=config.workers, pin_memory=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-9)
    first_bad: list[str] = []

    def hook(name: str):  # noqa: ANN202
        def check(module, inputs, output) -> None:  # noqa: ANN001
            if not first_bad and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                first_bad.append(name)
        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    seen, start, t0 = 0, None, time.perf_counter()
    for step, (x, y, v) in enumerate(loader):
        x, y, v = (t.to(device, non_blocking=True) for t in (x, y, v))
        with precision.autocast(device):
            loss = dice_bce_loss(model(x.contiguous(memory_format=torch.channels_last)), y, v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        bad_grads = [n for n, q in model.named_parameters()
                     if q.grad is not None and not torch.isfinite(q.grad).all()]
        if first_bad or bad_grads or not torch.isfinite(loss):
            print(json.dumps({"probe_step": step, "loss": float(loss), "first_nonfinite_output":
                              first_bad[:1], "nonfinite_grads": len(bad_grads),
                              "first_grads": bad_grads[:4]}), flush=True)
            for h in handles:
                h.remove()
            return -1.0
        if step == 0:
            for h in handles:  # the hooks cost time: check the first step only... and keep
                h.remove()     # checking gradients and loss on every probe step
        opt.step()
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        elif start is not None:
            seen += len(x)
            if time.perf_counter() - start > seconds:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = seen / (time.perf_counter() - start)
    print(json.dumps({"probe_crops_per_s": round(rate, 1), "probe_s": round(time.perf_counter() - t0, 1)}),
          flush=True)
    del model, opt, loader
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def run(args: argparse.Namespace) -> None:
    """Probe, size and run the time-boxed fine-tune; write compact weights after each epoch."""
    import torch

    from roadx.models import load_checkpoint, save_checkpoint
    from roadx.train import fit
    from roadx.train.config import TrainConfig

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_tiles, val_tiles = load_pack(Path(args.pack))
    print(json.dumps({"train_tiles": len(train_tiles), "val_tiles": len(val_tiles),
                      "load_s": round(time.perf_counter() - started, 1),
                      "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}),
          flush=True)
    workers = args.workers if args.workers >= 0 else max(1, (os.cpu_count() or 2) - 2)
    base = TrainConfig(
        data=tuple(Path(s) for s in [*MASS, "spacenet"]), output=Path(args.run_dir),
        init=Path(args.init), model="d3fnet34", gsd_m=1.0, epochs=1, samples_per_epoch=1,
        crop_px=args.crop, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup,
        min_lr_ratio=0.05, val_crop_px=512, val_max_windows=48,
        min_source_share=args.min_source_share, sensor_aug=args.sensor_aug,
        domain_aug=args.domain_aug, scale_jitter=args.scale_jitter,
        synthetic_share=args.synthetic_share, device=args.device,
        precision=args.precision, grad_clip=args.grad_clip,
        workers=workers, seed=args.seed, data_license=args.data_license,
        extra={"run": "benchmarks/gpu_finetune.py (packed tiles, JPEG q%d)" % args.quality},
    )
    rate = probe_rate(base, train_tiles, args.probe_s)
    fallbacks = [
        ("math attention (no fused SDPA kernels)", lambda: [
            torch.backends.cuda.enable_flash_sdp(False),
            torch.backends.cuda.enable_mem_efficient_sdp(False),
            torch.backends.cuda.enable_cudnn_sdp(False)]),
        ("cuDNN off", lambda: setattr(torch.backends.cudnn, "enabled", False)),
        ("TF32 off", lambda: [setattr(torch.backends.cudnn, "allow_tf32", False),
                              setattr(torch.backends.cuda.matmul, "allow_tf32", False)]),
    ]
    for name, apply in fallbacks:
        if rate > 0:
            break
        apply()
        print(json.dumps({"fallback": name}), flush=True)
        rate = probe_rate(base, train_tiles, args.probe_s)
    if rate <= 0:
        print(json.dumps({"error": "non-finite training steps in every configuration"}))
        return
    remaining = args.minutes * 60 - (time.perf_counter() - started) - args.reserve_s
    per_epoch_overhead = args.epoch_overhead_s
    crops = max(args.batch, int(rate * (remaining - per_epoch_overhead * args.epochs)))
    per_epoch = max(args.batch, crops // args.epochs // args.batch * args.batch)
    config = dataclasses.replace(base, epochs=args.epochs, samples_per_epoch=per_epoch)
    print(json.dumps({"plan_epochs": args.epochs, "crops_per_epoch": per_epoch,
                      "planned_s": round(remaining, 1), "workers": workers}), flush=True)

    def on_event(event) -> None:  # noqa: ANN001
        if event.kind == "epoch_end":
            row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in event.metrics.items()}
            print(json.dumps({"epoch_end": row, "elapsed_s": round(time.perf_counter() - started, 1)}),
                  flush=True)
            model, card = load_checkpoint(Path(args.run_dir) / "last.safetensors")
            compact = Path(args.run_dir) / "last.int8.safetensors"
            save_checkpoint(compact, model, card=card, model_kwargs={}, storage="int8")
            write_parts(compact.read_bytes(), out, f"d3fnet34.e{event.epoch}.safetensors")
            for name in ("metrics.csv",):
                src = Path(args.run_dir) / name
                if src.exists():
                    (out / name).write_bytes(src.read_bytes())

    # a safety net only (the plan ends in time): SIGINT makes fit save its state and stop on
    # a step boundary; the compact weights of the last finished epoch are already in --out
    deadline = args.minutes * 60 + args.grace_s - (time.perf_counter() - started)
    timer = threading.Timer(deadline, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    try:
        result = fit(config, on_event=on_event, tiles=(train_tiles, val_tiles))
        print(json.dumps({"done_epochs": result.epochs_done, "best_epoch": result.best_epoch,
                          "best_iou": result.best_iou,
                          "total_s": round(time.perf_counter() - started, 1)}), flush=True)
    except KeyboardInterrupt as err:
        print(json.dumps({"stopped": str(err)[:300],
                          "total_s": round(time.perf_counter() - started, 1)}), flush=True)
    finally:
        timer.cancel()


PART_BYTES = 15 * 2**20  # files that come back from the GPU machine: at most 16 MiB each


def write_parts(data: bytes, folder: Path, name: str) -> list[Path]:
    """Write ``data`` as ``name.000``, ``name.001``, ... of at most 15 MiB (``cat`` joins them);
    parts of an earlier epoch are removed first, so ``folder`` holds one set."""
    for old in folder.glob("*.safetensors.[0-9][0-9][0-9]"):
        old.unlink()
    paths = []
    for k in range(math.ceil(len(data) / PART_BYTES)):
        path = folder / f"{name}.{k:03d}"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_bytes(data[k * PART_BYTES : (k + 1) * PART_BYTES])
        tmp.replace(path)
        paths.append(path)
    return paths


def main() -> None:
    """Command line: ``pack`` or ``run``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", default=".gpu/pack")
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--max-side", type=int, default=1024)
    p.add_argument("--val-side", type=int, default=768)
    p.add_argument("--val-list", default=str(HERE.parent / "weights" / "d3fnet34.val.txt"))
    # the folder must be named "spacenet": the held-out list names its tiles spacenet/<tile>
    p.add_argument("--spacenet-dir", default="/tmp/roadx-links/spacenet")
    p.add_argument("--cache-dir", default="/tmp/roadx-train-cache")
    r = sub.add_parser("run")
    r.add_argument("--pack", default=".gpu/pack")
    r.add_argument("--out", required=True)
    r.add_argument("--run-dir", default="/tmp/roadx-gpu-run")
    r.add_argument("--init", default=str(HERE.parent / "weights" / "d3fnet34.safetensors"))
    r.add_argument("--minutes", type=float, default=6.0)
    r.add_argument("--reserve-s", type=float, default=20.0)
    r.add_argument("--grace-s", type=float, default=40.0)
    r.add_argument("--epoch-overhead-s", type=float, default=12.0)
    r.add_argument("--probe-s", type=float, default=12.0)
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--crop", type=int, default=512)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--lr", type=float, default=3e-4)
    r.add_argument("--warmup", type=int, default=60)
    r.add_argument("--min-source-share", type=float, default=0.15)
    r.add_argument("--sensor-aug", type=float, default=0.3)
    r.add_argument("--domain-aug", type=float, default=0.5)
    r.add_argument("--scale-jitter", type=float, default=1.5)
    r.add_argument("--synthetic-share", type=float, default=0.0,
                   help="share of crops from roadx.train.synthetic scenes (roadx train's option)")
    r.add_argument("--workers", type=int, default=-1)
    r.add_argument("--device", default="auto")
    r.add_argument("--precision", default="fp32",
                   help="fp32: the data loader, not the GPU, limits the rate here")
    r.add_argument("--grad-clip", type=float, default=2.0)
    r.add_argument("--seed", type=int, default=2)
    r.add_argument("--quality", type=int, default=90)
    r.add_argument("--data-license", default="")
    args = parser.parse_args()
    (pack if args.cmd == "pack" else run)(args)


if __name__ == "__main__":
    main()
