#!/usr/bin/env python3
"""Generate roadx's synthetic quick-start scene: an aerial-looking GeoTIFF and its road centrelines.

Everything is procedural (a hand-drawn street plan, random houses, cars and trees, spectral noise
for grass and soil); no pixel of real imagery is used, so the output may be shared freely. The
scene imitates a ~1 m summer orthophoto of a New England suburb: a curved arterial with markings,
residential streets with sidewalks, a cul-de-sac, T- and 4-way junctions, driveways, a strip-mall
parking lot, woods and a mown field, lit by a sun in the south-south-east.

Outputs (in ``OUT_DIR``, default ``examples/data``, which git ignores):

* ``synthetic_scene.tif``: RGB uint8 GeoTIFF, EPSG:32619 (UTM 19N, near Boston), top-left corner
  at E 330000 m, N 4690000 m, ``--gsd`` m/px, tiled 256 px, DEFLATE; tags ``SYNTHETIC=yes`` and
  ``DESCRIPTION`` (also written as the TIFF ImageDescription).
* ``synthetic_centrelines.geojson``: road centrelines, RFC 7946 lon/lat (EPSG:4326).
* ``synthetic_centrelines.gpkg``: the same lines in EPSG:32619 (layer ``centrelines``).
  Attributes: ``name``, ``kind`` (arterial / residential / cul-de-sac / lane), ``width_m``.

Usage::

    python examples/make_example_scene.py [OUT_DIR] [--size 1024] [--gsd 1.0] [--seed 0]

The same ``--size/--gsd/--seed`` always give the same pixels. The street plan is defined in
fractions of the scene extent (``size * gsd`` metres); widths and object sizes are in metres.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from scipy.interpolate import make_interp_spline
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import substring

from roadx.train.synthetic import coverage, fbm  # shared with the training generator

ORIGIN_E_M, ORIGIN_N_M = 330000.0, 4690000.0  # top-left corner, UTM 19N (Boston area)
CRS = "EPSG:32619"
DESCRIPTION = "roadx synthetic example scene - not real imagery"
SUN_AZIMUTH_DEG, SUN_ELEVATION_DEG = 150.0, 58.0  # azimuth clockwise from north
_AZ, _EL = np.radians(SUN_AZIMUTH_DEG), np.radians(SUN_ELEVATION_DEG)
SUN_XY = np.array([np.sin(_AZ), -np.cos(_AZ)])  # towards the sun, image frame (x east, y south)
SHADOW_M_PER_M = 1.0 / np.tan(_EL)  # shadow length per metre of height
SHADOW_TINT = np.array([0.42, 0.46, 0.56], np.float32)  # shade is darker and bluish
ROOFS = [(190, 188, 182), (146, 146, 148), (100, 101, 106), (76, 78, 84), (124, 96, 84),
         (156, 128, 106), (158, 106, 88), (108, 90, 80), (204, 202, 196), (116, 122, 130)]
PAINTS = [(222, 222, 218), (34, 35, 38), (170, 172, 176), (110, 112, 116), (146, 36, 34),
          (42, 62, 118), (222, 222, 218), (60, 60, 64)]
GREENS = [(74, 98, 56), (86, 106, 60), (64, 86, 50), (98, 112, 66), (56, 74, 50), (80, 94, 52),
          (106, 118, 70)]
RGB = tuple[float, float, float]
Patch = tuple[tuple[slice, slice], np.ndarray, np.ndarray]  # slices, x (1, w) and y (h, 1) in m
Field = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # rows, cols, dist (m), points


@dataclass(frozen=True)
class Road:
    """A street: centreline in local metres (x east, y south of the top-left corner)."""

    name: str
    kind: str
    width_m: float
    line: LineString
    colour: RGB
    sidewalk: bool = False
    turn_radius_m: float = 0.0  # > 0: a cul-de-sac turning circle at the end of the line


@dataclass(frozen=True)
class Box:
    """An oriented rectangle (roof, car, driveway, pool) in local metres; angle from +x, rad."""

    cx_m: float
    cy_m: float
    length_m: float
    width_m: float
    angle: float
    colour: RGB
    roof: str = "flat"  # "flat", "gable" (ridge along the length) or "hip"
    height_m: float = 0.0  # casts a shadow when > 0

    def polygon(self) -> Polygon:
        """The footprint as a shapely polygon (local metres)."""
        p = box(-self.length_m / 2, -self.width_m / 2, self.length_m / 2, self.width_m / 2)
        p = shapely.affinity.rotate(p, self.angle, use_radians=True, origin=(0, 0))
        return shapely.affinity.translate(p, self.cx_m, self.cy_m)


def _spline(points: list[tuple[float, float]], s: float) -> LineString:
    p = np.asarray(points) * s
    t = np.r_[0.0, np.cumsum(np.hypot(*np.diff(p, axis=0).T))]
    line = LineString(make_interp_spline(t, p, k=3)(np.linspace(0, t[-1], 300)))
    line = line.intersection(box(0, 0, s, s))
    return max(getattr(line, "geoms", [line]), key=lambda g: g.length)


def _until(a: tuple[float, float], b: tuple[float, float], target: LineString) -> LineString:
    """The segment from ``a`` towards ``b`` up to where it first meets ``target``."""
    hit = LineString([a, b]).intersection(target)
    end = min(getattr(hit, "geoms", [hit]), key=lambda p: p.distance(Point(a)))
    return LineString([a, (end.x, end.y)])


def layout_roads(s: float) -> list[Road]:
    """The street plan of a scene ``s`` metres wide (drawing order: arterial last)."""
    art = _spline([(-0.02, 0.40), (0.22, 0.43), (0.45, 0.52), (0.60, 0.65), (0.70, 0.82),
                   (0.77, 1.02)], s)
    elm = _until((0.30 * s, 0.0), (0.30 * s, s), art)
    j = np.asarray(elm.coords[-1]) / s
    cedar = _spline([tuple(j), (j[0] - 0.005, j[1] + 0.10), (0.26, 0.72), (0.21, 0.88),
                     (0.20, 1.02)], s)
    maple = _until((0.71 * s, 0.0), (0.63 * s, s), art)
    oak = LineString([(0.0, 0.16 * s), (s, 0.195 * s)])
    on_maple = maple.interpolate(maple.project(Point(0.7 * s, 0.43 * s)))
    birch = LineString([on_maple, (0.89 * s, 0.45 * s)])
    on_elm = elm.interpolate(elm.project(Point(0.3 * s, 0.31 * s)))
    pine = LineString([on_elm, (0.07 * s, 0.32 * s)])
    walnut = _spline([(on_elm.x / s, on_elm.y / s), (0.40, 0.275), (0.52, 0.29), (0.62, 0.33),
                      (0.75, 0.34)], s)
    walnut = substring(walnut, 0.0, walnut.project(walnut.intersection(maple)))
    old, worn = (128.0, 127.0, 126.0), (138.0, 134.0, 128.0)
    return [
        Road("Pine Way", "lane", 5.0, pine, worn),
        Road("Walnut Drive", "residential", 7.0, walnut, (122.0, 121.0, 121.0)),
        Road("Birch Court", "cul-de-sac", 6.5, birch, old, turn_radius_m=11.0),
        Road("Cedar Lane", "residential", 7.0, cedar, old),
        Road("Oak Street", "residential", 8.0, oak, (118.0, 118.0, 119.0), sidewalk=True),
        Road("Maple Street", "residential", 8.0, maple, old, sidewalk=True),
        Road("Elm Street", "residential", 9.0, elm, (115.0, 116.0, 118.0), sidewalk=True),
        Road("Harbor Avenue", "arterial", 14.0, art, (100.0, 101.0, 104.0), sidewalk=True),
    ]


class Canvas:
    """A float32 RGB image (H, W, 3) in 0..255 with painters that take local metres."""

    def __init__(self, size_px: int, gsd_m: float, rng: np.random.Generator) -> None:
        self.gsd, self.n = gsd_m, size_px
        self.img = np.zeros((size_px, size_px, 3), np.float32)
        self.shadow = np.zeros((size_px, size_px), np.float32)  # cast-shadow strength, 0..1
        self.grain = fbm((size_px, size_px), rng, 3.0, gsd_m, 0.7)  # roof and foliage texture

    def patch(self, x0: float, y0: float, x1: float, y1: float) -> Patch | None:
        """Slices and pixel-centre coordinates (m) of a bounding box; None when off the scene."""
        c0, r0 = max(int(x0 / self.gsd), 0), max(int(y0 / self.gsd), 0)
        c1 = min(int(np.ceil(x1 / self.gsd)), self.n)
        r1 = min(int(np.ceil(y1 / self.gsd)), self.n)
        if c0 >= c1 or r0 >= r1:
            return None
        xs = ((np.arange(c0, c1) + 0.5) * self.gsd)[None, :]
        ys = ((np.arange(r0, r1) + 0.5) * self.gsd)[:, None]
        return (slice(r0, r1), slice(c0, c1)), xs, ys

    def box_alpha(self, b: Box, xs: np.ndarray, ys: np.ndarray, dx: float = 0.0,
                  dy: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coverage (h, w) of box ``b`` moved by (dx, dy) m, and pixel coordinates u, v in it."""
        ca, sa = np.cos(b.angle), np.sin(b.angle)
        x, y = xs - b.cx_m - dx, ys - b.cy_m - dy
        u, v = x * ca + y * sa, -x * sa + y * ca
        return coverage(u, b.length_m / 2, self.gsd) * coverage(v, b.width_m / 2, self.gsd), u, v

    def draw_box(self, b: Box, shade_k: float = 0.4) -> None:
        """Paint a rectangle; pitched roofs get facets lit by the sun."""
        r = np.hypot(b.length_m, b.width_m) / 2 + self.gsd
        p = self.patch(b.cx_m - r, b.cy_m - r, b.cx_m + r, b.cy_m + r)
        if p is None:
            return
        sl, xs, ys = p
        a, u, v = self.box_alpha(b, xs, ys)
        shade = 1.0 + 0.04 * self.grain[sl]
        if b.roof != "flat":
            fu, fv = np.zeros_like(a), np.sign(v)
            if b.roof == "hip":
                end = (b.length_m / 2 - np.abs(u)) < (b.width_m / 2 - np.abs(v))
                fu, fv = np.where(end, np.sign(u), 0.0), np.where(end, 0.0, fv)
            ca, sa = np.cos(b.angle), np.sin(b.angle)
            sun = (fu * ca - fv * sa) * SUN_XY[0] + (fu * sa + fv * ca) * SUN_XY[1]
            shade = shade * (1.0 + shade_k * sun)
        a, colour = a[..., None], np.asarray(b.colour, np.float32) * shade[..., None]
        self.img[sl] = self.img[sl] * (1 - a) + colour * a

    def cast_box_shadow(self, b: Box) -> None:
        """Add the shadow of a box of height ``b.height_m`` to the shadow map."""
        off = -SUN_XY * b.height_m * SHADOW_M_PER_M
        r = np.hypot(b.length_m, b.width_m) / 2 + self.gsd
        p = self.patch(b.cx_m + min(off[0], 0) - r, b.cy_m + min(off[1], 0) - r,
                       b.cx_m + max(off[0], 0) + r, b.cy_m + max(off[1], 0) + r)
        if p is None:
            return
        sl, xs, ys = p
        steps = np.linspace(0, 1, max(2, int(np.hypot(*off) / self.gsd) + 2))
        s = np.max([self.box_alpha(b, xs, ys, *(off * k))[0] for k in steps], axis=0)
        self.shadow[sl] = np.maximum(self.shadow[sl], s)

    def _stamps(self, x: np.ndarray, y: np.ndarray, reach_m: float) -> tuple[np.ndarray, ...]:
        """Square stamps around points: rows, cols, dx, dy (m) and in-scene mask, (N, K, K)."""
        half = int(np.ceil(reach_m / self.gsd)) + 1
        k = np.arange(-half, half + 1)
        ci = np.floor(x / self.gsd).astype(np.int64)[:, None, None] + k[None, None, :]
        ri = np.floor(y / self.gsd).astype(np.int64)[:, None, None] + k[None, :, None]
        ri, ci = np.broadcast_arrays(ri, ci)
        dx = (ci + 0.5) * self.gsd - x[:, None, None]
        dy = (ri + 0.5) * self.gsd - y[:, None, None]
        ok = (ri >= 0) & (ri < self.n) & (ci >= 0) & (ci < self.n)
        return np.clip(ri, 0, self.n - 1), np.clip(ci, 0, self.n - 1), dx, dy, ok

    def cast_tree_shadows(self, trees: np.ndarray) -> np.ndarray:
        """Shadow map (H, W) float32 in 0..1 of trees (N, 9): x, y, radius, height (m), ...."""
        shadow = np.zeros_like(self.shadow)
        if len(trees) == 0:
            return shadow
        for k in (0.35, 0.55, 0.75, 0.9):  # the crown fills the upper part of the tree
            off = -SUN_XY[None, :] * trees[:, 3:4] * k * SHADOW_M_PER_M
            ri, ci, dx, dy, ok = self._stamps(trees[:, 0] + off[:, 0], trees[:, 1] + off[:, 1],
                                              trees[:, 2].max())
            a = coverage(np.hypot(dx, dy), trees[:, 2, None, None] * 0.95, self.gsd)
            m = ok & (a > 0)
            np.maximum.at(shadow.reshape(-1), (ri * self.n + ci)[m], 0.85 * a[m])
        return shadow

    def draw_trees(self, trees: np.ndarray, zbuf: np.ndarray) -> None:
        """Paint crowns with a z-buffer (taller crown wins); ``zbuf`` (H, W) float32 in m."""
        for chunk in np.array_split(trees, max(1, len(trees) // 1500)) if len(trees) else []:
            x, y, rad, h = (chunk[:, i, None, None] for i in range(4))
            ri, ci, dx, dy, ok = self._stamps(chunk[:, 0], chunk[:, 1], chunk[:, 2].max() * 1.2)
            th = np.arctan2(dy, dx)
            rad = rad * (1 + chunk[:, 7, None, None] * np.sin(3 * th + chunk[:, 8, None, None])
                         + 0.05 * np.sin(5 * th + 2 * chunk[:, 8, None, None]))
            rr = np.hypot(dx, dy)
            a = np.clip((rad - rr) / self.gsd + 0.5, 0.0, 1.0)
            z = np.sqrt(np.clip(1.0 - (rr / rad) ** 2, 0.0, 1.0))
            lit = (dx * SUN_XY[0] + dy * SUN_XY[1]) / rad * np.cos(_EL) + z * np.sin(_EL)
            grain = np.clip(1 + 0.22 * self.grain[ri, ci], 0.5, 1.5)
            light = (0.5 + 0.7 * np.clip(lit, 0, 1)) * grain
            elev = h - rad * (1 - z)
            m = ok & (a > 0)
            idx, e = (ri * self.n + ci)[m], elev[m]
            order = np.lexsort((e, idx))
            top = order[np.r_[idx[order][1:] != idx[order][:-1], True]]  # highest crown per pixel
            top = top[e[top] > zbuf.reshape(-1)[idx[top]]]
            col = (chunk[:, None, None, 4:7] * light[..., None])[m][top]
            am = a[m][top, None]
            flat = self.img.reshape(-1, 3)
            flat[idx[top]] = flat[idx[top]] * (1 - am) + col * am
            zbuf.reshape(-1)[idx[top]] = e[top]


def road_fields(road: Road, shape: tuple[int, int], gsd: float, reach_m: float) -> Field:
    """Pixels within ``reach_m`` of a road: rows, cols, distance (m) to it and their points."""
    zone = road.line.buffer(reach_m + road.turn_radius_m)
    mask = rasterio.features.rasterize([(zone, 1)], out_shape=shape, transform=Affine.scale(gsd))
    rows, cols = np.nonzero(mask)
    pts = shapely.points((cols + 0.5) * gsd, (rows + 0.5) * gsd)
    dist = shapely.distance(road.line, pts)
    if road.turn_radius_m > 0:
        end = Point(road.line.coords[-1])
        dist = np.minimum(dist, shapely.distance(end, pts) - road.turn_radius_m + road.width_m / 2)
    return rows, cols, dist.astype(np.float32), pts


def place_houses(roads: list[Road], s: float, keep_out: shapely.Geometry,
                 rng: np.random.Generator) -> tuple[list, list, list, list, list]:
    """Houses (with garages) along the streets.

    Returns:
        Roof boxes, footprint polygons, driveway boxes, pool boxes and backyard spots (x, y) for
        trees, all in local metres.
    """
    streets = shapely.union_all([r.line.buffer(r.width_m / 2 + (4.5 if r.sidewalk else 2.5))
                                 for r in roads] + [Point(r.line.coords[-1]).buffer(
                                     r.turn_radius_m + 3) for r in roads if r.turn_radius_m])
    roofs: list[Box] = []
    fps: list[Polygon] = []
    drives: list[Box] = []
    pools: list[Box] = []
    yards: list[tuple[float, float]] = []
    for road in (r for r in roads if r.kind != "arterial"):
        ln = road.line
        for side in (-1.0, 1.0):
            t = rng.uniform(3, 14)
            while t < ln.length - 5:
                p0, p1, p = ln.interpolate(t - 1), ln.interpolate(t + 1), ln.interpolate(t)
                tx, ty = (p1.x - p0.x) / 2, (p1.y - p0.y) / 2
                nx, ny = -ty * side, tx * side  # unit vector away from the street
                length, width = rng.uniform(11, 18), rng.uniform(8, 12)
                front = road.width_m / 2 + rng.uniform(7, 13)  # centreline to the house front
                ang = float(np.arctan2(ty, tx) + rng.normal(0, 0.03))
                cx, cy = p.x + nx * (front + width / 2), p.y + ny * (front + width / 2)
                colour = tuple(float(c) * rng.uniform(0.93, 1.07)
                               for c in ROOFS[rng.integers(len(ROOFS))])
                parts = [Box(cx, cy, length, width, ang, colour,
                             "hip" if rng.random() < 0.4 else "gable", rng.uniform(5, 8))]
                su = 1.0 if rng.random() < 0.5 else -1.0
                g = rng.uniform(6.0, 7.5) if rng.random() < 0.45 else 0.0
                if g:  # attached garage, flush with the front, ridge across the house
                    du = su * (length / 2 + g / 2 - 0.3)
                    parts.append(Box(cx + du * tx - nx * (width - g) / 2,
                                     cy + du * ty - ny * (width - g) / 2,
                                     g, g, ang + np.pi / 2, colour, "gable", 4.0))
                else:
                    du = su * (length / 2 - 2.5)
                fp = shapely.union_all([b.polygon() for b in parts])
                if (0 <= cx < s and 0 <= cy < s and not fp.intersects(streets)
                        and not fp.intersects(keep_out)
                        and not any(fp.distance(f) < 4 for f in fps[-60:])):
                    roofs += parts
                    fps.append(fp)
                    concrete = rng.random() < 0.6
                    mx, my = p.x + du * tx + nx * front / 2, p.y + du * ty + ny * front / 2
                    drives.append(Box(mx, my, front + 0.5, g * 0.8 if g else rng.uniform(3.2, 4.2),
                                      float(np.arctan2(ny, nx)),
                                      (170, 166, 158) if concrete else (108, 108, 110)))
                    for _ in range(rng.integers(0, 5)):
                        back, along = width / 2 + rng.uniform(5, 18), rng.uniform(-1, 1) * length
                        yards.append((cx + nx * back + tx * along, cy + ny * back + ty * along))
                    if rng.random() < 0.18:
                        back = width / 2 + 7
                        pools.append(Box(cx + nx * back, cy + ny * back, 8.0, 4.0, ang,
                                         (72, 160, 186)))
                t += length + g + rng.uniform(7, 16)
    return roofs, fps, drives, pools, yards


def _car(rng: np.random.Generator, x: float, y: float, ang: float) -> Box:
    colour = tuple(float(c) for c in PAINTS[rng.integers(len(PAINTS))])
    return Box(x, y, 4.6, 1.9, ang, colour, "hip", 1.5)


def parking_lot(s: float, art: LineString,
                rng: np.random.Generator) -> tuple[Box, Box, Box, list[Box], list[Box]]:
    """A strip mall: lot polygon, entrance, building, stall lines and parked cars (Box)."""
    x0, x1, y0, y1 = 0.40 * s, 0.56 * s, 0.72 * s, 0.85 * s
    mall = Box((x0 + x1) / 2, y1 + 15, x1 - x0 - 10, 30, 0.0, (184, 184, 180), "flat", 7.0)
    ey = y0 + 0.3 * (y1 - y0)
    hit = LineString([(x1 - 1, ey), (s, ey)]).intersection(art)
    ex = hit.x if isinstance(hit, Point) else x1 + 30
    entrance = Box((x1 + ex) / 2, ey, ex - x1 + 2, 9.0, 0.0, (104, 104, 107))
    lines: list[Box] = []
    cars: list[Box] = []
    y = y0 + 7.0
    while y + 11.0 < y1 - 2:
        for row_y in (y + 2.75, y + 8.25):
            for k, x in enumerate(np.arange(x0 + 6, x1 - 6, 2.7)):
                lines.append(Box(x, row_y, 0.15, 5.2, 0.0, (226, 226, 218)))
                if k and rng.random() < 0.1 + 0.5 * (row_y - y0) / (y1 - y0):
                    cars.append(_car(rng, x - 1.35, row_y, np.pi / 2))
        y += 18.0
    lot = Box((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.0, (104, 104, 107))
    return lot, entrance, mall, lines, cars


@dataclass(frozen=True)
class Site:
    """Everything placed on the ground before painting (local metres)."""

    s: float  # scene width = height, m
    roads: list[Road]
    lot: Box
    entrance: Box
    mall: Box
    stall_lines: list[Box]
    cars: list[Box]
    field: Polygon
    roofs: list[Box]
    footprints: list[Polygon]
    drives: list[Box]
    pools: list[Box]
    yards: list[tuple[float, float]]


def plan_site(s: float, rng: np.random.Generator) -> Site:
    """Lay out streets, the strip mall, a field and the houses of a scene ``s`` metres wide."""
    roads = layout_roads(s)
    lot, entrance, mall, stall_lines, cars = parking_lot(s, roads[-1].line, rng)
    field = Polygon([(0.81 * s, 0.60 * s), (s, 0.58 * s), (s, s), (0.83 * s, s)])
    keep_out = shapely.union_all([lot.polygon().buffer(6), mall.polygon().buffer(6),
                                  entrance.polygon().buffer(4), field.buffer(4)])
    return Site(s, roads, lot, entrance, mall, stall_lines, cars, field,
                *place_houses(roads, s, keep_out, rng))


def _burn(geoms: list, cv: Canvas) -> np.ndarray:
    """Rasterize polygons (local metres) to an (H, W) bool mask."""
    return rasterio.features.rasterize([(g, 1) for g in geoms], out_shape=(cv.n, cv.n),
                                       transform=Affine.scale(cv.gsd)) > 0


def paint_ground(cv: Canvas, site: Site, noise: dict[str, np.ndarray],
                 rng: np.random.Generator) -> np.ndarray:
    """Lawns (one tone per house lot), rough meadow, dry grass, bare soil and the mown field.

    Returns:
        (H, W) bool mask of the field.
    """
    n_big, n_mid, n_soil, n_fine = (noise[k] for k in ("big", "mid", "soil", "fine"))
    lawn, lush = np.array([108, 118, 80], np.float32), np.array([82, 98, 60], np.float32)
    dry, soil = np.array([152, 144, 112], np.float32), np.array([136, 118, 96], np.float32)
    g = lawn + (lush - lawn) * np.clip(0.5 + 0.35 * n_big, 0, 1)[..., None]
    g += (dry - g) * np.clip(0.4 * (n_mid + 0.6 * n_big) - 0.05, 0, 0.85)[..., None]
    g += (soil - g) * np.clip(0.8 * (n_soil + 0.4 * n_big) - 1.3, 0, 0.9)[..., None]
    seeds = np.ones((cv.n, cv.n), bool)
    ids = np.zeros((cv.n, cv.n), np.int32)
    for k, b in enumerate(site.roofs):
        r, c = min(int(b.cy_m / cv.gsd), cv.n - 1), min(int(b.cx_m / cv.gsd), cv.n - 1)
        seeds[r, c], ids[r, c] = False, k
    dist, (ri, ci) = ndimage.distance_transform_edt(seeds, return_indices=True)
    dist_m = dist * cv.gsd if site.roofs else np.full(seeds.shape, 1e3)
    tone = rng.uniform(0.86, 1.12, (max(len(site.roofs), 1), 3)).astype(np.float32)
    tone[:, 1] = tone[:, 0] * rng.uniform(0.97, 1.06, len(tone))  # greener or browner lawns
    g *= 1 + (tone[ids[ri, ci]] - 1) * np.clip(1.4 - dist_m / 30.0, 0, 1)[..., None]
    rough = np.clip((dist_m - 30.0) / 30.0 + 0.3 * n_mid, 0, 1)  # unkempt far from houses
    meadow = np.array([126, 128, 88], np.float32) * (1 + 0.07 * n_soil)[..., None]
    g += (meadow - g) * (0.75 * rough)[..., None]
    g *= (1 + 0.06 * n_fine + 0.03 * rng.standard_normal(seeds.shape, dtype=np.float32))[
        ..., None]
    cv.img[:] = g
    fm = _burn([site.field], cv)
    yy, xx = np.mgrid[0:cv.n, 0:cv.n].astype(np.float32) * cv.gsd
    mow = 1 + 0.035 * np.tanh(3 * np.sin(2 * np.pi * (0.26 * xx + yy) / 7.0))
    hay = np.array([132, 140, 90], np.float32) * (mow * (1 + 0.05 * n_mid + 0.06 * n_big))[
        ..., None]
    cv.img[fm] = hay[fm]
    return fm


def paint_streets(cv: Canvas, site: Site, fields: list[Field],
                  noise: dict[str, np.ndarray]) -> None:
    """Sidewalks, driveways, the lot, road surfaces (arterial last), markings and crosswalks."""
    n_mid, n_soil, n_fine = noise["mid"], noise["soil"], noise["fine"]
    concrete = np.array([174, 171, 164], np.float32)

    def paint(rows: np.ndarray, cols: np.ndarray, colour: np.ndarray, a: np.ndarray) -> None:
        cv.img[rows, cols] += (colour - cv.img[rows, cols]) * a[:, None]

    for r, (rows, cols, d, _) in zip(site.roads, fields):
        if r.sidewalk:
            paint(rows, cols, concrete * (1 + 0.03 * n_fine[rows, cols])[:, None],
                  coverage(d - (r.width_m / 2 + 2.6), 0.8, cv.gsd))
    for b in (*site.drives, site.lot, site.entrance, *site.stall_lines):
        cv.draw_box(b)
    for r, (rows, cols, d, _) in zip(site.roads, fields):
        hw = r.width_m / 2
        shade = 1 + 0.05 * n_mid[rows, cols] + 0.025 * n_fine[rows, cols]
        shade -= 0.08 * np.clip(1 - (hw - d) / 1.0, 0, 1)  # grit along the curb
        if r.width_m >= 7:
            shade -= 0.05 * np.exp(-((np.abs(d - hw / 2) - 0.9) / 0.45) ** 2)  # wheel tracks
        shade -= 0.06 * np.clip(n_soil[rows, cols] - 1.3, 0, 1)  # patched asphalt
        paint(rows, cols, np.asarray(r.colour, np.float32) * shade[:, None],
              coverage(d, hw, cv.gsd))
    rows, cols, d, _ = fields[-1]
    art, hw = site.roads[-1].line, site.roads[-1].width_m / 2
    yellow, white = np.array([196, 172, 70], np.float32), np.array([224, 224, 218], np.float32)
    paint(rows, cols, yellow, coverage(d, 0.3, cv.gsd) * 0.55)  # double yellow centre line
    paint(rows, cols, white, coverage(d - (hw - 0.6), 0.1, cv.gsd) * 0.9)  # edge lines
    for r, (rows, cols, d, pts) in zip(site.roads[:-1], fields):  # crosswalks at the arterial
        if r.line.distance(art) > 1.0:
            continue
        along = shapely.line_locate_point(r.line, pts)
        if Point(r.line.coords[-1]).distance(art) < 1.0:
            along = r.line.length - along
        inside = d < r.width_m / 2 - 0.3
        band = 0.55 * coverage(along - (hw + 4.0), 1.6, cv.gsd) * inside
        paint(rows, cols, white, np.maximum(band, coverage(along - (hw + 6.5), 0.25, cv.gsd)
                                            * inside))


def add_cars(site: Site, rng: np.random.Generator) -> list[Box]:
    """Cars in the lot, in the arterial's lanes, parked along streets and on driveways."""
    cars = list(site.cars)
    for r in site.roads:
        off_m = 3.5 if r.kind == "arterial" else r.width_m / 2 - 1.3
        for _ in range(int(r.line.length / (45 if r.kind == "arterial" else 70))):
            t = rng.uniform(8, r.line.length - 8)
            p0, p1 = r.line.interpolate(t - 1), r.line.interpolate(t + 1)
            tx, ty = (p1.x - p0.x) / 2, (p1.y - p0.y) / 2
            off = off_m * (1 if rng.random() < 0.5 else -1)
            x, y = (p0.x + p1.x) / 2 - ty * off, (p0.y + p1.y) / 2 + tx * off
            if all(o.line.distance(Point(x, y)) > o.width_m / 2 + 5
                   for o in site.roads if o is not r):
                cars.append(_car(rng, x, y, float(np.arctan2(ty, tx) + np.pi * (off < 0))))
    for b in site.drives:
        if rng.random() < 0.35:
            u = b.length_m / 2 - 3.5
            cars.append(_car(rng, b.cx_m + u * np.cos(b.angle), b.cy_m + u * np.sin(b.angle),
                             b.angle))
    return cars


def plant_trees(cv: Canvas, site: Site, fields: list[Field], fm: np.ndarray, n_mid: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Woods, a hedgerow, street trees, trees round the lot and in the backyards.

    Returns:
        (N, 9) float32: x, y, radius, height (m), r, g, b, lobe amplitude, lobe phase.
    """
    s, gsd, n = site.s, cv.gsd, cv.n
    built = _burn([*site.footprints, site.lot.polygon(), site.mall.polygon(),
                   site.entrance.polygon()], cv)
    paved = np.zeros((n, n), bool)
    for r, (rows, cols, d, _) in zip(site.roads, fields):
        paved[rows[d < r.width_m / 2], cols[d < r.width_m / 2]] = True
    d_built = ndimage.distance_transform_edt(~built) * gsd
    d_paved = ndimage.distance_transform_edt(~paved) * gsd
    woods = [Polygon([(0, 0.47 * s), (0.19 * s, 0.50 * s), (0.15 * s, s), (0, s)]),
             Polygon([(0.80 * s, 0), (s, 0), (s, 0.13 * s), (0.86 * s, 0.11 * s)]),
             Polygon([(0.36 * s, 0.37 * s), (0.58 * s, 0.40 * s), (0.62 * s, 0.60 * s),
                      (0.36 * s, 0.45 * s)])]
    wood = ndimage.gaussian_filter(_burn(woods, cv).astype(np.float32), 8.0 / gsd) + 0.25 * n_mid
    wood_ok = (wood > 0.5) & (d_built > 7) & (d_paved > 4) & ~fm
    cv.img[wood > 0.45] *= np.array([0.62, 0.64, 0.62], np.float32)  # shaded forest floor
    rows: list[tuple[float, ...]] = []

    def tree(x: float, y: float, rad: float, palette: int = len(GREENS)) -> None:
        c = np.asarray(GREENS[rng.integers(palette)]) * rng.uniform(0.88, 1.12)
        rows.append((x, y, rad, rad * rng.uniform(1.5, 2.3) + 2, *c, rng.uniform(0.03, 0.12),
                     rng.uniform(0, 6.3)))

    def free(x: float, y: float, rad: float, road_gap_m: float) -> bool:
        if not (0 <= x < s and 0 <= y < s):
            return False
        rc = min(int(y / gsd), n - 1), min(int(x / gsd), n - 1)
        return bool(d_built[rc] > rad * 0.6 and d_paved[rc] > road_gap_m and not fm[rc])

    gy, gx = np.mgrid[2.1:s:4.2, 2.1:s:4.2]
    gx, gy = gx + rng.uniform(-1.6, 1.6, gx.shape), gy + rng.uniform(-1.6, 1.6, gy.shape)
    keep = wood_ok[np.clip((gy / gsd).astype(int), 0, n - 1),
                   np.clip((gx / gsd).astype(int), 0, n - 1)]
    for x, y in zip(gx[keep], gy[keep]):
        tree(x, y, rng.uniform(2.4, 4.6))
    edges = [(site.field.buffer(3.0).exterior, 6.0, 0.5),
             (site.lot.polygon().buffer(3.5).exterior, 11.0, 0.8)]
    for ring, step, p_keep in edges:
        for t in np.arange(0, ring.length, step):
            q = ring.interpolate(t)
            x, y = q.x + rng.normal(0, 1.0), q.y + rng.normal(0, 1.0)
            if 1 < x < s - 1 and 1 < y < s - 1 and rng.random() < p_keep and free(x, y, 2, 2):
                tree(x, y, rng.uniform(2.5, 4.5))
    for r in (r for r in site.roads if r.kind != "arterial"):
        t = rng.uniform(5, 25)
        while t < r.line.length - 5:
            p0, p1 = r.line.interpolate(t - 1), r.line.interpolate(t + 1)
            off = (r.width_m / 2 + rng.uniform(0.8, 3.5)) * (1 if rng.random() < 0.5 else -1)
            x = (p0.x + p1.x) / 2 - (p1.y - p0.y) / 2 * off
            y = (p0.y + p1.y) / 2 + (p1.x - p0.x) / 2 * off
            rad = min(rng.uniform(2.5, 5.5), abs(off) - 0.25 * r.width_m)
            if rad > 1.5 and free(x, y, rad, -1) and all(
                    o.line.distance(Point(x, y)) > o.width_m / 2 + 6
                    for o in site.roads if o is not r):
                tree(x, y, rad, 5)
            t += rng.uniform(10, 35)
    for x, y in site.yards:
        rad = rng.uniform(2.5, 6.0)
        if free(x, y, rad, rad * 0.8):
            tree(x, y, rad)
    for _ in range(int(s * s / 4000)):
        cx, cy = rng.uniform(0, s, 2)
        for _ in range(rng.integers(1, 10)):
            x, y, rad = cx + rng.normal(0, 5), cy + rng.normal(0, 5), rng.uniform(2.5, 6.0)
            if free(x, y, rad, rad * 0.8) and not wood_ok[min(int(y / gsd), n - 1),
                                                          min(int(x / gsd), n - 1)]:
                tree(x, y, rad)
    return np.asarray(rows, np.float32).reshape(-1, 9)


def render(size_px: int, gsd: float, seed: int) -> tuple[np.ndarray, list[Road]]:
    """Draw the scene.

    Args:
        size_px: width = height of the image, px.
        gsd: ground sample distance, m/px.
        seed: seed of the only random generator used; the same arguments give the same pixels.

    Returns:
        (H, W, 3) uint8 RGB image (row 0 = north) and the roads whose centrelines are the
        ground truth (local metres: x east, y south of the top-left corner).
    """
    rng = np.random.default_rng(seed)
    s, shape = size_px * gsd, (size_px, size_px)
    cv = Canvas(size_px, gsd, rng)
    site = plan_site(s, rng)
    noise = {"big": fbm(shape, rng, 250.0, gsd, 8.0), "mid": fbm(shape, rng, 40.0, gsd, 2.0),
             "soil": fbm(shape, rng, 30.0, gsd, 2.0), "fine": fbm(shape, rng, 4.0, gsd, 0.8)}
    fm = paint_ground(cv, site, noise, rng)
    fields = [road_fields(r, shape, gsd, r.width_m / 2 + 4.0) for r in site.roads]
    paint_streets(cv, site, fields, noise)
    cars = add_cars(site, rng)
    trees = plant_trees(cv, site, fields, fm, noise["mid"], rng)
    mall = site.mall
    hvac = [Box(mall.cx_m + rng.uniform(-0.4, 0.4) * mall.length_m,
                mall.cy_m + rng.uniform(-0.35, 0.35) * mall.width_m, rng.uniform(2, 4),
                rng.uniform(1.5, 3), 0.0, PAINTS[rng.integers(4)]) for _ in range(12)]
    # shadows first, then pools, cars and roofs, then crowns (shaded where neighbours shade them)
    for b in (*site.roofs, mall, *cars):
        cv.cast_box_shadow(b)
    tree_shadow = cv.cast_tree_shadows(trees)
    cv.img *= 1 - np.maximum(cv.shadow, tree_shadow)[..., None] * (1 - SHADOW_TINT)
    for b in site.pools:
        cv.draw_box(Box(b.cx_m, b.cy_m, b.length_m + 2, b.width_m + 2, b.angle, (200, 198, 190)))
        cv.draw_box(b)
    for b in cars:
        cv.draw_box(b, shade_k=0.15)
    for b in (*site.roofs, mall, *hvac):
        cv.draw_box(b)
    zbuf = np.full(shape, -np.inf, np.float32)
    cv.draw_trees(trees, zbuf)
    cv.img *= 1 - (0.6 * tree_shadow * np.isfinite(zbuf))[..., None] * (1 - SHADOW_TINT)
    # camera: optical blur, a little haze, sensor noise
    img = ndimage.gaussian_filter(cv.img, sigma=(0.55, 0.55, 0))
    img = img * 0.94 + np.array([10, 12, 16], np.float32)
    img += rng.normal(0, 1.6, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), site.roads


def _to_utm(xy: np.ndarray) -> np.ndarray:
    """Local metres (x east, y south of the top-left corner), (N, 2) -> EPSG:32619 (E, N)."""
    return np.c_[ORIGIN_E_M + xy[:, 0], ORIGIN_N_M - xy[:, 1]]


def centreline_pieces(roads: list[Road], s: float,
                      edge_m: float = 0.05) -> list[tuple[Road, LineString]]:
    """Split the centrelines at every junction so that lines meeting there share an end point.

    T-junction ends, crossings and the cul-de-sac are noded exactly (identical coordinates), so
    a graph built from the output has its junctions whatever the snapping tolerance. Lines are
    kept ``edge_m`` inside the scene so that they stay within its bounds after reprojection.

    Returns:
        (road, piece) pairs, pieces in local metres.
    """
    junctions: list[Point] = []
    for i, a in enumerate(roads):
        for b in roads[i + 1:]:
            hits = [Point(c) for c in (*b.line.boundary.geoms, *a.line.boundary.geoms)
                    if a.line.distance(Point(c)) < 1e-6 and b.line.distance(Point(c)) < 1e-6]
            cross = a.line.intersection(b.line)
            hits += [p for p in getattr(cross, "geoms", [cross]) if isinstance(p, Point)]
            for p in hits:
                if all(p.distance(q) > 1e-6 for q in junctions):
                    junctions.append(p)
    inner = box(edge_m, edge_m, s - edge_m, s - edge_m)
    out: list[tuple[Road, LineString]] = []
    for r in roads:
        near = [q for q in junctions if r.line.distance(q) < 1e-6]
        cuts = sorted({0.0, r.line.length, *(r.line.project(q) for q in near)})
        for d0, d1 in zip(cuts[:-1], cuts[1:]):
            if d1 - d0 < 1e-6:
                continue
            xy = np.asarray(substring(r.line, d0, d1).coords)
            for k in (0, -1):  # snap piece ends to the exact junction coordinates
                q = min(near, key=lambda q: q.distance(Point(xy[k])), default=None)
                if q is not None and q.distance(Point(xy[k])) < 1e-6:
                    xy[k] = (q.x, q.y)
            piece = LineString(xy).intersection(inner)
            out += [(r, g) for g in getattr(piece, "geoms", [piece]) if g.length > 0]
    return out


def write_outputs(out_dir: Path, img: np.ndarray, roads: list[Road], gsd: float,
                  seed: int) -> list[Path]:
    """Write the GeoTIFF, the centreline GeoJSON (EPSG:4326) and GPKG (EPSG:32619)."""
    import geopandas as gpd  # slow import, only needed here

    out_dir.mkdir(parents=True, exist_ok=True)
    tif = out_dir / "synthetic_scene.tif"
    h, w, _ = img.shape
    transform = Affine(gsd, 0.0, ORIGIN_E_M, 0.0, -gsd, ORIGIN_N_M)  # north up
    with rasterio.open(tif, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs=CRS, transform=transform, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", predictor=2, photometric="RGB",
                       interleave="pixel") as dst:
        dst.write(img.transpose(2, 0, 1))
        dst.update_tags(SYNTHETIC="yes", DESCRIPTION=DESCRIPTION, SEED=str(seed),
                        GENERATOR="roadx examples/make_example_scene.py",
                        TIFFTAG_IMAGEDESCRIPTION=DESCRIPTION,
                        TIFFTAG_SOFTWARE="roadx examples/make_example_scene.py")
        for i, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(i, name)
    pieces = centreline_pieces(roads, w * gsd)
    gdf = gpd.GeoDataFrame(
        {"name": [r.name for r, _ in pieces], "kind": [r.kind for r, _ in pieces],
         "width_m": [r.width_m for r, _ in pieces]},
        geometry=[shapely.transform(g, _to_utm) for _, g in pieces],
        crs=CRS)
    gpkg = out_dir / "synthetic_centrelines.gpkg"
    geojson = out_dir / "synthetic_centrelines.geojson"
    for p in (gpkg, geojson):
        p.unlink(missing_ok=True)
    gdf.to_file(gpkg, driver="GPKG", layer="centrelines")
    gdf.to_crs("EPSG:4326").to_file(geojson, driver="GeoJSON", RFC7946="YES")
    return [tif, geojson, gpkg]


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: parse options, render, write, print what was written."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", type=Path,
                    default=Path(__file__).resolve().parent / "data",
                    help="output folder (default: examples/data)")
    ap.add_argument("--size", type=int, default=1024, help="width = height in pixels (>= 256)")
    ap.add_argument("--gsd", type=float, default=1.0, help="metres per pixel, 0.3 to 2")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same pixels)")
    args = ap.parse_args(argv)
    if args.size < 256:
        ap.error(f"--size {args.size} is too small for the street plan; use 256 or more")
    if not 0.3 <= args.gsd <= 2.0:
        ap.error(f"--gsd {args.gsd} is outside 0.3..2 m/px; the scene imitates ~1 m imagery")
    if args.size * args.gsd < 200:
        ap.error(f"the scene would be {args.size * args.gsd:.0f} m wide, too small for the street "
                 "plan; make --size x --gsd at least 200 m")
    t0 = time.perf_counter()
    img, roads = render(args.size, args.gsd, args.seed)
    paths = write_outputs(args.out_dir, img, roads, args.gsd, args.seed)
    ext = args.size * args.gsd
    print(f"synthetic scene: {args.size} x {args.size} px at {args.gsd:g} m/px ({ext:.0f} m x "
          f"{ext:.0f} m), {CRS}, seed {args.seed}, {time.perf_counter() - t0:.1f} s")
    for p in paths:
        print(f"  wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
    print(f"  {len(roads)} roads, {sum(r.line.length for r in roads):.0f} m, "
          f"{len(centreline_pieces(roads, ext))} centreline pieces split at junctions: "
          + ", ".join(f"{r.name} ({r.width_m:g} m)" for r in roads))


if __name__ == "__main__":
    main()
