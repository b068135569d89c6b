"""Band roles and the 8-bit stretch: one core for inference and training.

Inference (:func:`roadx.io.open_scene`) and training (:mod:`roadx.io.samples`) both turn a
raster's bands into the uint8 values a model card's ``scale``/``offset`` apply to. They must
agree exactly, or a model meets other numbers at inference than it was trained on; so both
call these functions:

* :func:`default_bands` — which source bands are R, G, B (or one panchromatic band) and which
  is near-infrared: the colour interpretation when it names R, G and B (NIR: the first other
  image band), else the NAIP/PlanetScope order R, G, B, NIR; alpha bands are never image
  bands (they are validity masks).
* :func:`stretch_limits` / :func:`stretch_to_uint8` — non-uint8 bands are mapped to 0..255
  by a **per-band** 2–98 % percentile stretch over the band's valid pixels, computed once for
  the whole scene (never per window or crop: that would put seams between tiles).

References:
    CRESI ``create_8bit_images`` (2–98 % percentile stretch to 8 bit, per band);
    NAIP and PlanetScope 4-band products (band order R, G, B, NIR).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.enums import ColorInterp

STRETCH_PERCENTILES = (2.0, 98.0)
"""Lower and upper percentile (%) of a band's valid values mapped to 0 and 255."""


@dataclass(frozen=True, slots=True)
class SourceBands:
    """The image bands of a raster, by role (1-based band indexes).

    Attributes:
        colour: ``(R, G, B)`` band indexes, ``(P,)`` for a single panchromatic/grey band,
            or ``()`` when the raster has no usable colour bands (two image bands, or only
            alpha).
        nir: the near-infrared band, or None (3 or fewer image bands).
        image: every non-alpha band, in file order.
    """

    colour: tuple[int, ...]
    nir: int | None
    image: tuple[int, ...]


def default_bands(colorinterp: Sequence[ColorInterp]) -> SourceBands:
    """Pick a raster's R, G, B (or panchromatic) and NIR bands from its colour interpretation.

    Args:
        colorinterp: one :class:`rasterio.enums.ColorInterp` per band (``src.colorinterp``).

    Returns:
        The :class:`SourceBands`: R,G,B by interpretation when all three are named (NIR: the
        first other image band); else the first three image bands as R,G,B and the fourth as
        NIR (NAIP/PlanetScope order); one image band is panchromatic; two image bands give
        no colour bands.
    """
    image = tuple(i + 1 for i, c in enumerate(colorinterp) if c != ColorInterp.alpha)
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in colorinterp for c in rgb):
        colour = tuple(list(colorinterp).index(c) + 1 for c in rgb)
        others = [b for b in image if b not in colour]
        return SourceBands(colour, others[0] if others else None, image)
    if len(image) >= 3:
        return SourceBands(image[:3], image[3] if len(image) > 3 else None, image)
    if len(image) == 1:
        return SourceBands(image, None, image)
    return SourceBands((), None, image)


def stretch_limits(values: np.ndarray) -> tuple[float, float]:
    """The 2–98 % stretch limits of one band.

    Args:
        values: the band's valid values, any shape and numeric dtype (NaN must be removed).

    Returns:
        ``(lo, hi)`` in source units with ``hi > lo`` (``hi = lo + 1`` for a constant band).

    Raises:
        ValueError: ``values`` is empty.
    """
    if values.size == 0:
        raise ValueError("no valid values to compute a stretch from")
    lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), STRETCH_PERCENTILES))
    return lo, hi if hi > lo else lo + 1.0


def stretch_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map source values to uint8: ``lo`` → 0, ``hi`` → 255, linear, clipped, rounded.

    Args:
        values: any shape, numeric dtype; NaN maps to 0, +inf to 255.
        lo, hi: limits from :func:`stretch_limits`.

    Returns:
        uint8 array of the same shape.
    """
    scaled = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
