"""Tiny training sets: a generated one (hostile-input and interrupt tests) and three real
Massachusetts crops (training tests)."""

from pathlib import Path

import numpy as np


def make_dataset(root: Path) -> Path:
    """Four 96 px image/mask pairs with a bright road cross (the `folders` layout)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        image = rng.integers(60, 120, (96, 96, 3), dtype=np.uint8)
        mask = np.zeros((96, 96), np.uint8)
        mask[40 + 3 * i : 48 + 3 * i, :] = 255
        mask[:, 20 + 5 * i : 26 + 5 * i] = 255
        image[mask > 0] = 200
        Image.fromarray(image).save(root / "images" / f"t{i}_0_0.png")
        Image.fromarray(mask).save(root / "masks" / f"t{i}_0_0.png")
    return root


LORUDARKU_CROPS = ("10078675_15_0_0", "10078675_15_0_1", "10228675_15_1_1")


def link_real_crops(shared_data: Path, root: Path) -> Path:
    """Three real Massachusetts crops (two tiles) as an images/ + masks/ folder of symlinks."""
    src = shared_data / "massachusetts_lorudarku"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem in LORUDARKU_CROPS:
        (root / "images" / f"{stem}.jpg").symlink_to(src / "images" / f"{stem}.jpg")
        (root / "masks" / f"{stem}.png").symlink_to(src / "masks" / f"{stem}.png")
    return root
