"""Synthetic aerial road scenes for training and evaluation (issue #9, item 2).

:func:`generate_scene` draws a random landscape (suburb, dense city, farmland, forest, desert,
scrub or snow) crossed by a random road network and returns the RGB image together with
labels that are exact by construction: the road mask is the union of the centrelines buffered by
half their width, the same rule that turns OpenStreetMap centrelines into training masks
(:mod:`roadx.io.samples`). Everything is procedural, in numpy/scipy (shapely only plans the
lines), so scenes are free to share and cost ~0.1 s for 512 × 512 px on one core.

What a scene contains:

* roads of five surfaces (asphalt with markings, concrete slabs with joints, gravel, dirt
  tracks with ruts and a grass strip, faint field paths), 2-20 m wide, straight or curved,
  meeting in T-junctions and crossings (a city grid or an organic tree of branches);
* textured backgrounds (spectral noise, crop rows, dune ripples, canopy, snow drifts);
* occluders drawn over the roads while the mask still marks the road under them, as
  OSM-derived labels do: tree crowns, cast shadows (trees, buildings, unseen objects), cars;
* distractors that are not roads and never in the mask: buildings/roofs, field boundaries,
  rivers and canals (dry wadis in the desert), rail lines, fences.

This is domain randomization (Tobin et al., "Domain Randomization for Transferring Deep Neural
Networks from Simulation to the Real World", IROS 2017): many cheap, varied renderings so that
a model learns the road *shape* rather than one survey's colours. The rendering ideas (spectral
fractal noise, anti-aliased coverage of bands and boxes, sun-lit pitched roofs and crowns, cast
shadows) come from roadx's quick-start scene, ``examples/make_example_scene.py``, which imports
:func:`fbm` and :func:`coverage` from here.

Conventions: pixel coordinates x = column, y = row; pixel (r, c) covers [c, c+1] × [r, r+1], so
its centre is (c + 0.5, r + 0.5). A pixel is road when its centre lies within half the road
width (in pixels, ``width_m / gsd_m / 2``) of a centreline (distance ≤ half width).

Seeds: :func:`generate_scene` takes any integer seed ≥ 0. Training (:class:`SyntheticTiles`)
draws scene seeds in ``[0, TEST_SEED_BASE)`` = [0, 2**62); :func:`synthetic_test_set` uses
``TEST_SEED_BASE + set_seed * 2**20 + k`` (k < 2**20), so evaluation scenes never coincide with
training scenes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import shapely
from shapely.geometry import LineString, Point
from shapely.ops import substring

BACKGROUNDS = ("suburb", "city", "farmland", "forest", "desert", "scrub", "snow")
SURFACES = ("asphalt", "concrete", "gravel", "dirt", "field_path")
#: distractor codes in :attr:`SyntheticScene.distractors`: index + 1 (0 = none)
DISTRACTORS = ("building", "field_boundary", "river", "canal", "rail", "fence")
TEST_SEED_BASE = 2**62
_TEST_SET_STRIDE = 2**20
_SYNTH_SALT = 0x5E17  # stream tag of the synthetic draws of the training loop

# (main-road weights, branch weights) over SURFACES per background
_SURFACE_WEIGHTS = {
    "suburb": ((6, 3, 1, 0, 0), (6, 3, 2, 0.5, 0)),
    "city": ((7, 3, 0, 0, 0), (7, 3, 0, 0, 0)),
    "farmland": ((5, 2, 3, 1, 0), (1, 1, 3, 3, 2)),
    "forest": ((3, 0, 4, 3, 0), (1, 0, 3, 3, 2)),
    "desert": ((5, 1, 2, 2, 0), (1, 0, 2, 4, 1)),
    "scrub": ((3, 0, 3, 3, 0), (1, 0, 2, 4, 2)),
    "snow": ((5, 1, 2, 1, 0), (2, 0, 2, 3, 1)),
}
# total width in metres: (main low, main high, branch low, branch high) per surface
_WIDTH_M = {
    "asphalt": (7.0, 20.0, 4.0, 9.0),
    "concrete": (6.0, 16.0, 4.0, 8.0),
    "gravel": (4.0, 8.0, 3.0, 6.0),
    "dirt": (3.0, 5.0, 2.5, 4.5),
    "field_path": (2.0, 3.5, 2.0, 3.0),
}
_SHADOW_TINT = np.array([0.42, 0.46, 0.56], np.float32)  # shade is darker and bluish
_CAR_PAINTS = np.array([(222, 222, 218), (34, 35, 38), (170, 172, 176), (110, 112, 116),
                        (146, 36, 34), (42, 62, 118), (230, 230, 226), (60, 60, 64),
                        (180, 160, 60)], np.float32)
_ROOFS = np.array([(190, 188, 182), (146, 146, 148), (100, 101, 106), (76, 78, 84),
                   (124, 96, 84), (156, 128, 106), (158, 106, 88), (108, 90, 80),
                   (204, 202, 196), (116, 122, 130), (150, 70, 56)], np.float32)
_GREENS = np.array([(74, 98, 56), (86, 106, 60), (64, 86, 50), (98, 112, 66), (56, 74, 50),
                    (80, 94, 52), (106, 118, 70)], np.float32)


# --- shared painting helpers (also used by examples/make_example_scene.py) -------------------


def fbm(shape: tuple[int, int], rng: np.random.Generator, scale_m: float, gsd_m: float,
        finest_m: float = 1.0) -> np.ndarray:
    """Spectral fractal noise, (H, W) float32, zero mean, unit std.

    Features range from about ``scale_m`` down to ``finest_m`` (metres; ``gsd_m`` m/px);
    amplitude falls as f^-0.9.
    """
    fy = np.fft.fftfreq(shape[0], d=gsd_m)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=gsd_m)[None, :]
    f2 = fx**2 + fy**2
    amp = (f2 + scale_m**-2) ** -0.45 * np.exp(-f2 * (finest_m / 2) ** 2)
    out = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * amp, s=shape)
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(np.float32)


def coverage(d_m: np.ndarray, half_m: float | np.ndarray, gsd_m: float) -> np.ndarray:
    """Fraction of a pixel (side ``gsd_m``) at distance ``d_m`` covered by a band of half-width.

    Units only need to agree (metres, or pixels with ``gsd_m`` = 1); ``half_m`` may be an array
    broadcastable with ``d_m``.
    """
    # = clip(min(d + g/2, h) - max(d - g/2, -h), 0, g) / g, in fewer operations
    top = np.clip(2 * np.asarray(half_m), 0.0, gsd_m)
    return np.clip(half_m + gsd_m / 2 - np.abs(d_m), 0.0, top) / gsd_m


# --- the scene -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticScene:
    """One generated scene; all rasters are (H, W) with H = W = ``size_px``.

    Attributes:
        image: (H, W, 3) uint8 RGB, row 0 at the top.
        road: (H, W) bool, the union of ``centrelines`` buffered by half their width (pixel
            centre within ``widths_px / 2``), including road under trees, shadows and cars.
        centrelines: road centrelines as shapely LineStrings in pixel coordinates (x = column,
            y = row, pixel centres at +0.5); they may run up to a few pixels past the frame.
        widths_m: total road width per centreline, metres (2-20).
        surfaces: surface per centreline, one of :data:`SURFACES`.
        background: landscape, one of :data:`BACKGROUNDS`.
        distractors: (H, W) uint8, 0 = none, k = ``DISTRACTORS[k - 1]`` (buildings, field
            boundaries, rivers, canals, rail lines, fences); never set on road pixels.
        occluded: (H, W) bool, road pixels hidden or darkened by a tree crown, car or shadow.
        gsd_m: metres per pixel.
        seed: the seed that reproduces the scene.
    """

    image: np.ndarray
    road: np.ndarray
    centrelines: tuple[LineString, ...]
    widths_m: tuple[float, ...]
    surfaces: tuple[str, ...]
    background: str
    distractors: np.ndarray
    occluded: np.ndarray
    gsd_m: float
    seed: int

    @property
    def widths_px(self) -> tuple[float, ...]:
        """Total road width per centreline, pixels."""
        return tuple(w / self.gsd_m for w in self.widths_m)

    @property
    def distractor_kinds(self) -> set[str]:
        """Names of the distractors present in the image."""
        return {DISTRACTORS[k - 1] for k in np.unique(self.distractors) if k}

    def label(self) -> np.ndarray:
        """(H, W) uint8 label byte of :class:`roadx.train.data.Tile`: bit 0 road, bit 1 valid."""
        return (self.road.astype(np.uint8) | np.uint8(2)).astype(np.uint8)


@dataclass
class _Road:
    line: LineString
    width_m: float
    surface: str
    main: bool
    sidewalk: tuple[float, float] = (0.0, 0.0)  # gap from the carriageway and width, m
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flat pixel index
    d: np.ndarray = field(default_factory=lambda: np.zeros(0))  # distance to the line, px
    s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # position along the line, px


def line_field(xy: np.ndarray, reach_px: float, size_px: int,
               exact_at: float | None = None) -> tuple[np.ndarray, ...]:
    """Pixels within ``reach_px`` of a polyline: flat indexes, distance and position along it.

    Distances from each pixel centre to the polyline are computed in float32 on square windows
    around short pieces of the segments (no full-image pass per segment). Pixels whose
    distance lies within 1e-3 px of ``exact_at`` are recomputed in float64 against every
    segment, so ``d <= exact_at`` decides exactly as ``shapely.distance(line, centre) <=
    exact_at`` would (the rasterized buffer of the line).

    Args:
        xy: (N, 2) float64 vertices in pixel coordinates (x = column, y = row), N >= 2.
        reach_px: largest distance of interest, pixels.
        size_px: side of the square image.
        exact_at: a distance (pixels) at which the comparison must be exact, or None.

    Returns:
        (idx (M,) int64 = row * size_px + col, d (M,) float px, s (M,) float px along the
        line from its first vertex), one entry per pixel, ascending idx.
    """
    a, b = xy[:-1], xy[1:]
    seg = b - a
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    keep = seg_len > 0
    a, b, seg, seg_len = a[keep], b[keep], seg[keep], seg_len[keep]
    start = np.r_[0.0, np.cumsum(seg_len)[:-1]]
    piece = max(2.0, reach_px)
    k = np.maximum(1, np.ceil(seg_len / piece)).astype(np.int64)
    rep = np.repeat(np.arange(len(a)), k)
    sub = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    mid = a[rep] + seg[rep] * ((sub + 0.5) / k[rep])[:, None]
    half = int(np.ceil(piece / 2 + reach_px)) + 1
    off = np.arange(-half, half + 1)
    base_c, base_r = np.floor(mid[:, 0]).astype(np.int64), np.floor(mid[:, 1]).astype(np.int64)

    def win(v: np.ndarray) -> np.ndarray:
        return v.astype(np.float32)[:, None, None]

    f_off = off.astype(np.float32)
    dx = win(base_c + 0.5 - a[rep, 0]) + f_off[None, None, :]  # pixel centre - segment start
    dy = win(base_r + 0.5 - a[rep, 1]) + f_off[None, :, None]
    sx, sy, ln = win(seg[rep, 0]), win(seg[rep, 1]), win(seg_len[rep])
    tc = np.clip((dx * sx + dy * sy) / (ln * ln), 0.0, 1.0)
    ex, ey = dx - tc * sx, dy - tc * sy
    d = np.sqrt(ex * ex + ey * ey)  # (np.hypot is several times slower)
    near = d <= reach_px
    piece_id, i, j = np.nonzero(near)
    rows, cols = base_r[piece_id] + off[i], base_c[piece_id] + off[j]
    d = d[near]
    s = (tc * ln)[near] + start[rep[piece_id]].astype(np.float32)
    inside = (rows >= 0) & (rows < size_px) & (cols >= 0) & (cols < size_px)
    rows, cols, d, s = rows[inside], cols[inside], d[inside], s[inside]
    if len(d) == 0:
        return np.zeros(0, np.int64), d, s
    r0, c0 = rows.min(), cols.min()  # one entry per pixel: the nearest piece wins
    w = int(cols.max() - c0 + 1)
    local = (rows - r0) * w + (cols - c0)
    size = int(rows.max() - r0 + 1) * w
    dmin = np.full(size, np.inf, np.float32)
    np.minimum.at(dmin, local, d)
    smin = np.zeros(size, np.float32)
    best = d == dmin[local]
    smin[local[best]] = s[best]
    hit = np.flatnonzero(dmin <= reach_px)
    idx = (hit // w + r0) * size_px + hit % w + c0
    d, s = dmin[hit].astype(np.float64), smin[hit]
    if exact_at is not None:
        tie = np.flatnonzero(np.abs(d - exact_at) < 1e-3)
        if len(tie):
            d[tie] = _exact_distance(idx[tie], size_px, a, seg, seg_len)
    return idx, d, s


def _exact_distance(idx: np.ndarray, size_px: int, a: np.ndarray, seg: np.ndarray,
                    seg_len: np.ndarray) -> np.ndarray:
    """Float64 distance from pixel centres (flat idx) to the polyline (segments a, a + seg)."""
    px = (idx % size_px + 0.5)[:, None]
    py = (idx // size_px + 0.5)[:, None]
    out = np.full(len(idx), np.inf)
    for c in range(0, len(a), 256):
        ax, ay = a[None, c:c + 256, 0], a[None, c:c + 256, 1]
        sx, sy = seg[None, c:c + 256, 0], seg[None, c:c + 256, 1]
        t = np.clip(((px - ax) * sx + (py - ay) * sy) / seg_len[None, c:c + 256] ** 2, 0.0, 1.0)
        out = np.minimum(out, np.hypot(px - (ax + t * sx), py - (ay + t * sy)).min(axis=1))
    return out


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length_px: float,
          step_px: float, bend: float) -> np.ndarray:
    """A smooth random path: (N, 2) vertices; ``bend`` = largest curvature, 1/px."""
    m = max(2, int(length_px / step_px) + 1)
    if bend <= 0:
        d = np.array([np.cos(heading), np.sin(heading)])
        return np.stack([start, start + d * length_px])
    t = np.arange(m) * step_px
    kappa = np.zeros(m)
    for _ in range(3):
        f = rng.uniform(1 / 900, 1 / 120) * step_px / max(step_px, 1.0)
        kappa += rng.uniform(-1, 1) * bend / 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 7))
    ang = heading + np.r_[0.0, np.cumsum(kappa[:-1] * step_px)]
    steps = np.stack([np.cos(ang), np.sin(ang)], 1) * step_px
    return start + np.r_[np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)]


def _longest(geom: shapely.Geometry) -> LineString | None:
    parts = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, LineString) and
             not g.is_empty]
    return max(parts, key=lambda g: g.length) if parts else None


def _pick(rng: np.random.Generator, weights: tuple[float, ...], allowed: tuple[str, ...]) -> str:
    w = np.array([wt if s in allowed else 0.0 for s, wt in zip(SURFACES, weights)])
    if w.sum() <= 0:
        w = np.array([1.0 if s in allowed else 0.0 for s in SURFACES])
    return SURFACES[int(rng.choice(len(SURFACES), p=w / w.sum()))]


def _width(rng: np.random.Generator, surface: str, main: bool) -> float:
    lo, hi, blo, bhi = _WIDTH_M[surface]
    return float(rng.uniform(lo, hi) if main else rng.uniform(blo, bhi))


def plan_roads(rng: np.random.Generator, size_px: int, gsd_m: float, background: str,
               allowed: tuple[str, ...] = SURFACES) -> list[_Road]:
    """Lay out a road network: a rotated grid (cities, some suburbs) or through roads with
    branches that end in T-junctions, cross other roads or stop (dead ends).

    Returns:
        Roads in drawing order (branches first, main roads last); lines in pixel coordinates,
        clipped to the frame grown by a margin so no road ends visibly at the border.
    """
    n, margin = float(size_px), 12.0 / gsd_m
    frame = (-margin, -margin, n + margin, n + margin)
    main_w, branch_w = _SURFACE_WEIGHTS[background]
    roads: list[_Road] = []
    if background == "city" or (background == "suburb" and rng.random() < 0.3):
        theta = 0.0 if rng.random() < 0.3 else rng.uniform(0, np.pi / 2)
        spacing = rng.uniform(70, 140) / gsd_m
        centre = np.array([n / 2, n / 2])
        diag = n * 1.5
        for axis in (0, 1):
            ang = theta + axis * np.pi / 2
            u = np.array([np.cos(ang), np.sin(ang)])
            v = np.array([-u[1], u[0]])
            offs = np.arange(-diag / 2, diag / 2, spacing) + rng.uniform(0, spacing)
            for k, o in enumerate(offs):
                o = o + rng.normal(0, spacing * 0.05)
                main = k % 3 == 1
                a = centre + v * o - u * diag
                b = centre + v * o + u * diag
                if not main and rng.random() < 0.3:  # a street that stops at a cross street
                    lo, hi = sorted(rng.uniform(-diag, diag, 2))
                    lo = max(lo, -diag / 3)
                    a, b = centre + v * o + u * lo, centre + v * o + u * max(hi, lo + spacing)
                line = _longest(shapely.clip_by_rect(LineString([a, b]), *frame))
                if line is not None and line.length > spacing / 2:
                    surface = _pick(rng, main_w if main else branch_w, allowed)
                    roads.append(_Road(line, _width(rng, surface, main), surface, main))
        roads.sort(key=lambda r: r.main)
        return roads
    bend = {"forest": 1 / 45, "scrub": 1 / 60, "farmland": 1 / 150, "suburb": 1 / 80,
            "desert": 1 / 200, "snow": 1 / 90}[background] * gsd_m
    n_main = 1 + int(rng.random() < 0.5) + int(background == "suburb" and rng.random() < 0.5)
    n_branch = int(rng.integers(*{"suburb": (3, 9), "farmland": (2, 6), "forest": (1, 5),
                                  "desert": (1, 4), "scrub": (1, 5), "snow": (1, 5)}[background]))
    step = max(2.0, 5.0 / gsd_m)
    mains: list[_Road] = []
    for _ in range(n_main):
        p = rng.uniform(0.2, 0.8, 2) * n
        h = rng.uniform(0, 2 * np.pi)
        straight = rng.random() < 0.35
        fwd = _walk(rng, p, h, 1.6 * n, step, 0.0 if straight else bend * 0.5)
        back = _walk(rng, p, h + np.pi, 1.6 * n, step, 0.0 if straight else bend * 0.5)
        line = _longest(shapely.clip_by_rect(LineString(np.r_[back[::-1], fwd[1:]]), *frame))
        if line is None:
            continue
        surface = _pick(rng, main_w, allowed)
        mains.append(_Road(line, _width(rng, surface, True), surface, True))
    branches: list[_Road] = []
    for _ in range(n_branch * 3):
        if len(branches) >= n_branch:
            break
        parents = mains + branches
        parent = parents[int(rng.integers(len(parents)))]
        pl = parent.line
        at = rng.uniform(0.1, 0.9) * pl.length
        p0, p1 = pl.interpolate(max(at - 1, 0)), pl.interpolate(min(at + 1, pl.length))
        start = pl.interpolate(at)
        if not (0 <= start.x < n and 0 <= start.y < n):
            continue
        tangent = np.arctan2(p1.y - p0.y, p1.x - p0.x)
        h = tangent + (1 if rng.random() < 0.5 else -1) * (np.pi / 2 + rng.normal(0, 0.35))
        surface = _pick(rng, branch_w, allowed)
        width = _width(rng, surface, False)
        length = rng.uniform(0.3, 1.2) * n
        xy = _walk(rng, np.array([start.x, start.y]), h, length, step,
                   0.0 if rng.random() < 0.3 else bend)
        line = LineString(xy)
        others = [r.line for r in mains + branches]
        gap = (parent.width_m + width) / gsd_m
        tail = substring(line, gap, line.length)
        hit = tail.intersection(shapely.union_all(others))
        if not hit.is_empty and rng.random() < 0.7:  # a T-junction on the first road met
            pts = [g for g in getattr(hit, "geoms", [hit]) if isinstance(g, Point)]
            if pts:
                first = min(pts, key=lambda q: line.project(q))
                cut = substring(line, 0.0, line.project(first))
                xy = np.asarray(cut.coords)
                xy[-1] = (first.x, first.y)
                line = LineString(xy)
        line = _longest(shapely.clip_by_rect(line, *frame))
        if line is None or line.length < 4 * width / gsd_m:
            continue
        # no branch may run alongside another road (overlapping carriageways)
        probe = shapely.line_interpolate_point(line, np.arange(gap, line.length - gap, step))
        if len(probe):
            ends = shapely.multipoints(list(line.boundary.geoms) + [
                g for o in others for g in getattr(line.intersection(o), "geoms",
                                                   [line.intersection(o)]) if isinstance(g, Point)])
            far = shapely.distance(ends, probe) > 3 * gap
            close = np.zeros(len(probe), bool)
            for o, r in zip(others, mains + branches):
                close |= shapely.distance(o, probe) < (r.width_m + width) / gsd_m / 2 + 3 / gsd_m
            if np.any(close & far):
                continue
        branches.append(_Road(line, width, surface, False))
    return branches + mains


# --- painting ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _noise_spectrum(n: int, gsd: float, scale_m: float,
                    finest_m: float) -> tuple[np.ndarray | slice, int, np.ndarray]:
    """Rows, columns and amplitudes of the :func:`fbm` spectrum of an n × n field (rfft
    layout), leaving out the frequencies it damps below 1e-3 (cached: scenes share them)."""
    f_cut = min(5.3 / finest_m, 0.5 / gsd)  # exp(-f^2 (finest / 2)^2) < 1e-3 beyond
    ky = int(min(n // 2, np.ceil(f_cut * n * gsd)))
    kx = min(n // 2 + 1, ky + 1)
    rows: np.ndarray | slice = np.r_[0:ky + 1, n - ky:n] if ky < n // 2 else slice(None)
    fy = np.fft.fftfreq(n, d=gsd)[rows]
    fx = np.fft.rfftfreq(n, d=gsd)[:kx]
    f2 = fx[None, :] ** 2 + fy[:, None] ** 2
    amp = ((f2 + scale_m**-2) ** -0.45 * np.exp(-f2 * (finest_m / 2) ** 2)).astype(np.float32)
    amp[0, 0] = 0.0
    amp.flags.writeable = False
    return rows, kx, amp


@dataclass
class _Sprite:
    """Stamped objects ready to paint: flat pixel idx, coverage, colour (M, 3), height (m)."""

    idx: np.ndarray
    alpha: np.ndarray
    colour: np.ndarray
    height: np.ndarray
    code: int = 0  # distractor code, 0 = occluder


class _Canvas:
    """Working state of one rendering: float32 RGB 0..255, height map, label maps."""

    def __init__(self, size_px: int, gsd_m: float, rng: np.random.Generator,
                 background: str) -> None:
        self.n, self.gsd, self.rng = size_px, gsd_m, rng
        self.img = np.zeros((size_px, size_px, 3), np.float32)
        self.height = np.zeros((size_px, size_px), np.float32)  # objects above ground, m
        self.shadow = np.zeros((size_px, size_px), np.float32)  # extra shadows, 0..1
        self.distract = np.zeros((size_px, size_px), np.uint8)
        self.cover = np.zeros((size_px, size_px), bool)  # crowns, canopy and cars
        az = rng.uniform(0, 2 * np.pi)
        self.sun = np.array([np.sin(az), -np.cos(az)])  # towards the sun (x east, y south)
        lo = {"snow": 0.4, "city": 0.7}.get(background, 0.5)
        self.elev = float(rng.uniform(lo, 1.2))  # rad
        centres = ((np.arange(size_px) + 0.5) * gsd_m).astype(np.float32)
        self.xs, self.ys = centres[None, :], centres[:, None]  # pixel centres, m (broadcast)

    def noise(self, scale_m: float, finest_m: float) -> np.ndarray:
        """(H, W) float32 fractal noise with the spectrum of :func:`fbm`, synthesised directly
        in the frequency domain (one inverse FFT; frequencies the spectrum damps below 1e-3
        are not drawn), which is several times faster than filtering white noise."""
        n = self.n
        rows, kx, amp = _noise_spectrum(n, self.gsd, scale_m, finest_m)
        draw = self.rng.standard_normal((*amp.shape, 2), dtype=np.float32).view(np.complex64)
        spec = np.zeros((n, n // 2 + 1), np.complex64)
        spec[rows, :kx] = draw[..., 0] * amp
        out = scipy.fft.irfft2(spec, s=(n, n))
        return (out / (out.std() + 1e-12)).astype(np.float32)

    def paint(self, where: np.ndarray, colour: np.ndarray, alpha: np.ndarray | float) -> None:
        """Blend ``colour`` ((M, 3) or (3,)) into flat pixels ``where`` with ``alpha`` (M,)."""
        flat = self.img.reshape(-1, 3)
        a = np.asarray(alpha, np.float32)
        if a.ndim:  # only pixels that change
            sel = a > 0
            where, a = where[sel], a[sel, None]
            colour = colour[sel] if np.ndim(colour) == 2 else colour
        old = flat[where]
        old += (colour - old) * a
        flat[where] = old

    def stamps(self, x: np.ndarray, y: np.ndarray, reach_m: float) -> tuple[np.ndarray, ...]:
        """Square windows around points (m): flat idx, dx, dy (m) and in-frame mask, (N, K, K)."""
        half = int(np.ceil(reach_m / self.gsd)) + 1
        k = np.arange(-half, half + 1)
        ci = np.floor(x / self.gsd).astype(np.int64)[:, None, None] + k[None, None, :]
        ri = np.floor(y / self.gsd).astype(np.int64)[:, None, None] + k[None, :, None]
        ri, ci = np.broadcast_arrays(ri, ci)
        dx = ((ci + 0.5) * self.gsd - x[:, None, None]).astype(np.float32)
        dy = ((ri + 0.5) * self.gsd - y[:, None, None]).astype(np.float32)
        ok = (ri >= 0) & (ri < self.n) & (ci >= 0) & (ci < self.n)
        idx = np.clip(ri, 0, self.n - 1) * self.n + np.clip(ci, 0, self.n - 1)
        return idx, dx, dy, ok

    def boxes(self, b: np.ndarray, colour: np.ndarray, pitched: np.ndarray,
              code: int = 0) -> _Sprite:
        """Oriented boxes (N, 6): cx, cy, length, width (m), angle (rad), height (m); pitched
        (N,) bool: gable roofs whose two facets are lit differently by the sun."""
        if len(b) == 0:
            return _Sprite(np.zeros(0, np.int64), np.zeros(0, np.float32),
                           np.zeros((0, 3), np.float32), np.zeros(0, np.float32), code)
        diag = np.hypot(b[:, 2], b[:, 3])
        if len(b) > 16 and diag.max() > 2 * diag.min():  # similar sizes share a window size
            order = np.argsort(diag, kind="stable")
            parts = [self.boxes(b[g], colour[g], pitched[g], code)
                     for g in np.array_split(order, 4)]
            return _Sprite(np.concatenate([p.idx for p in parts]),
                           np.concatenate([p.alpha for p in parts]),
                           np.concatenate([p.colour for p in parts]),
                           np.concatenate([p.height for p in parts]), code)
        ln, wd, ang, ht = (b[:, i, None, None].astype(np.float32) for i in range(2, 6))
        ca, sa = np.cos(ang), np.sin(ang)
        idx, dx, dy, ok = self.stamps(b[:, 0], b[:, 1],
                                      float(np.max(np.hypot(b[:, 2], b[:, 3]))) / 2 + self.gsd)
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        a = coverage(u, ln / 2, self.gsd) * coverage(v, wd / 2, self.gsd)
        side = np.sign(v)
        facing = -sa * side * self.sun[0] + ca * side * self.sun[1]  # facet normal · sun
        lit = np.where(pitched[:, None, None], 1.0 + 0.3 * facing, 1.0).astype(np.float32)
        m = ok & (a > 0)
        box = np.nonzero(m)[0]
        col = colour.astype(np.float32)[box] * lit[m][:, None]
        return _Sprite(idx[m], a[m], col, ht[box, 0, 0], code)

    def crowns(self, t: np.ndarray) -> _Sprite:
        """Tree crowns (N, 7): x, y, radius, height (m), r, g, b; domes lit by the sun."""
        if len(t) == 0:
            return self.boxes(np.zeros((0, 6)), np.zeros((0, 3), np.float32), np.zeros(0, bool))
        t = t[np.argsort(t[:, 3], kind="stable")]  # taller crowns are painted last and win
        x, y = t[:, 0], t[:, 1]
        rad, ht = (t[:, i, None, None].astype(np.float32) for i in (2, 3))
        idx, dx, dy, ok = self.stamps(x, y, float(t[:, 2].max()) * 1.1)
        th = np.arctan2(dy, dx)
        r = rad * (1 + 0.08 * np.sin(3 * th + x[:, None, None].astype(np.float32)))
        rr = np.sqrt(dx * dx + dy * dy)
        a = np.clip((r - rr) / self.gsd + 0.5, 0.0, 1.0)
        z = np.sqrt(np.clip(1.0 - (rr / r) ** 2, 0.0, 1.0))
        lit = (dx * self.sun[0] + dy * self.sun[1]) / r * np.cos(self.elev) + z * np.sin(
            self.elev)
        light = 0.55 + 0.65 * np.clip(lit, 0, 1)
        m = ok & (a > 0)
        col = t[np.nonzero(m)[0], 4:7].astype(np.float32) * light[m][:, None]
        return _Sprite(idx[m], a[m], col, (ht - rad * (1 - z))[m])

    def raise_(self, sprite: _Sprite) -> None:
        """Enter a sprite's heights into the height map (for the cast shadows)."""
        solid = sprite.alpha > 0.5
        np.maximum.at(self.height.reshape(-1), sprite.idx[solid], sprite.height[solid])

    def draw(self, sprite: _Sprite) -> None:
        """Paint a sprite and mark its solid pixels (distractor code or occluder cover)."""
        self.paint(sprite.idx, sprite.colour, sprite.alpha)
        solid = sprite.idx[sprite.alpha > 0.5]
        if sprite.code:
            self.distract.reshape(-1)[solid] = sprite.code
        else:
            self.cover.reshape(-1)[solid] = True

    def cast_shadows(self) -> np.ndarray:
        """Shadow strength (H, W) float32 0..1: a pixel is shaded when an object towards the
        sun rises above the sun ray (height map marched in <= 40 steps), or by ``shadow``."""
        n, h = self.n, self.height
        out = np.zeros((n, n), bool)
        tan_el = np.tan(self.elev)
        length = float(h.max()) / tan_el / self.gsd  # longest shadow, px
        steps = int(min(40, np.ceil(length)))
        for k in range(1, steps + 1):
            dist = k * length / steps
            ox, oy = (round(float(c)) for c in self.sun * dist)
            if abs(ox) >= n or abs(oy) >= n:  # the shadow leaves the frame
                break
            src = h[max(oy, 0):n + min(oy, 0), max(ox, 0):n + min(ox, 0)]
            out[max(-oy, 0):n + min(-oy, 0), max(-ox, 0):n + min(-ox, 0)] |= (
                src > dist * self.gsd * tan_el)
        return np.maximum(out * np.float32(0.85), self.shadow)


