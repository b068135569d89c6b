"""A tiny generated training set shared by the hostile-input and interrupt tests."""

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
