"""Vectorisation parameters and pixel-size handling.

All thresholds are in metres (``_m``, ``_m2``) so one parameter set works at any ground
sample distance; they are converted to pixels with the scene's pixel size at the point of
use. Defaults follow the CRESI post-processing recipe and the best-practice list in
``../shared/specs/pipeline-anchors.md`` §2.A and §5, and were checked against the SpaceNet
ground-truth road mask in ``tests/test_vectorize_real.py``.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from roadx.errors import InputError


MAX_REACH_M = 200.0
"""Longest gap bridge or snap distance accepted, metres."""


@dataclass(frozen=True, slots=True)
class VectorizeParams:
    """How a road probability map becomes a line network.

    Args:
        threshold: high hysteresis threshold; a mask component must contain at least one
            pixel with ``p > threshold`` (default 0.5, the model's decision boundary).
        threshold_low: low hysteresis threshold; pixels with ``p > threshold_low`` join a
            component that reaches the high threshold (default 0.3, CRESI's 0.25–0.3), so
            weak links between confident road stay connected.
        min_area_m2: mask components smaller than this are removed (default 30 m², ~330 px
            at 0.3 m; CRESI removes 300 px).
        max_hole_m2: background holes inside the mask up to this area are filled, so the
            skeleton does not turn them into small loops (default 50 m², ~8 m across; larger
            islands such as roundabouts survive).
        closing_m: half-size of a square binary closing applied to the mask (rounded to
            whole pixels), bridging hairline gaps and notches (default 0.6 m, i.e. 3 x 3 px
            at 0.5 m and 5 x 5 px at 0.3 m; 0 turns it off).
        min_spur_m: dead-end branches shorter than this are pruned unless they end at the
            scene boundary or at nodata (default 10 m, CRESI 10–12 m).
        min_component_m: connected pieces of network shorter than this in total are
            dropped; pieces that touch the boundary need only ``min_spur_m`` (default 30 m).
        min_loop_m: self-loops shorter than this are removed (default 10 m).
        simplify_m: Douglas–Peucker tolerance; 0 keeps every skeleton pixel (default 1 m,
            CRESI's ``rdp_epsilon``).
        boundary_px: an end closer than this (plus the local road half-width) to the scene
            edge or to nodata counts as a cut road, not a spur (default 3 px).
        band_rows: preferred height of the row bands a caller feeds to
            :class:`~roadx.vectorize.BandVectorizer` (default 1024 rows; any height works).
        halo_px: rows of context kept above and below the rows being skeletonised; must
            exceed the half-width of the widest road in pixels (default 96 px, ~29 m of road
            width at 0.3 m).
        min_edge_prob: dead-end branches and isolated pieces whose mean road probability
            is below this are pruned whatever their length (cut ends excepted, bridged
            lines never); 0 turns it off (default 0.0, see the README's topology table).
        bridge_m: gap bridging reach: a dead end is joined to a road (or another dead end)
            up to this far ahead of it along the least-cost path over the probability map,
            when the path's geometric-mean probability reaches ``bridge_min_prob`` (default
            30 m; 0 turns bridging off).
        bridge_min_prob: lowest geometric-mean road probability along a bridge (default
            0.1: a faint road under a canopy scores 0.15–0.3, bare ground below 0.05).
        bridge_angle_deg: half-angle of the cone ahead of a dead end, around its direction
            of travel, in which bridges are searched (default 60°).
        snap_m: a dead end this close to another road, ahead of it (within 60° of its
            direction; counted from the end of the road surface, i.e. plus both roads'
            half-widths), is joined to it whatever the probability: a T-junction (default
            3 m; 0 turns it off).
        merge_junctions_m: two junctions joined by an edge shorter than this (or than
            1.5 times that edge's road width) merge into one node: the two degree-3 nodes
            of a crossing become one degree-4 node (default 8 m; 0 turns it off).
        duplicate_m: two lines between the same two nodes that stay within this distance
            of each other everywhere (Hausdorff) are one road drawn twice (both edges of a
            wide road, a median) and collapse into their centreline (default 15 m; 0 turns
            it off).

    Raises:
        roadx.errors.InputError: when a threshold is outside ``(0, 1)``, ``threshold_low``
            exceeds ``threshold``, a size is negative, a probability outside ``[0, 1)``, the
            bridge angle outside ``(0, 90]``, ``bridge_m`` or ``snap_m`` above
            :data:`MAX_REACH_M`, or ``halo_px < 16``.
    """

    threshold: float = 0.5
    threshold_low: float = 0.3
    min_area_m2: float = 30.0
    max_hole_m2: float = 50.0
    closing_m: float = 0.6
    min_spur_m: float = 10.0
    min_component_m: float = 30.0
    min_loop_m: float = 10.0
    simplify_m: float = 1.0
    boundary_px: int = 3
    band_rows: int = 1024
    halo_px: int = 96
    min_edge_prob: float = 0.0
    bridge_m: float = 30.0
    bridge_min_prob: float = 0.1
    bridge_angle_deg: float = 60.0
    snap_m: float = 3.0
    merge_junctions_m: float = 8.0
    duplicate_m: float = 15.0

    @property
    def repair(self) -> bool:
        """True when any network repair (bridging, snapping, merging, de-duplication) is on."""
        return (self.bridge_m > 0 or self.snap_m > 0 or self.merge_junctions_m > 0
                or self.duplicate_m > 0)

    def without_repair(self) -> "VectorizeParams":
        """Return a copy with gap bridging, junction snapping, junction merging and
        duplicate collapsing off (pruning and simplification unchanged)."""
        return dataclasses.replace(
            self, bridge_m=0.0, snap_m=0.0, merge_junctions_m=0.0, duplicate_m=0.0
        )

    def with_threshold(self, threshold: float) -> "VectorizeParams":
        """Return a copy with hysteresis ``threshold`` (high) and ``0.6 × threshold`` (low).

        The default pair 0.5 / 0.3 keeps this ratio (CRESI thresholds 0.25–0.3).

        Raises:
            roadx.errors.InputError: when ``threshold`` is outside ``(0, 1)``.
        """
        return dataclasses.replace(self, threshold=threshold, threshold_low=0.6 * threshold)

    def __post_init__(self) -> None:
        if not (0.0 < self.threshold < 1.0 and 0.0 < self.threshold_low < 1.0):
            raise InputError(
                f"thresholds must lie in (0, 1), got threshold={self.threshold} and "
                f"threshold_low={self.threshold_low}; use e.g. 0.5 and 0.3"
            )
        if self.threshold_low > self.threshold:
            raise InputError(
                f"threshold_low={self.threshold_low} is above threshold={self.threshold}; "
                "the low hysteresis threshold must not exceed the high one"
            )
        sizes = {
            "min_area_m2": self.min_area_m2,
            "max_hole_m2": self.max_hole_m2,
            "closing_m": self.closing_m,
            "min_spur_m": self.min_spur_m,
            "min_component_m": self.min_component_m,
            "min_loop_m": self.min_loop_m,
            "simplify_m": self.simplify_m,
            "boundary_px": self.boundary_px,
            "bridge_m": self.bridge_m,
            "snap_m": self.snap_m,
            "merge_junctions_m": self.merge_junctions_m,
            "duplicate_m": self.duplicate_m,
        }
        for name, value in sizes.items():
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {value}")
        for name, value in (("min_edge_prob", self.min_edge_prob),
                            ("bridge_min_prob", self.bridge_min_prob)):
            if not (0.0 <= value < 1.0):
                raise InputError(f"{name} must lie in [0, 1), got {value}")
        for name, value in (("bridge_m", self.bridge_m), ("snap_m", self.snap_m)):
            if value > MAX_REACH_M:
                raise InputError(
                    f"{name}={value:g} m is longer than any occlusion; use at most "
                    f"{MAX_REACH_M:g} m (the vectoriser keeps that many metres of rows in "
                    "memory around every dead end)"
                )
        if not (0.0 < self.bridge_angle_deg <= 90.0):
            raise InputError(
                f"bridge_angle_deg must lie in (0, 90] degrees, got {self.bridge_angle_deg}"
            )
        if self.band_rows < 1:
            raise InputError(f"band_rows must be >= 1, got {self.band_rows}")
        if self.halo_px < 16:
            raise InputError(
                f"halo_px={self.halo_px} is too small to skeletonise across band seams; "
                "use at least 16 px (default 96)"
            )


@dataclass(frozen=True, slots=True)
class PixelSize:
    """Ground size of one pixel in metres, per axis (``row`` = y, ``col`` = x)."""

    row_m: float
    col_m: float

    @property
    def gsd_m(self) -> float:
        """Geometric mean pixel size in metres (``sqrt(row_m * col_m)``)."""
        return math.sqrt(self.row_m * self.col_m)

    @property
    def area_m2(self) -> float:
        """Ground area of one pixel in square metres."""
        return self.row_m * self.col_m

    @classmethod
    def parse(cls, pixel_size_m: float | tuple[float, float]) -> "PixelSize":
        """Build from a scalar (square pixels) or a ``(row_m, col_m)`` pair.

        Raises:
            roadx.errors.InputError: when a size is not a finite positive number.
        """
        try:
            if np.ndim(pixel_size_m) == 0:
                row_m = col_m = float(pixel_size_m)  # type: ignore[arg-type]
            else:
                row_m, col_m = (float(v) for v in pixel_size_m)  # type: ignore[union-attr]
        except (TypeError, ValueError) as err:
            raise InputError(
                f"pixel_size_m must be a number or a (row_m, col_m) pair, got {pixel_size_m!r}"
            ) from err
        for value in (row_m, col_m):
            if not (math.isfinite(value) and value > 0):
                raise InputError(
                    f"pixel_size_m must be finite and > 0 metres, got {pixel_size_m!r}; "
                    "pass the ground sample distance of the probability raster"
                )
        return cls(row_m, col_m)