def _ground(cv: _Canvas, background: str, noise: dict[str, np.ndarray]) -> np.ndarray:
    """Paint the landscape; returns an (H, W) float32 'vegetation' field in 0..1 used to place
    trees (forest canopy, hedges) later."""
    rng, nb, nm, nf = cv.rng, noise["big"], noise["mid"], noise["fine"]
    shape = nb.shape
    grain = rng.standard_normal(shape, dtype=np.float32)
    veg = np.zeros(shape, np.float32)

    # channel-first (3, H, W) here: numpy broadcasts over a trailing axis of 3 several times
    # slower than over rows
    def rgb(c: tuple | np.ndarray) -> np.ndarray:
        return np.asarray(c, np.float32)[:, None, None]

    def mix(c0: tuple, c1: tuple, t: np.ndarray) -> np.ndarray:
        return rgb(c0) + (rgb(c1) - rgb(c0)) * np.clip(t, 0, 1)[None]

    if background in ("suburb", "city"):
        g = mix((108, 118, 80), (82, 98, 60), 0.5 + 0.35 * nb)
        g += (rgb((152, 144, 112)) - g) * np.clip(0.4 * (nm + 0.6 * nb) - 0.05, 0, 0.8)[None]
        if background == "city":
            pave = mix((150, 148, 144), (178, 174, 166), 0.5 + 0.4 * nm)
            park = np.clip(1.5 * nb - 1.2, 0, 1)[None]
            g = pave * (1 - park) + g * park
        g *= (1 + 0.05 * nf + 0.03 * grain)[None]
        veg = np.clip(0.6 * nb + 0.4 * nm - 0.6, 0, 1)
    elif background == "farmland":
        ang = rng.uniform(0, np.pi)
        u = cv.xs * np.cos(ang) + cv.ys * np.sin(ang)
        v = -cv.xs * np.sin(ang) + cv.ys * np.cos(ang)
        ext = cv.n * cv.gsd * 1.5
        ub = np.cumsum(rng.uniform(60, 220, 40)) - ext
        vb = np.cumsum(rng.uniform(80, 300, 40)) - ext
        iu = np.searchsorted(ub, u)
        shift = rng.uniform(0, 300, len(ub) + 1).astype(np.float32)
        vv = v + shift[iu]
        iv = np.searchsorted(vb, vv)
        fid = iu * 64 + iv
        crops = np.array([(96, 124, 62), (120, 138, 70), (176, 160, 104), (150, 118, 86),
                          (112, 92, 70), (196, 182, 128), (84, 110, 58), (160, 150, 96)],
                         np.float32)
        table_rng = np.random.default_rng(rng.integers(2**32))
        kind = table_rng.integers(len(crops), size=64 * 64)
        tone = table_rng.uniform(0.9, 1.1, (64 * 64, 3)).astype(np.float32)
        rows_ang = table_rng.uniform(0, np.pi, 64 * 64)
        period = table_rng.uniform(1.5, 6.0, 64 * 64)
        fid = fid % (64 * 64)
        g = np.ascontiguousarray((crops[kind] * tone).T)[:, fid]
        ra = rows_ang[fid]
        stripes = np.sin(2 * np.pi * (cv.xs * np.cos(ra) + cv.ys * np.sin(ra)) / period[fid])
        g *= (1 + 0.06 * stripes + 0.05 * nm + 0.03 * nf)[None]
        du = np.minimum(np.abs(u - ub[np.clip(iu - 1, 0, len(ub) - 1)]),
                        np.abs(ub[np.clip(iu, 0, len(ub) - 1)] - u))
        dv = np.minimum(np.abs(vv - vb[np.clip(iv - 1, 0, len(vb) - 1)]),
                        np.abs(vb[np.clip(iv, 0, len(vb) - 1)] - vv))
        edge = np.minimum(du, dv)
        style = rng.integers(3)  # hedgerow, grass margin or ditch
        bw = rng.uniform(1.0, 3.0)
        a = coverage(edge, bw, cv.gsd)
        col = [(60, 82, 46), (130, 140, 92), (70, 72, 58)][style]
        g += (rgb(col) * (1 + 0.1 * nf)[None] - g) * a[None]
        cv.distract[a > 0.5] = DISTRACTORS.index("field_boundary") + 1
        veg = (edge < bw * 1.5) * (style == 0) * np.clip(0.5 + nm, 0, 1)
    elif background == "forest":
        floor = mix((62, 66, 46), (92, 86, 60), 0.5 + 0.4 * nm)
        g = floor * (1 + 0.06 * grain)[None]
        veg = np.clip(1.2 + 0.8 * nb - 0.3 * rng.random(), 0, 1)  # canopy density
    elif background == "desert":
        sand = mix((214, 184, 142), (188, 150, 108), 0.5 + 0.4 * nb)
        ang = rng.uniform(0, np.pi)
        rip = np.sin(2 * np.pi * (cv.xs * np.cos(ang) + cv.ys * np.sin(ang)) /
                     rng.uniform(4, 12) + 3 * nm)
        g = sand * (1 + 0.04 * rip + 0.04 * nf + 0.02 * grain)[None]
        rock = np.clip(1.5 * nm - 1.4, 0, 1)
        g += (rgb((120, 100, 84)) - g) * rock[None]
        veg = np.clip(nf - 1.6, 0, 1)
    elif background == "scrub":
        g = mix((156, 136, 104), (128, 118, 86), 0.5 + 0.4 * nb)
        g *= (1 + 0.06 * nf + 0.04 * grain)[None]
        veg = np.clip(0.9 * nf + 0.5 * nm - 0.2, 0, 1)
    elif background == "snow":
        g = mix((238, 242, 248), (214, 222, 236), 0.5 + 0.5 * nm)
        g *= (1 + 0.015 * nf + 0.01 * grain)[None]
        veg = np.clip(0.8 * nb - 0.2, 0, 1) * (rng.random() < 0.7)
    else:
        raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
    gain = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    for c in range(3):
        np.multiply(g[c], gain[c], out=cv.img[..., c])
    return veg.astype(np.float32)


