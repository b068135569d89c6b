"""Streaming inference: tiles -> model (+ TTA) -> stitched full-width probability bands.

Layer L2: uses :mod:`roadx.models` (the model and its card), :mod:`roadx.tiling` and
torch. Reading and writing rasters is the caller's job (``read`` callable in, bands out).

Usage (``scene`` from :func:`roadx.io.open_scene`, ``writer`` a ``ProbabilityWriter``)::

    grid = TileGrid(scene.height, scene.width, tile_px=1024, overlap_px=256)
    for window, prob in predict_scene(scene.read_window, grid, model, card,
                                      PredictOptions(tta="flip")):
        writer.write(window, prob)  # (h, width) float32 band, NaN = nodata
"""

from roadx.runtime.device import resolve_device
from roadx.predict.engine import PredictOptions, ReadFn, predict_scene
from roadx.predict.stitch import Band, BlendMode, Stitcher
from roadx.predict.tta import Dihedral, TtaMode, augment, merge, tta_views

__all__ = [
    "Band",
    "BlendMode",
    "Dihedral",
    "PredictOptions",
    "ReadFn",
    "Stitcher",
    "TtaMode",
    "augment",
    "merge",
    "predict_scene",
    "resolve_device",
    "tta_views",
]
