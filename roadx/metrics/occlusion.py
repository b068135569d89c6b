"""Synthetic occlusion gaps in road masks, to measure how a vectoriser copes with them.

Trees, shadows and cars hide a road for a few metres; a segmentation model then reports the
road faintly (a probability below the threshold) and a vectoriser that does not bridge the gap
splits the network there. :func:`occlusion_points` draws seeded points along centrelines and
:func:`occluded_probability` turns a ground-truth road mask into a probability map with a faint
stretch of a given length across the whole road at each point. Used by the topology benchmark
(``benchmarks/eval_topology.py``) and the gap-bridging tests.

Coordinates are pixel coordinates of the mask: ``x = col``, ``y = row``, pixel centres at
``+0.5`` (what :func:`roadx.vectorize.vectorize` writes with ``transform=None``).
"""

from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString

ROAD_P = 0.95
BACKGROUND_P = 0.02
FAINT_P = 0.2  # below the default low threshold 0.3: a road seen faintly, as under a canopy


@dataclass(frozen=True, slots=True)
class Occlusion:
    """Centre ``(x, y)`` in pixel coordinates and unit road direction ``(tx, ty)``."""

    x: float
    y: float
    tx: float
    ty: float


def occlusion_points(
    lines_px: list[LineString],
    *,
    gsd_m: float,
    shape: tuple[int, int],
    per_km: float,
    rng: np.random.Generator,
    spacing_m: float = 40.0,
    from_end_m: float = 15.0,
    from_edge_m: float = 20.0,
) -> list[Occlusion]:
    """Draw occlusion centres uniformly by length along centrelines (seeded).

    Args:
        lines_px: centreline LineStrings in pixel coordinates.
        gsd_m: metres per pixel (square pixels).
        shape: ``(H, W)`` of the raster in pixels.
        per_km: occlusions per km of centreline (rounded).
        rng: the random generator (pass a seeded one for reproducible runs).
        spacing_m: least distance between two occlusion centres, metres.
        from_end_m: least distance from a line's ends (junctions, dead ends), metres.
        from_edge_m: least distance from the raster edge, metres.

    Returns:
        Up to ``round(per_km * km)`` occlusions (fewer when the constraints leave no room).
    """
    lengths_m = np.array([line.length * gsd_m for line in lines_px])
    if lengths_m.sum() == 0:
        return []
    wanted = round(float(per_km * lengths_m.sum()) / 1000.0)
    chosen: list[Occlusion] = []
    h, w = shape
    edge_px = from_edge_m / gsd_m
    for _ in range(50 * max(wanted, 1)):
        if len(chosen) >= wanted:
            break
        k = int(rng.choice(len(lines_px), p=lengths_m / lengths_m.sum()))
        line, length_m = lines_px[k], lengths_m[k]
        if length_m < 2 * from_end_m:
            continue
        at_m = rng.uniform(from_end_m, length_m - from_end_m)
        pt = line.interpolate(at_m / gsd_m)
        if not (edge_px <= pt.x <= w - edge_px and edge_px <= pt.y <= h - edge_px):
            continue
        if any(np.hypot(o.x - pt.x, o.y - pt.y) * gsd_m < spacing_m for o in chosen):
            continue
        a = line.interpolate(max(at_m - 3.0, 0.0) / gsd_m)
        b = line.interpolate(min(at_m + 3.0, length_m) / gsd_m)
        norm = float(np.hypot(b.x - a.x, b.y - a.y))
        if norm == 0:
            continue
        chosen.append(Occlusion(pt.x, pt.y, (b.x - a.x) / norm, (b.y - a.y) / norm))
    return chosen


def occluded_probability(
    mask: np.ndarray,
    occlusions: list[Occlusion],
    *,
    gap_m: float,
    gsd_m: float,
    half_width_m: float = 12.0,
) -> np.ndarray:
    """Road mask → probability map with faint stretches at the occlusions.

    Args:
        mask: ``(H, W)`` bool road mask.
        occlusions: from :func:`occlusion_points`.
        gap_m: length of each faint stretch along the road, metres.
        gsd_m: metres per pixel.
        half_width_m: the stretch covers road pixels up to this far from the centre across
            the road (the whole width of any road narrower than twice this).

    Returns:
        ``(H, W)`` float32: ``ROAD_P`` on road, ``BACKGROUND_P`` elsewhere and ``FAINT_P``
        on the occluded road pixels.
    """
    prob = np.where(mask, ROAD_P, BACKGROUND_P).astype(np.float32)
    reach = int(np.ceil((gap_m / 2 + half_width_m) / gsd_m)) + 1
    for o in occlusions:
        c, r = int(o.x), int(o.y)
        r0, r1 = max(r - reach, 0), min(r + reach + 1, mask.shape[0])
        c0, c1 = max(c - reach, 0), min(c + reach + 1, mask.shape[1])
        yy, xx = np.mgrid[r0:r1, c0:c1]
        dx, dy = (xx + 0.5 - o.x) * gsd_m, (yy + 0.5 - o.y) * gsd_m
        along = np.abs(dx * o.tx + dy * o.ty)
        across = np.abs(dx * o.ty - dy * o.tx)
        hit = (along <= gap_m / 2) & (across <= half_width_m) & mask[r0:r1, c0:c1]
        prob[r0:r1, c0:c1][hit] = FAINT_P
    return prob
