"""A PNG picture of a comparison: ground truth, prediction, missed and spurious roads.

Drawn with matplotlib's Agg backend (imported inside the function, so importing this module
costs nothing and no display is needed). Geometries and the optional image underlay must be
in the same coordinate system.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from roadx.metrics.graph import explode_lines

# Colours of the layers (colour-blind friendly where it matters: missed vs spurious).
COLORS = {
    "ground truth": "#f0f0f0",
    "prediction": "#1f78ff",
    "missed": "#e41a1c",
    "spurious": "#ff9f00",
    "true positive": "#33cc33",
}

# (line width in points, z-order): GT wide underneath, prediction thin on top of it,
# missed / spurious thick above both.
_STYLE = {
    "ground truth": (3.0, 2.0),
    "prediction": (1.2, 2.5),
    "missed": (2.4, 3.0),
    "spurious": (2.4, 3.0),
}


@dataclass(frozen=True)
class Underlay:
    """An RGB image to draw below the lines.

    Attributes:
        rgb: (h, w, 3) uint8 image.
        extent: (left, right, bottom, top) of the image in the figure's coordinates.
    """

    rgb: np.ndarray
    extent: tuple[float, float, float, float]


def mask_overlay(pred: np.ndarray, gt: np.ndarray, *, max_px: int = 1600) -> np.ndarray:
    """Colour TP / FP / FN pixels of two (H, W) bool masks as an RGBA overlay.

    Returns:
        (h, w, 4) float32 RGBA in [0, 1], decimated by striding to at most ``max_px`` a side;
        true positives green, false positives ("spurious") orange, false negatives ("missed")
        red, the rest transparent.
    """
    step = max(1, -(-max(pred.shape) // max_px))
    p, g = pred[::step, ::step], gt[::step, ::step]
    rgba = np.zeros((*p.shape, 4), dtype=np.float32)
    for mask, name in ((p & g, "true positive"), (p & ~g, "spurious"), (~p & g, "missed")):
        hexa = COLORS[name].lstrip("#")
        rgba[mask] = (*(int(hexa[i:i + 2], 16) / 255 for i in (0, 2, 4)), 0.9)
    return rgba


def _segments(geoms: Sequence[BaseGeometry]) -> list[np.ndarray]:
    return [np.asarray(line.coords)[:, :2] for line in explode_lines(geoms)]


def plot_comparison(
    path: str | Path,
    *,
    layers: dict[str, Sequence[BaseGeometry]],
    underlay: Underlay | None = None,
    overlay_rgba: np.ndarray | None = None,
    title: str = "",
    aspect: float = 1.0,
    dpi: int = 150,
) -> Path:
    """Draw named line layers (and an optional image / mask overlay) into a PNG.

    Layers named as keys of :data:`COLORS` get those colours ("ground truth", "prediction",
    "missed", "spurious"); the ground truth is drawn wide underneath the prediction, missed
    and spurious thick on top.

    Args:
        path: output PNG path (overwritten).
        layers: layer name -> lines, in the figure's coordinates.
        underlay: image drawn first, if any.
        overlay_rgba: (h, w, 4) float RGBA in [0, 1] drawn over the underlay's extent (e.g.
            TP / FP / FN pixels), on the underlay's extent, else in pixel coordinates.
        title: figure title.
        aspect: y/x display scale (``1 / cos(lat)`` for lon/lat coordinates).
        dpi: resolution of the PNG.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(8, 8), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor("#202020" if underlay is None else "white")
    extent: tuple[float, float, float, float] | None = None
    if underlay is not None:
        extent = underlay.extent
        ax.imshow(underlay.rgb, extent=extent, interpolation="bilinear")
    if overlay_rgba is not None:
        if extent is None:  # pixel coordinates, rows down
            extent = (0.0, float(overlay_rgba.shape[1]), float(overlay_rgba.shape[0]), 0.0)
        ax.imshow(overlay_rgba, extent=extent, interpolation="nearest")
    handles = []
    for name, geoms in layers.items():
        color = COLORS.get(name, "#888888")
        width, zorder = _STYLE.get(name, (1.2, 2.0))
        segs = _segments(geoms)
        if segs:
            collection = LineCollection(segs, colors=color, linewidths=width, zorder=zorder)
            ax.add_collection(collection)
        handles.append(Line2D([], [], color=color, linewidth=width, label=f"{name} ({len(segs)})"))
    if overlay_rgba is not None:
        for name in ("true positive", "spurious", "missed"):
            handles.append(Line2D([], [], color=COLORS[name], linewidth=6, label=f"{name} px"))
    bounds = [shapely.total_bounds(list(g)) for g in layers.values() if len(g)]
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    elif bounds:
        b = np.array(bounds)
        ax.set_xlim(np.nanmin(b[:, 0]), np.nanmax(b[:, 2]))
        ax.set_ylim(np.nanmin(b[:, 1]), np.nanmax(b[:, 3]))
    ax.set_aspect(aspect)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path