def _linear_distractors(cv: _Canvas, background: str, near_road: np.ndarray) -> None:
    """Rivers or canals, rail lines and fences (painted before the roads, which cross them on
    bridges and level crossings; a river or rail line that would run along a road is left out)."""
    rng, n, gsd = cv.rng, cv.n, cv.gsd
    p_river = {"suburb": 0.3, "city": 0.25, "farmland": 0.5, "forest": 0.35, "desert": 0.4,
               "scrub": 0.4, "snow": 0.3}[background]
    if rng.random() < p_river:
        canal = rng.random() < 0.35 and background != "desert"
        width = rng.uniform(6, 20) if canal else rng.uniform(8, 40)
        p = rng.uniform(0.15, 0.85, 2) * n
        h = rng.uniform(0, 2 * np.pi)
        bend = 0.0 if canal else 1 / 70 * gsd
        xy = np.r_[_walk(rng, p, h + np.pi, 1.5 * n, 4 / gsd, bend)[::-1],
                   _walk(rng, p, h, 1.5 * n, 4 / gsd, bend)[1:]]
        hw = width / 2 / gsd
        idx, d, _ = line_field(xy, hw + 4 / gsd, n)
        if len(idx) and near_road.reshape(-1)[idx].mean() > 0.15:
            idx = idx[:0]
            d = d[:0]
        if background == "desert":  # a dry wadi: pale sand and pebbles
            water = np.array([226, 206, 170], np.float32)
            bank = np.array([170, 150, 120], np.float32)
        elif background == "snow":
            water = np.array([196, 210, 222], np.float32)  # ice
            bank = np.array([90, 96, 90], np.float32)
        else:
            water = np.array(rng.choice([(38, 58, 72), (50, 72, 80), (74, 80, 66), (28, 40, 46)]),
                             np.float32)
            bank = np.array((150, 150, 146) if canal else (64, 84, 50), np.float32)
        cv.paint(idx, bank, coverage(d, hw + (1.0 if canal else 3.0) / gsd, 1.0) * 0.9)
        cv.paint(idx, water * (1 + 0.04 * rng.standard_normal(len(idx))[:, None]),
                 coverage(d, hw, 1.0))
        code = DISTRACTORS.index("canal" if canal else "river") + 1
        cv.distract.reshape(-1)[idx[d <= hw + 1.0 / gsd]] = code
    if rng.random() < 0.3:  # rail line: ballast, sleepers, two rails
        p = rng.uniform(0.1, 0.9, 2) * n
        h = rng.uniform(0, 2 * np.pi)
        bend = 0.0 if rng.random() < 0.5 else 1 / 600 * gsd
        xy = np.r_[_walk(rng, p, h + np.pi, 1.5 * n, 4 / gsd, bend)[::-1],
                   _walk(rng, p, h, 1.5 * n, 4 / gsd, bend)[1:]]
        tracks = int(rng.integers(1, 3))
        hw = (3.2 if tracks == 1 else 7.0) / 2 / gsd
        idx, d, s = line_field(xy, hw + 1, n)
        if len(idx) and near_road.reshape(-1)[idx].mean() > 0.15:
            idx, d, s = idx[:0], d[:0], s[:0]
        ballast = np.array(rng.choice([(128, 118, 106), (150, 140, 128), (104, 96, 90)]),
                           np.float32)
        cv.paint(idx, ballast * (1 + 0.08 * rng.standard_normal(len(idx))[:, None]),
                 coverage(d, hw, 1.0))
        sleeper = (np.mod(s * gsd, 0.6) < 0.25) & (d < hw * 0.8)
        cv.paint(idx[sleeper], np.array([96, 80, 64], np.float32), 0.5)
        for centre in ([0.0] if tracks == 1 else [-1.9, 1.9]):
            for rail in (-0.72, 0.72):
                a = coverage(d - abs(centre + rail) / gsd, 0.08 / gsd, 1.0) if centre == 0 else \
                    coverage(d - abs(centre) / gsd - rail / gsd, 0.08 / gsd, 1.0)
                a = np.maximum(a, 0.35 * coverage(d - abs(centre + rail) / gsd, 0.5, 1.0))
                cv.paint(idx, np.array([60, 58, 56], np.float32), np.minimum(a * 2, 0.8))
        cv.distract.reshape(-1)[idx[d <= hw]] = DISTRACTORS.index("rail") + 1
    p_fence = {"suburb": 0.6, "city": 0.2, "farmland": 0.6, "forest": 0.15, "desert": 0.3,
               "scrub": 0.5, "snow": 0.5}[background]
    for _ in range(int(rng.integers(1, 6)) if rng.random() < p_fence else 0):
        p = rng.uniform(0, 1, 2) * n
        h = rng.uniform(0, 2 * np.pi)
        xy = _walk(rng, p, h, rng.uniform(0.2, 0.8) * n, 4 / gsd, 0.0)
        idx, d, s = line_field(xy, 1.5, n)
        ok = ~near_road.reshape(-1)[idx]
        idx, d, s = idx[ok], d[ok], s[ok]
        dark = np.array([70, 62, 52] if background != "snow" else [60, 56, 50], np.float32)
        a = np.maximum(coverage(d, 0.12 / gsd, 1.0) * 2.5,
                       coverage(d, 0.3 / gsd, 1.0) * (np.mod(s * gsd, 3.0) < 0.3) * 3)
        cv.paint(idx, dark, np.clip(a, 0, 0.75))
        cv.distract.reshape(-1)[idx[d <= 0.7]] = DISTRACTORS.index("fence") + 1


