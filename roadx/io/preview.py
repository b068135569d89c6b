"""Quick-look PNG of a road network over its scene (``roadx predict --preview``).

The scene is read decimated (:meth:`roadx.io.raster.Scene.read_overview`, from the file's
overviews where it has them), so a preview of a 50k × 50k scene costs one small read; the
roads are drawn with Pillow on top: detected lines orange, bridged stretches (lines inferred
across gaps) cyan, both 2 px wide. Written to a temporary file and renamed into place.
"""

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from roadx.errors import OutputError
from roadx.fs import check_output_path, discard, partial_path, place

PREVIEW_SUFFIXES = (".png",)
ROAD_RGB = (255, 140, 0)
BRIDGED_RGB = (0, 220, 255)


def check_preview_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Validate a preview output path (``.png``, writable folder, no clash).

    Raises:
        roadx.errors.OutputError: not ``.png`` or the folder is missing or unwritable.
        roadx.errors.OutputExistsError: the file exists and ``overwrite`` is false.
    """
    return check_output_path(path, overwrite=overwrite, suffixes=PREVIEW_SUFFIXES)


def render_preview(
    image: np.ndarray,
    lines: Iterable[tuple[np.ndarray, bool]],
    to_pixel: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Draw road lines over an RGB image.

    Args:
        image: ``(3, h, w)`` uint8 RGB (a decimated scene).
        lines: ``(coords, bridged)`` per line; ``coords`` is ``(n, 2)`` float x/y in the
            network's coordinates (CRS units, or pixel space).
        to_pixel: maps ``(n, 2)`` x/y to ``(n, 2)`` column/row of ``image`` (float pixels).

    Returns:
        ``(h, w, 3)`` uint8 RGB with the lines drawn.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(np.moveaxis(image[:3], 0, -1)))
    draw = ImageDraw.Draw(canvas)
    for coords, bridged in sorted(lines, key=lambda item: item[1]):  # bridges on top
        px = to_pixel(np.asarray(coords, dtype=np.float64))
        if len(px) >= 2:
            draw.line([tuple(p) for p in px.tolist()], fill=BRIDGED_RGB if bridged else ROAD_RGB,
                      width=2, joint="curve")
    return np.asarray(canvas)


def write_png(path: Path, rgb: np.ndarray, *, overwrite: bool) -> Path:
    """Write ``(h, w, 3)`` uint8 RGB as PNG through a temporary file.

    Raises:
        roadx.errors.OutputError: the file cannot be written (the message names it).
        roadx.errors.OutputExistsError: the file appeared meanwhile and ``overwrite`` is false.
    """
    from PIL import Image

    tmp = partial_path(path)
    try:
        Image.fromarray(rgb).save(tmp, format="PNG", optimize=True)
        place(tmp, path, overwrite=overwrite)
    except OSError as err:
        discard(tmp)
        raise OutputError(f"{path}: cannot write the preview ({err.strerror or err})") from None
    except BaseException:
        discard(tmp)
        raise
    return path
