"""Evaluation metrics: pixel scores, relaxed scores, centreline CCQ, APLS, junction F1.

Importing this package loads numpy only. The vector and graph metrics (shapely, networkx,
scipy) live in submodules imported on demand: ``roadx.metrics.ccq``, ``roadx.metrics.graph``,
``roadx.metrics.apls``, ``roadx.metrics.junctions``.
"""

from roadx.metrics.pixel import (
    Confusion,
    PixelReport,
    PixelScores,
    RelaxedCounts,
    confusion,
    per_image_mean,
    pixel_report,
    relaxed_scores,
)

__all__ = [
    "Confusion",
    "PixelReport",
    "PixelScores",
    "RelaxedCounts",
    "confusion",
    "per_image_mean",
    "pixel_report",
    "relaxed_scores",
]