def _buildings(cv: _Canvas, background: str, roads: list[_Road],
               near_road: np.ndarray) -> np.ndarray:
    """Roofs along the roads (suburb houses, city blocks, farmsteads); (N, 6) boxes."""
    rng, gsd, n = cv.rng, cv.gsd, cv.n
    count = {"suburb": 1.0, "city": 1.0, "farmland": 0.15, "forest": 0.05, "desert": 0.15,
             "scrub": 0.1, "snow": 0.15}[background]
    rows: list[np.ndarray] = []
    big = background == "city"
    town = background in ("suburb", "city")
    for r in roads:
        if rng.random() > count * (1.0 if town else 2.0):
            continue
        ln = r.line
        for side in (-1.0, 1.0):
            m = int(ln.length * gsd / (17 if big else 15)) + 1 if town else int(rng.geometric(0.5))
            length = rng.uniform(16, 50, m) if big else rng.uniform(9, 18, m)
            width = rng.uniform(12, 30, m) if big else rng.uniform(7, 12, m)
            front = r.width_m / 2 + (rng.uniform(3, 6, m) if big else rng.uniform(6, 14, m))
            height = rng.uniform(8, 40, m) if big else rng.uniform(4, 8, m)
            gap = rng.uniform(1, 6, m) if big else rng.uniform(6, 18, m)
            t = (rng.uniform(2, 15) + np.r_[0.0, np.cumsum(length + gap)[:-1]]) / gsd
            t = t[t < ln.length - 5 / gsd]
            k = len(t)
            if k == 0:
                continue
            p = shapely.line_interpolate_point(ln, t)
            p0 = shapely.line_interpolate_point(ln, t - 1)
            p1 = shapely.line_interpolate_point(ln, t + 1)
            tx = (shapely.get_x(p1) - shapely.get_x(p0)) / 2
            ty = (shapely.get_y(p1) - shapely.get_y(p0)) / 2
            nx, ny = -ty * side, tx * side
            off = front[:k] + width[:k] / 2
            rows.append(np.c_[shapely.get_x(p) * gsd + nx * off, shapely.get_y(p) * gsd + ny * off,
                              length[:k], width[:k],
                              np.arctan2(ty, tx) + rng.normal(0, 0.03, k), height[:k]])
    b = np.concatenate(rows) if rows else np.zeros((0, 6))
    if len(b):  # keep whole roofs off every road's verge and apart from each other
        inside = (b[:, 0] > -20) & (b[:, 0] < n * gsd + 20) & (b[:, 1] > -20) & (
            b[:, 1] < n * gsd + 20)
        b = b[inside]
    if len(b):
        ca, sa = np.cos(b[:, 4]), np.sin(b[:, 4])
        corners = np.stack([np.stack([b[:, 0] + (su * b[:, 2] * ca - sv * b[:, 3] * sa) / 2,
                                      b[:, 1] + (su * b[:, 2] * sa + sv * b[:, 3] * ca) / 2], 1)
                            for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))], 1) / gsd
        polys = shapely.polygons(corners)
        r_half = np.hypot(b[:, 2], b[:, 3]) / 2
        ok = np.ones(len(b), bool)
        for r in roads:  # whole roofs stay 1 m off every carriageway
            ok &= shapely.distance(r.line, polys) * gsd > r.width_m / 2 + 1.0
        b = b[ok]
        r_half = r_half[ok]
        keep: list[int] = []
        for i in range(len(b)):
            gap = np.hypot(b[keep, 0] - b[i, 0], b[keep, 1] - b[i, 1])
            if not np.any(gap <= 0.85 * (r_half[keep] + r_half[i])):
                keep.append(i)
        b = b[keep]
    return b


def _paint_roads(cv: _Canvas, roads: list[_Road], background: str,
                 noise: dict[str, np.ndarray]) -> None:
    """Verges, surfaces and markings, road by road (branches first, main roads last)."""
    rng, gsd = cv.rng, cv.gsd
    nm, nf = noise["mid"].reshape(-1), noise["fine"].reshape(-1)
    snow = background == "snow"
    for r in roads:
        hw = r.width_m / 2 / gsd
        idx, d, s = r.idx, r.d, r.s
        sm = s * gsd  # metres along
        dm = d * gsd
        grain = rng.standard_normal(len(idx)).astype(np.float32)
        if r.surface in ("asphalt", "concrete"):
            if r.sidewalk[1] > 0:
                gap, sw = r.sidewalk
                a = coverage(dm - (r.width_m / 2 + gap + sw / 2), sw / 2, gsd)
                cv.paint(idx, np.array([176, 172, 166], np.float32), a * 0.9)
            elif rng.random() < 0.5:  # gravel or grass shoulder
                sh = rng.uniform(0.5, 1.5)
                cv.paint(idx, np.array([160, 152, 136], np.float32),
                         coverage(dm - r.width_m / 2 - sh / 2, sh / 2, gsd) * 0.6)
            if snow:  # snow banks of the plough
                cv.paint(idx, np.array([248, 250, 255], np.float32),
                         coverage(dm - r.width_m / 2 - 1.0, 1.0, gsd) * 0.9)
        if r.surface == "asphalt":
            base = np.array([1.0, 1.0, 1.04], np.float32) * rng.uniform(55, 125)
            shade = 1 + 0.06 * nm[idx] + 0.03 * nf[idx] + 0.03 * grain
            shade -= 0.08 * np.clip(1 - (hw - d) / (1.0 / gsd), 0, 1)
            if r.width_m >= 6:
                lane = r.width_m / 4
                shade -= 0.06 * np.exp(-((np.abs(dm - lane) - 0.8) / 0.45) ** 2)  # wheel tracks
            col = base * shade[:, None]
            if snow:
                col += (np.array([236, 240, 246], np.float32) - col) * np.clip(
                    0.4 * nf[idx] - 0.2, 0, 0.7)[:, None]
            cv.paint(idx, col, coverage(d, hw, 1.0))
            if r.width_m >= 6 and rng.random() < 0.75:
                white = np.array([226, 226, 220], np.float32)
                yellow = np.array([206, 180, 72], np.float32)
                cv.paint(idx, white, coverage(dm - (r.width_m / 2 - 0.45), 0.08, gsd) * 1.6)
                centre = yellow if rng.random() < 0.3 else white
                dash = np.mod(sm, 12.0) < (3.0 if rng.random() < 0.6 else 12.0)
                cv.paint(idx, centre, np.minimum(coverage(dm, 0.1, gsd) * 1.6, 0.9) * dash)
                if r.width_m >= 13:
                    lane_d = np.mod(sm + 6.0, 12.0) < 3.0
                    cv.paint(idx, white, np.minimum(coverage(dm - r.width_m / 4, 0.08, gsd) * 1.6,
                                                    0.9) * lane_d)
        elif r.surface == "concrete":
            base = np.array([1.0, 0.99, 0.96], np.float32) * rng.uniform(150, 205)
            shade = 1 + 0.03 * nm[idx] + 0.02 * nf[idx] + 0.02 * grain
            slab = rng.uniform(4.5, 6.0)
            joint = coverage(np.mod(sm, slab) - slab / 2, slab / 2 - 0.06, gsd)
            shade *= 1 - 0.12 * (1 - joint)
            shade -= 0.1 * coverage(dm, 0.06, gsd) * (r.width_m >= 6)
            tint = rng.uniform(0.85, 1.0)  # weathering: some slabs darker
            shade *= np.where(np.mod(np.floor(sm / slab), 7) == 3, tint, 1.0)
            cv.paint(idx, base * shade[:, None], coverage(d, hw, 1.0))
        else:
            ground = cv.img.reshape(-1, 3)[idx].copy()
            rough = {"gravel": 0.3, "dirt": 0.5, "field_path": 0.6}[r.surface] / gsd
            d_edge = d + rough * (nf[idx] + 0.5 * grain)
            if r.surface == "gravel":
                base = np.array([168, 158, 140], np.float32) * rng.uniform(0.85, 1.1)
                shade = 1 + 0.05 * nm[idx] + 0.08 * grain
                shade += 0.05 * np.exp(-((dm - r.width_m / 4) / 0.5) ** 2)
                alpha = coverage(d_edge, hw, 1.0)
                col = base * shade[:, None]
            elif r.surface == "dirt":
                base = np.array([142, 116, 86], np.float32) * rng.uniform(0.85, 1.15)
                shade = 1 + 0.08 * nm[idx] + 0.07 * grain
                rut = np.exp(-((dm - rng.uniform(0.7, 0.9)) / 0.3) ** 2)
                shade -= 0.12 * rut * (1 if rng.random() < 0.5 else -0.6)
                col = base * shade[:, None]
                if rng.random() < 0.5:  # grass between the ruts
                    grass = np.exp(-(dm / 0.35) ** 2)[:, None]
                    col = col * (1 - grass) + ground * grass
                alpha = coverage(d_edge, hw, 1.0)
            else:  # field path: trampled grass or bare earth, low contrast
                base = np.array([178, 164, 120], np.float32) * rng.uniform(0.85, 1.1)
                col = base * (1 + 0.06 * nm[idx] + 0.08 * grain)[:, None]
                alpha = coverage(d_edge, hw, 1.0) * rng.uniform(0.45, 0.85)
            if snow:
                col += (np.array([230, 234, 240], np.float32) - col) * rng.uniform(0.3, 0.6)
                track = np.exp(-((dm - 0.8) / 0.3) ** 2)[:, None]
                col -= 25 * track
            if background == "desert":
                col += (ground - col) * 0.3
            cv.paint(idx, col, alpha)


def _occluders(cv: _Canvas, roads: list[_Road], background: str, veg: np.ndarray,
               buildings: np.ndarray, near_road: np.ndarray, dnorm: np.ndarray,
               noise: dict[str, np.ndarray]) -> np.ndarray:
    """Roofs, cars on paved roads, tree crowns (roadside rows overhanging the carriageway,
    scattered trees and bushes), woods and forest canopy closing over tracks, and shadows of
    unseen objects. Shadows are cast from the height map and applied to the ground and roads
    first; then roofs, cars, crowns and canopy are painted on top.

    Returns:
        (H, W) float32 shadow strength, 0..1.
    """
    rng, gsd, n = cv.rng, cv.gsd, cv.n
    cars: list[np.ndarray] = []
    density = {"city": 1 / 25, "suburb": 1 / 60}.get(background, 1 / 150)
    for r in roads:
        if r.surface not in ("asphalt", "concrete") and rng.random() < 0.8:
            continue
        ln = r.line
        k = int(rng.poisson(ln.length * gsd * density))
        if k == 0:
            continue
        t = rng.uniform(2, max(ln.length - 2, 3), k)
        p0 = shapely.line_interpolate_point(ln, t - 1)
        p1 = shapely.line_interpolate_point(ln, t + 1)
        p = shapely.line_interpolate_point(ln, t)
        tx = (shapely.get_x(p1) - shapely.get_x(p0)) / 2
        ty = (shapely.get_y(p1) - shapely.get_y(p0)) / 2
        lanes = max(r.width_m / 2 - 1.4, 0.0)
        off = np.where(rng.random(k) < 0.3, rng.uniform(-lanes, lanes, k),
                       lanes * np.where(rng.random(k) < 0.5, 1, -1) * rng.uniform(0.4, 1.0, k))
        cars.append(np.c_[shapely.get_x(p) * gsd - ty * off, shapely.get_y(p) * gsd + tx * off,
                          rng.uniform(4.0, 5.2, k), rng.uniform(1.7, 2.0, k),
                          np.arctan2(ty, tx), np.full(k, 1.5)])
    car_b = np.concatenate(cars) if cars else np.zeros((0, 6))
    car_c = _CAR_PAINTS[rng.integers(len(_CAR_PAINTS), size=len(car_b))] * rng.uniform(
        0.9, 1.1, (len(car_b), 1)).astype(np.float32)
    green = {"snow": np.array([(34, 52, 40), (44, 60, 46)], np.float32),
             "desert": np.array([(104, 104, 70), (90, 94, 62)], np.float32)}.get(
                 background, _GREENS)
    tree_rows: list[np.ndarray] = []
    p_road_trees = {"suburb": 0.7, "city": 0.5, "farmland": 0.4, "forest": 0.6, "desert": 0.1,
                    "scrub": 0.4, "snow": 0.5}[background]
    for r in roads:
        if rng.random() > p_road_trees:
            continue
        ln = r.line
        spacing = rng.uniform(8, 25) / gsd
        t = np.arange(rng.uniform(0, spacing), ln.length, spacing)
        t = np.clip(t + rng.uniform(-0.3, 0.3, len(t)) * spacing, 1, max(ln.length - 1, 1))
        if len(t) == 0:
            continue
        p = shapely.line_interpolate_point(ln, t)
        q = shapely.line_interpolate_point(ln, np.minimum(t + 1, ln.length))
        o = shapely.line_interpolate_point(ln, np.maximum(t - 1, 0))
        tx, ty = shapely.get_x(q) - shapely.get_x(o), shapely.get_y(q) - shapely.get_y(o)
        norm = np.maximum(np.hypot(tx, ty), 1e-9)
        side = np.where(rng.random(len(t)) < 0.5, -1.0, 1.0)
        rad = rng.uniform(2.5, 6.0, len(t))
        off = (r.width_m / 2 + rad * rng.uniform(-0.3, 0.9, len(t))) * side
        x = shapely.get_x(p) * gsd - ty / norm * off
        y = shapely.get_y(p) * gsd + tx / norm * off
        tree_rows.append(np.c_[x, y, rad, rad * rng.uniform(1.5, 2.5, len(t)) + 2,
                               green[rng.integers(len(green), size=len(t))]
                               * rng.uniform(0.85, 1.15, (len(t), 1))])
    n_free = {"suburb": 120, "city": 30, "farmland": 40, "forest": 20, "desert": 40,
              "scrub": 300, "snow": 60}[background] * (n * gsd / 512) ** 2
    free = rng.uniform(0, n * gsd, (int(n_free), 2))
    fr, fc = np.clip(free / gsd, 0, n - 1).astype(int).T[::-1]
    free = free[~near_road[fr, fc]]
    small = background in ("scrub", "desert")
    rad = rng.uniform(1.0, 2.5, len(free)) if small else rng.uniform(2.0, 5.5, len(free))
    tree_rows.append(np.c_[free, rad, rad * rng.uniform(1.0, 2.0, len(free)) + (0 if small else 2),
                           green[rng.integers(len(green), size=len(free))]
                           * rng.uniform(0.85, 1.15, (len(free), 1))])
    trees = np.concatenate(tree_rows) if tree_rows else np.zeros((0, 7))
    # woods and forest: a canopy of crown-sized bumps; over tracks it may close from the edges
    canopy = np.zeros((n, n), bool)
    if veg.max() > 0 and background not in ("desert", "scrub", "city"):
        crown = noise["crown"]
        keep = rng.uniform(0.5, 2.0) if background == "forest" else 1.6
        canopy = (veg > 0.35) & (crown > rng.uniform(-1.6, -0.8)) & (dnorm > keep)
        lit = crown.copy()  # + slope towards the sun (one-pixel differences)
        lit[:, 1:] += np.float32(0.7 * cv.sun[0]) * (crown[:, :-1] - crown[:, 1:])
        lit[1:] += np.float32(0.7 * cv.sun[1]) * (crown[:-1] - crown[1:])
        shade = np.clip(0.8 + 0.18 * lit[canopy], 0.45, 1.3)[:, None]
        mix = np.clip(0.5 + 0.5 * noise["big"][canopy], 0, 1)[:, None]
        col = (green[0] * mix + green[-1] * (1 - mix)) * shade
        cv.height = np.maximum(cv.height, canopy * np.float32(rng.uniform(8, 14)))
    for _ in range(int(rng.integers(0, 4))):  # shadows of unseen objects
        c = rng.uniform(0, n * gsd, 2)
        ln_m, wd_m, ang = rng.uniform(5, 30), rng.uniform(3, 10), rng.uniform(0, np.pi)
        idx, dx, dy, ok = cv.stamps(c[:1], c[1:], float(np.hypot(ln_m, wd_m)) / 2)
        a = coverage(dx * np.cos(ang) + dy * np.sin(ang), ln_m / 2, gsd) * coverage(
            -dx * np.sin(ang) + dy * np.cos(ang), wd_m / 2, gsd)
        m = ok & (a > 0)
        np.maximum.at(cv.shadow.reshape(-1), idx[m], 0.8 * a[m])
    roof_c = _ROOFS[rng.integers(len(_ROOFS), size=len(buildings))] * rng.uniform(
        0.9, 1.1, (len(buildings), 1)).astype(np.float32)
    if background == "snow":
        roof_c += (np.float32(240) - roof_c) * 0.7
    pitched = rng.random(len(buildings)) < (0.15 if background == "city" else 0.7)
    sprites = [cv.boxes(buildings, roof_c, pitched, DISTRACTORS.index("building") + 1),
               cv.boxes(car_b, car_c, np.ones(len(car_b), bool)), cv.crowns(trees)]
    for sp in sprites:
        cv.raise_(sp)
    shadow = cv.cast_shadows()
    for c in range(3):  # per channel: faster than broadcasting over the last axis
        cv.img[..., c] *= 1 - shadow * (1 - _SHADOW_TINT[c])
    if canopy.any():
        cv.img[canopy] = col
        cv.cover |= canopy
    for sp in sprites:
        cv.draw(sp)
    return shadow


def generate_scene(seed: int, size_px: int = 512, gsd_m: float = 1.0, *,
                   background: str | None = None, surfaces: tuple[str, ...] | None = None,
                   ) -> SyntheticScene:
    """Draw one synthetic aerial scene with exact road labels.

    Args:
        seed: integer >= 0; the same (seed, size_px, gsd_m, background, surfaces) always give
            identical arrays (one :class:`numpy.random.Generator` drives every draw).
        size_px: width = height of the scene, pixels (>= 32).
        gsd_m: ground sample distance, metres per pixel (0.2-3); sizes of roads, houses, cars
            and trees are drawn in metres.
        background: force a landscape of :data:`BACKGROUNDS` (None: drawn from the seed).
        surfaces: restrict road surfaces to these of :data:`SURFACES` (None: all, weighted by
            landscape).

    Returns:
        The :class:`SyntheticScene`.

    Raises:
        ValueError: unknown background or surface, size below 32 px, GSD outside 0.2-3 m.
    """
    if size_px < 32:
        raise ValueError(f"size_px={size_px}; expected at least 32")
    if not 0.2 <= gsd_m <= 3.0:
        raise ValueError(f"gsd_m={gsd_m}; expected 0.2-3 m/px")
    allowed = tuple(surfaces) if surfaces else SURFACES
    if bad := [s for s in allowed if s not in SURFACES]:
        raise ValueError(f"unknown surface(s) {bad}; expected some of {SURFACES}")
    if background is not None and background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
    rng = np.random.default_rng(seed)
    drawn = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    background = background or drawn
    n = int(size_px)
    roads = plan_roads(rng, n, gsd_m, background, allowed)
    road = np.zeros(n * n, bool)
    near_road = np.zeros(n * n, bool)
    dnorm = np.full(n * n, np.inf, np.float32)  # distance to the nearest road / its half width
    verge = 2.5 / gsd_m + 1.0  # keeps trees, fences and the canopy's seeds off the verge
    for r in roads:
        hw = r.width_m / 2 / gsd_m
        if background in ("suburb", "city") and r.surface in ("asphalt", "concrete") and (
                rng.random() < 0.6):
            r.sidewalk = (float(rng.uniform(0.5, 3.0)), float(rng.uniform(1.2, 2.5)))
        reach = hw + max(2.5, sum(r.sidewalk)) / gsd_m + 1.5  # painted beyond the edge
        r.idx, r.d, r.s = line_field(np.asarray(r.line.coords, np.float64), reach, n,
                                     exact_at=hw)
        road[r.idx[r.d <= hw]] = True
        near_road[r.idx[r.d <= hw + verge]] = True
        dnorm[r.idx] = np.minimum(dnorm[r.idx], r.d / hw)
    road, near_road, dnorm = road.reshape(n, n), near_road.reshape(n, n), dnorm.reshape(n, n)
    cv = _Canvas(n, gsd_m, rng, background)
    noise = {"big": cv.noise(150.0, 16.0), "mid": cv.noise(30.0, 2.0),
             "fine": cv.noise(4.0, 0.7)}
    veg = _ground(cv, background, noise)
    if veg.max() > 0 and background not in ("desert", "scrub", "city"):
        noise["crown"] = cv.noise(6.0, 1.2)
    _linear_distractors(cv, background, near_road)
    buildings = _buildings(cv, background, roads, near_road)
    _paint_roads(cv, roads, background, noise)
    shadow = _occluders(cv, roads, background, veg, buildings, near_road, dnorm, noise)
    img = cv.img  # optics: a [1, 2, 1] / 4 blur in x and y (sigma ~0.7 px)
    img[1:-1] = 0.5 * img[1:-1] + 0.25 * (img[:-2] + img[2:])
    img[:, 1:-1] = 0.5 * img[:, 1:-1] + 0.25 * (img[:, :-2] + img[:, 2:])
    haze = np.float32(rng.uniform(0, 0.1))  # haze towards a bright grey, then sensor noise
    grain = rng.standard_normal(img.shape, dtype=np.float32)
    grain *= np.float32(rng.uniform(0.8, 3.0))
    grain += haze * np.float32(200) + np.float32(0.5)  # + 0.5: truncation rounds
    img *= 1 - haze
    img += grain
    image = np.clip(img, 0, 255, out=img).astype(np.uint8)
    distract = np.where(road, 0, cv.distract).astype(np.uint8)
    occluded = road & (cv.cover | (shadow > 0.25))
    return SyntheticScene(
        image=image, road=road, centrelines=tuple(r.line for r in roads),
        widths_m=tuple(float(r.width_m) for r in roads),
        surfaces=tuple(r.surface for r in roads), background=background,
        distractors=distract, occluded=occluded, gsd_m=float(gsd_m), seed=int(seed),
    )


# --- training and evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticTiles:
    """Synthetic crops mixed into training (``TrainConfig.synthetic_share``).

    Item ``index`` of epoch ``epoch`` is synthetic with probability ``share``; the decision and
    the scene seed come from their own stream, ``numpy.random.default_rng([seed, epoch, index,
    0x5E17])``, so the real crops of the other items are those of a run without synthetic data
    and an interrupted run resumes with the same scenes. Scene seeds lie in [0, 2**62), below
    :data:`TEST_SEED_BASE` (see :func:`synthetic_test_set`).

    Attributes:
        share: probability that a training crop is synthetic, 0..1.
        gsd_m: training GSD, metres per pixel.
        seed: the run's seed.
    """

    share: float
    gsd_m: float
    seed: int = 0

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index, _SYNTH_SALT])

    def picks(self, epoch: int, index: int) -> bool:
        """Whether item ``index`` of ``epoch`` is a synthetic crop."""
        return self.share > 0 and bool(self._rng(epoch, index).random() < self.share)

    def scene_seed(self, epoch: int, index: int) -> int:
        """Seed of the scene of item ``index`` of ``epoch``, in [0, 2**62)."""
        rng = self._rng(epoch, index)
        rng.random()
        return int(rng.integers(0, TEST_SEED_BASE))

    def crop(self, epoch: int, index: int, size_px: int,
             zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A freshly generated scene as a training crop.

        Args:
            epoch: 0-based epoch.
            index: item of the epoch.
            size_px: crop side, pixels.
            zoom: scale-jitter factor of :class:`roadx.train.data.PatchDataset` (> 1: the
                content looks larger, i.e. drawn at ``gsd_m / zoom``), clipped to the
                generator's 0.2-3 m/px.

        Returns:
            (image (S, S, 3) uint8 RGB, road (S, S) bool, valid (S, S) bool, all True).
        """
        gsd = float(np.clip(self.gsd_m / zoom, 0.2, 3.0))
        scene = generate_scene(self.scene_seed(epoch, index), size_px, gsd)
        return scene.image, scene.road, np.ones_like(scene.road)


def synthetic_test_set(n: int, seed: int = 0, *, size_px: int = 512,
                       gsd_m: float = 1.0) -> list[SyntheticScene]:
    """``n`` evaluation scenes whose seeds never occur in training.

    Scene ``k`` has the seed ``TEST_SEED_BASE + seed * 2**20 + k`` (2**62 and above), while
    :class:`SyntheticTiles` draws training seeds below 2**62. Landscapes cycle through
    :data:`BACKGROUNDS` (scene k has ``BACKGROUNDS[k % 7]``) so small sets cover all of them.

    Args:
        n: number of scenes, 0 < n <= 2**20.
        seed: which test set (>= 0).
        size_px: scene side, pixels.
        gsd_m: metres per pixel.

    Returns:
        The scenes, in order.

    Raises:
        ValueError: ``n`` or ``seed`` out of range.
    """
    if not 0 < n <= _TEST_SET_STRIDE or seed < 0:
        raise ValueError(f"n={n}, seed={seed}; expected 0 < n <= 2**20 and seed >= 0")
    base = TEST_SEED_BASE + seed * _TEST_SET_STRIDE
    return [generate_scene(base + k, size_px, gsd_m, background=BACKGROUNDS[k % len(BACKGROUNDS)])
            for k in range(n)]
