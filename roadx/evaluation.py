"""``roadx eval`` as a library call: compare a road prediction with ground truth.

:func:`evaluate` reads both inputs through :mod:`roadx.io.reference`, reprojects lines into
the UTM zone of the ground truth's centre (lengths, buffers, radii in metres), clips them to
the area of interest and computes pixel metrics (:mod:`roadx.metrics.pixel`, when an input is a
raster) and network metrics (:func:`roadx.metrics.network.compare_networks`: CCQ, APLS,
junctions, summaries; then TOPO, :func:`roadx.metrics.topo.topo`, and APLS per tile,
:func:`roadx.metrics.apls.apls_tiled`, unless switched off).

Inputs without CRS are compared in a *local metric frame* (:data:`LOCAL_FRAME`) instead of
UTM, with every metric: roadx's own outputs for an image without georeferencing (lines and
probability GeoTIFF at ``x = col * gsd``, ``y = -row * gsd``, metres), rasters with a
geotransform but no CRS (units taken as metres), and, with ``gsd_m`` (``roadx eval
--gsd``), plain masks and images placed the way ``roadx predict --gsd`` places them.
Plain masks without ``gsd_m`` are compared pixel by pixel, pixel metrics only.
With ``report_dir`` it writes ``report.json``, ``diff.gpkg`` (layers ``missed``, ``spurious``,
``matched``) and ``comparison.png``.
"""

import contextlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from roadx.errors import EvaluationError, InputError, OutputError, OutputExistsError, SceneError
from roadx.io import reference as ref
from roadx.metrics.apls import AplsParams, TiledAplsResult, apls_tiled
from roadx.metrics.figure import Underlay, mask_overlay, plot_comparison
from roadx.metrics.graph import lines_to_graph
from roadx.metrics.network import NetworkComparison, NetworkParams, compare_networks
from roadx.metrics.pixel import PixelReport, pixel_report
from roadx.metrics.topo import TopoParams, TopoResult, topo

logger = logging.getLogger(__name__)
REPORT_FILES = ("report.json", "diff.gpkg", "comparison.png")
MAX_SPAN_M = 1_000_000.0
"""Widest area ``roadx eval`` compares (metres in the UTM zone of the ground truth): beyond
it one UTM zone distorts lengths too much, and the lines are most likely wrong."""
MAX_AREA_KM2 = 10_000.0
"""Largest compared area (bounding box) evaluated without ``force``: about 62,500 APLS tiles
of 400 m and millions of TOPO marbles."""
_GT_THRESHOLD = 0.5  # ground-truth rasters are masks: road where value >= 0.5
LOCAL_FRAME = CRS.from_wkt(
    'ENGCRS["roadx local metric frame (no CRS)",EDATUM["inputs without CRS"],CS[Cartesian,2],'
    'AXIS["x",east,ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["y",north,ORDER[2],LENGTHUNIT["metre",1]]]'
)
"""The metric "CRS" of inputs without CRS (an engineering CRS, metres). Every such input is
given this one object, so geopandas' ``to_crs`` between them is a no-op; it never reaches an
output file (``diff.gpkg`` is written without CRS then)."""
LOCAL_FRAME_NAME = "none: local metric frame of inputs without CRS (metres)"


@dataclass(frozen=True, slots=True)
class EvalParams:
    """Parameters of ``roadx eval`` (each maps 1:1 onto a CLI option).

    Attributes:
        threshold: probability threshold of raster predictions (pixel metrics, vectorising).
        rho_px: relaxed precision / recall tolerance ρ, pixels.
        buffer_m: CCQ buffer τ, metres.
        apls_step_m: APLS control-node spacing, metres.
        apls_snap_m: APLS snapping distance, metres.
        apls_min_path_m: shortest source path APLS scores, metres.
        apls_max_nodes: control nodes per graph before APLS samples them.
        junction_radius_m: junction matching radius, metres.
        mask_width_m: width at which road lines are burnt into masks for pixel metrics, metres.
        seed: seed of the APLS node sample and of the TOPO seed sample.
        topo: compute TOPO (Biagioni & Eriksson 2012, Sat2Graph variant).
        topo_radius_m: TOPO propagation distance from each seed, metres.
        topo_interval_m: TOPO marble / hole spacing, metres.
        topo_match_m: TOPO marble-hole matching distance, metres.
        apls_tiles: compute APLS per tile, averaged (as SpaceNet scored it).
        apls_tile_m: side of the APLS tiles, metres.
    """

    threshold: float = 0.5
    rho_px: float = 3.0
    buffer_m: float = 3.0
    apls_step_m: float = 50.0
    apls_snap_m: float = 4.0
    apls_min_path_m: float = 10.0
    apls_max_nodes: int = 1000
    junction_radius_m: float = 10.0
    mask_width_m: float = 4.0
    seed: int = 0
    topo: bool = True
    topo_radius_m: float = 300.0
    topo_interval_m: float = 5.0
    topo_match_m: float = 10.0
    apls_tiles: bool = True
    apls_tile_m: float = 400.0

    def network_params(self) -> NetworkParams:
        """The :class:`NetworkParams` of these settings."""
        apls = AplsParams(self.apls_step_m, self.apls_snap_m, self.apls_min_path_m,
                          self.apls_max_nodes, self.seed)
        return NetworkParams(self.buffer_m, apls, self.junction_radius_m)

    def topo_params(self) -> TopoParams:
        """The :class:`TopoParams` of these settings (other TOPO parameters at defaults)."""
        return TopoParams(radius_m=self.topo_radius_m, interval_m=self.topo_interval_m,
                          match_m=self.topo_match_m, seed=self.seed)


@dataclass
class EvalReport:
    """Everything ``roadx eval`` measured, with its inputs, parameters and notes."""

    prediction: str
    ground_truth: str
    metric_crs: str | None
    params: EvalParams
    pixel: PixelReport | None = None
    network: NetworkComparison | None = None
    topo: TopoResult | None = None
    apls_tiles: TiledAplsResult | None = None
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the report (the diff lines are not included)."""
        net = self.network
        return {
            "prediction": self.prediction,
            "ground_truth": self.ground_truth,
            "metric_crs": self.metric_crs,
            "params": asdict(self.params),
            "pixel": self.pixel.to_dict() if self.pixel else None,
            "ccq": net.ccq.to_dict() if net else None,
            "apls": net.apls.to_dict() if net else None,
            "junctions": net.junctions.to_dict() if net else None,
            "topo": self.topo.to_dict() if self.topo else None,
            "apls_tiles": self.apls_tiles.to_dict() if self.apls_tiles else None,
            "summary": {
                "prediction": net.pred_summary.to_dict(),
                "ground_truth": net.gt_summary.to_dict(),
            } if net else None,
            "notes": self.notes,
            "outputs": self.outputs,
        }


@dataclass
class _Side:
    """One loaded input: lines (source CRS) or a raster layer."""

    path: Path
    lines: gpd.GeoSeries | None = None
    raster: ref.RasterLayer | None = None


def _load(path: Path, reference: Path | None, like: ref.RasterGrid | None, role: str,
          gsd_m: float | None = None) -> _Side:
    kind = ref.input_kind(path)
    if kind == "vector":
        return _Side(path, lines=ref.read_lines(path, allow_no_crs=True).geometry)
    if kind == "pixel_csv":
        if reference is None:
            raise InputError(
                f"{path} holds pixel-coordinate WKT; pass --pred-transform-from RASTER (or "
                "--image RASTER) with the image it was made from, to georeference it."
            )
        return _Side(path, lines=ref.read_pixel_wkt_csv(path, reference=reference).geometry)
    layer = ref.read_raster_layer(path, like=like, gsd_m=gsd_m)
    logger.debug("%s %s: raster %dx%d", role, path, layer.grid.width, layer.grid.height)
    return _Side(path, raster=layer)


def _union_in(frame: gpd.GeoDataFrame, crs: CRS | None) -> BaseGeometry:
    if crs is not None and frame.crs is not None:
        frame = frame.to_crs(crs)
    return shapely.union_all(frame.geometry.values)


def _pixel_size_m(grid: ref.RasterGrid, utm: CRS) -> tuple[float, float]:
    cx, cy = grid.width / 2, grid.height / 2
    pts = [grid.transform @ (cx, cy), grid.transform @ (cx + 1, cy), grid.transform @ (cx, cy + 1)]
    xy = gpd.GeoSeries(shapely.points(pts), crs=grid.crs).to_crs(utm)
    return float(xy[0].distance(xy[2])), float(xy[0].distance(xy[1]))


def _lines_utm(side: _Side, utm: CRS, threshold: float) -> list[BaseGeometry]:
    """Lines of one side in the metric CRS; a raster is vectorised (hysteresis low 0.6 x).

    Raises:
        InputError: lines that cannot be placed in ``utm`` (coordinates outside the valid
            area of their CRS, which the transformation turns into infinities).
    """
    if side.lines is not None:
        lines = side.lines.to_crs(utm)
        xy = shapely.get_coordinates(lines.values)
        if not np.isfinite(xy).all():
            raise InputError(
                f"{side.path} has coordinates that cannot be placed in {utm.to_string()} (outside "
                f"the valid area of its CRS {side.lines.crs.to_string()}?); check its CRS and "
                "coordinates."
            )
        return list(lines.values)
    assert side.raster is not None
    from roadx.vectorize import VectorizeParams, vectorize

    grid = side.raster.grid
    vec = VectorizeParams(threshold=threshold, threshold_low=0.6 * threshold)
    net = vectorize(
        side.raster.values, transform=grid.transform, crs=grid.crs,
        pixel_size_m=_pixel_size_m(grid, utm), params=vec,
    )
    return list(net.edges.geometry.to_crs(utm).values)


def _values(side: _Side, grid: ref.RasterGrid, utm: CRS | None, width_m: float) -> np.ndarray:
    """Raster values in [0, 1] (NaN nodata) of one side on ``grid``; lines are burnt in."""
    if side.raster is not None:
        return side.raster.values
    assert side.lines is not None and utm is not None
    polys = side.lines.to_crs(utm).buffer(width_m / 2).to_crs(grid.crs)
    return ref.rasterize_mask(list(polys.values), grid).astype(np.float32)


def _clip(lines: list[BaseGeometry], region: BaseGeometry | None,
          ignored: BaseGeometry | None) -> list[BaseGeometry]:
    geoms = np.asarray([g for g in lines if g is not None and not g.is_empty], dtype=object)
    if region is not None and len(geoms):
        geoms = shapely.intersection(geoms, region)
    if ignored is not None and len(geoms):
        geoms = shapely.difference(geoms, ignored)
    return [g for g in geoms if not g.is_empty and g.length > 0]


def evaluate(
    pred: str | Path,
    gt: str | Path,
    *,
    params: EvalParams = EvalParams(),
    image: str | Path | None = None,
    pred_transform_from: str | Path | None = None,
    aoi: str | Path | None = None,
    ignore: str | Path | None = None,
    report_dir: str | Path | None = None,
    overwrite: bool = False,
    force: bool = False,
    gsd_m: float | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> EvalReport:
    """Compare a road prediction with ground truth; optionally write the report folder.

    Args:
        pred: road vectors (GPKG/GeoJSON/SHP), a probability / mask raster, or a CSV of
            pixel WKT lines (needs ``pred_transform_from`` or ``image``).
        gt: road centreline vectors or a mask raster / image.
        params: see :class:`EvalParams`.
        image: the scene image, for the figure underlay and the default AOI (its footprint).
        pred_transform_from: raster whose pixel grid a pixel-WKT CSV refers to.
        aoi: polygon file (or raster footprint) limiting the comparison; default: the image,
            else the prediction raster's footprint, else everything.
        ignore: polygon file of regions left out (watermarks, no-data).
        report_dir: folder for ``report.json``, ``diff.gpkg`` and ``comparison.png``
            (created if missing; checked before any work; the three files are put in place
            together, after all of them were written).
        overwrite: replace existing report files.
        force: evaluate areas larger than :data:`MAX_AREA_KM2` (up to :data:`MAX_SPAN_M`).
        gsd_m: metres per pixel of rasters without georeferencing (masks, the image): they
            are placed at ``x = col * gsd_m``, ``y = -row * gsd_m``, where ``roadx predict
            --gsd`` puts its outputs, and compared in the local metric frame with every
            metric. Ignored (with a note) when every input has a CRS.
        on_stage: called with a stage name ("read", "graphs", "ccq", "apls", ...).

    Returns:
        :class:`EvalReport`.

    Raises:
        InputError: unreadable input, inputs that cannot be aligned (a raster without
            georeferencing beside an input in metres, without ``gsd_m``), lines with NaN,
            infinite or out-of-range coordinates, or ``gsd_m`` not positive.
        SceneError: one input has a CRS and the other has none.
        EvaluationError: empty ground truth, no overlap between prediction and ground truth,
            or lines spanning more than :data:`MAX_SPAN_M` (or :data:`MAX_AREA_KM2` without
            ``force``).
        OutputError: ``report_dir`` is a file or cannot be created or written.
        OutputExistsError: report files exist and ``overwrite`` is False.
    """
    stage = on_stage or (lambda name: None)
    pred, gt = Path(pred), Path(gt)
    if gsd_m is not None and not (math.isfinite(gsd_m) and gsd_m > 0):
        raise InputError(f"--gsd must be a positive number of metres per pixel, got {gsd_m}.")
    out_dir = Path(report_dir) if report_dir is not None else None
    if out_dir is not None:
        _check_report_dir(out_dir, overwrite)
    stage("read")
    reference = Path(pred_transform_from or image) if (pred_transform_from or image) else None
    p_side = _load(pred, reference, None, "prediction", gsd_m)
    g_side = _load(gt, reference, p_side.raster.grid if p_side.raster else None, "ground truth",
                   gsd_m)
    frame = _common_frame(p_side, g_side)
    if frame == "pixels":
        return _evaluate_pixel_space(p_side, g_side, params, image, aoi, ignore, out_dir,
                                     overwrite, stage)
    local = frame == "local"
    p_side, g_side = _in_frame(p_side, local), _in_frame(g_side, local)
    grids = [s.raster.grid for s in (p_side, g_side) if s.raster is not None]

    footprint_src = image or (p_side.path if p_side.raster else None) or pred_transform_from
    if g_side.lines is not None and not any(g is not None and not g.is_empty
                                            for g in g_side.lines.values):
        raise EvaluationError(f"{gt} holds no road; expected ground-truth road lines or pixels.")
    utm = LOCAL_FRAME if local else _local_crs(g_side)
    region_src = aoi or footprint_src
    region = _polygons(region_src, utm, local, gsd_m) if region_src else None
    ignored = _polygons(ignore, utm, local, gsd_m) if ignore else None
    report = EvalReport(str(pred), str(gt), _crs_name(utm), params)
    if local:
        report.notes.append(
            "inputs without CRS: compared in their own metric frame (metres; images without "
            "georeferencing at x = col × gsd, y = −row × gsd"
            + (f", --gsd {gsd_m:g})" if gsd_m is not None else ")")
        )
    elif gsd_m is not None:
        report.notes.append(f"--gsd {gsd_m:g} ignored: the inputs are georeferenced")
    if region_src:
        report.notes.append(f"compared within {'--aoi ' if aoi else ''}{Path(region_src).name}")
    if ignored is not None:
        report.notes.append(f"regions of --ignore {Path(ignore or '').name} left out")

    gt_all = _clip(_lines_utm(g_side, utm, _GT_THRESHOLD), None, None)
    if not gt_all:
        raise EvaluationError(f"{gt} holds no road; expected ground-truth road lines or pixels.")
    _check_span(gt, gt_all, utm, force)
    _check_overlap(p_side, utm, gt_all, region, params)
    gt_lines = _clip(gt_all, region, ignored)
    if not gt_lines:
        raise EvaluationError(
            f"{gt} has no road inside the compared area ({report.notes[0]}); check --aoi, "
            "--ignore and --image."
        )
    pred_lines = _clip(_lines_utm(p_side, utm, params.threshold), region, ignored)
    _check_span(pred, pred_lines, utm, force)
    if not pred_lines:
        report.notes.append("the prediction has no road in the compared area: all scores are 0")
    report.network = compare_networks(gt_lines, pred_lines, params.network_params(), on_stage=stage)
    if report.network.apls.sampled:
        report.notes.append(f"APLS sampled {params.apls_max_nodes} control nodes per graph "
                            f"(seed {params.seed})")
    _topology_metrics(report, gt_lines, pred_lines, region, ignored, stage)
    if grids:
        stage("pixel")
        grid = grids[0]
        keep = np.ones((grid.height, grid.width), bool)
        if region is not None:
            keep &= ref.rasterize_mask([_to(region, utm, grid.crs)], grid)
        if ignored is not None:
            keep &= ~ref.rasterize_mask([_to(ignored, utm, grid.crs)], grid)
        report.pixel = _pixel_report(p_side, g_side, grid, utm, params, keep)
    else:
        report.notes.append("pixel metrics skipped: they need a raster prediction or ground truth")
    if out_dir is not None:
        stage("write")
        _write_outputs(report, out_dir, utm, image, overwrite=overwrite, gsd_m=gsd_m,
                       lines={"ground truth": gt_lines, "prediction": pred_lines})
    return report


def _common_frame(p_side: _Side, g_side: _Side) -> str:
    """The coordinates both inputs are in: ``"crs"``, ``"local"`` (no CRS, metres) or
    ``"pixels"`` (rasters without georeferencing and no ``--gsd``). Empty vector files
    without CRS fit any frame.

    Raises:
        SceneError: one input has a CRS and the other has none.
        InputError: a raster in bare pixels beside an input in metres without CRS.
    """
    frames: dict[str, Path] = {}
    for side in (p_side, g_side):
        if side.raster is not None:
            frames.setdefault(ref.grid_frame(side.raster.grid), side.path)
        elif side.lines is not None and (side.lines.crs is not None or len(side.lines)):
            frames.setdefault("crs" if side.lines.crs is not None else "local", side.path)
    if len(frames) <= 1:
        return next(iter(frames), "crs")
    if "crs" in frames:
        without = frames.get("local") or frames["pixels"]
        raise SceneError(
            f"{without} has no CRS but {frames['crs']} has one, so they cannot be compared. "
            f"Assign {without.name} its CRS (`gdal_edit.py -a_srs EPSG:xxxx` for a raster, "
            "`ogr2ogr -a_srs EPSG:xxxx` for vectors); or, for roadx's outputs of an image "
            "without georeferencing, compare them with ground truth without CRS (e.g. the "
            "image's road mask) and --gsd."
        )
    raise InputError(
        f"{frames['pixels']} has no georeferencing but {frames['local']} is in metres without "
        "CRS (e.g. roadx predict --gsd outputs, at x = col × gsd, y = −row × gsd); pass --gsd "
        "M, the metres per pixel given to roadx predict, to place the raster there too."
    )


def _in_frame(side: _Side, local: bool) -> _Side:
    """``side`` with :data:`LOCAL_FRAME` as the CRS of its lines or raster grid when the
    comparison is ``local``; empty lines without CRS get WGS 84 (harmless: no coordinates)."""
    if side.lines is not None and side.lines.crs is None:
        return _Side(side.path, lines=side.lines.set_crs(LOCAL_FRAME if local else "EPSG:4326"))
    if local and side.raster is not None:
        grid = replace(side.raster.grid, crs=LOCAL_FRAME)
        return _Side(side.path, raster=replace(side.raster, grid=grid))
    return side


def _polygons(path: str | Path, utm: CRS, local: bool, gsd_m: float | None) -> BaseGeometry:
    """The union of the AOI / ignore polygons of ``path`` (or its raster footprint) in the
    metric CRS.

    Raises:
        SceneError: polygons with a CRS for inputs without one (``local``).
    """
    frame = ref.read_polygons(path, gsd_m=gsd_m)
    if local and frame.crs is not None:
        raise SceneError(
            f"{path} has a CRS but the inputs have none (they are compared in their own "
            "metric frame); give --aoi, --ignore and --image without CRS, like the inputs."
        )
    return _union_in(frame, None if local else utm)


def _crs_name(crs: CRS) -> str:
    """How a metric CRS is named in the report and in messages."""
    return LOCAL_FRAME_NAME if crs is LOCAL_FRAME else crs.to_string()


def _topology_metrics(report: EvalReport, gt_lines: list[BaseGeometry],
                      pred_lines: list[BaseGeometry], region: BaseGeometry | None,
                      ignored: BaseGeometry | None, stage: Callable[[str], None]) -> None:
    """TOPO and per-tile APLS into ``report`` (each unless switched off in its params)."""
    params = report.params
    if params.topo:
        stage("topo")
        report.topo = topo(lines_to_graph(gt_lines), lines_to_graph(pred_lines),
                           params.topo_params())
        if report.topo.sampled:
            report.notes.append(f"TOPO sampled {report.topo.params.max_seeds} seeds "
                                f"(seed {params.seed})")
    if params.apls_tiles:
        stage("apls tiles")
        area = region
        if ignored is not None:
            if area is None:
                area = shapely.box(*shapely.total_bounds(gt_lines + pred_lines))
            area = area.difference(ignored)
        report.apls_tiles = apls_tiled(gt_lines, pred_lines, area=area,
                                       tile_m=params.apls_tile_m,
                                       params=params.network_params().apls)


def _check_span(path: Path, lines: list[BaseGeometry], utm: CRS, force: bool) -> None:
    """Refuse lines spread over an area that cannot be compared sensibly in one UTM zone
    (more than :data:`MAX_SPAN_M` across), or, without ``force``, an area larger than
    :data:`MAX_AREA_KM2` (the per-tile APLS and TOPO work grows with it).

    Raises:
        EvaluationError: naming ``path``, the extent and what to do.
    """
    if not lines:
        return
    x0, y0, x1, y1 = shapely.total_bounds(lines)
    width_km, height_km = (x1 - x0) / 1000, (y1 - y0) / 1000
    extent = f"{width_km:,.0f} km × {height_km:,.0f} km in {_crs_name(utm)}"
    if max(width_km, height_km) * 1000 > MAX_SPAN_M:
        raise EvaluationError(
            f"{path}: the lines span {extent}; roadx eval measures in one UTM zone and "
            f"compares areas up to {MAX_SPAN_M / 1000:,.0f} km across. Check the file for "
            "stray coordinates, or limit the comparison with --aoi."
        )
    if not force and width_km * height_km > MAX_AREA_KM2:
        raise EvaluationError(
            f"{path}: the lines span {extent} ({width_km * height_km:,.0f} km²), more than "
            f"the {MAX_AREA_KM2:,.0f} km² roadx eval compares without asking (APLS per "
            f"tile and TOPO take long there); limit it with --aoi, or pass --force."
        )


def _check_report_dir(out_dir: Path, overwrite: bool) -> None:
    """Check the report folder before any work: a folder (or creatable), writable, and
    without report files unless ``overwrite``.

    Raises:
        OutputError: ``out_dir`` is a file, lies under a file, or cannot be written.
        OutputExistsError: report files exist and ``overwrite`` is False.
    """
    from roadx.fs import check_writable_folder, remove_stale_partials

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(
            f"--report {out_dir} is a file; expected a folder for {', '.join(REPORT_FILES)} "
            "(created if missing)."
        )
    existing = [n for n in REPORT_FILES if (out_dir / n).exists()] if out_dir.is_dir() else []
    if existing and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds {existing}; pass --overwrite.")
    parent = out_dir.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(
            f"--report {out_dir}: {parent} is a file, so the folder cannot be created there; "
            "choose another report folder."
        )
    if parent == out_dir.absolute():
        remove_stale_partials(out_dir)
    check_writable_folder(parent, target=out_dir)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, deepest first."""
    missing = []
    path = folder.absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _local_crs(side: _Side) -> CRS:
    if side.lines is not None:
        frame = gpd.GeoDataFrame(geometry=side.lines)
    else:
        assert side.raster is not None
        frame = gpd.GeoDataFrame(geometry=[side.raster.grid.footprint], crs=side.raster.grid.crs)
    if frame.crs is not None and frame.crs.is_projected and frame.crs.utm_zone:
        return CRS.from_user_input(frame.crs)
    return CRS.from_user_input(frame.estimate_utm_crs())


def _to(geom: BaseGeometry, src: CRS, dst: CRS | None) -> BaseGeometry:
    return gpd.GeoSeries([geom], crs=src).to_crs(dst).iloc[0]


def _check_overlap(p_side: _Side, utm: CRS, gt_lines: list[BaseGeometry],
                   region: BaseGeometry | None, params: EvalParams) -> None:
    """Raise EvaluationError when the prediction cannot be of the same place as the GT.

    With a compared area (``--aoi`` or the image footprint) the prediction must reach into
    it; otherwise its extent must reach the ground truth's, widened by the buffer or 10 % of
    the ground truth's diagonal, whichever is larger. A prediction that lies in the right
    place but misses every road is legal and simply scores low.
    """
    if p_side.raster is not None:
        extent = _to(p_side.raster.grid.footprint, p_side.raster.grid.crs, utm)
    else:
        assert p_side.lines is not None
        pred = [g for g in p_side.lines.to_crs(utm).values if g is not None and not g.is_empty]
        if not pred:
            return  # an empty prediction is legal and scores 0
        extent = shapely.box(*shapely.total_bounds(pred))
    if region is not None:
        gt_box = region
    else:
        x0, y0, x1, y1 = shapely.total_bounds(gt_lines)
        margin_m = max(params.buffer_m, 0.1 * float(np.hypot(x1 - x0, y1 - y0)))
        gt_box = shapely.box(x0, y0, x1, y1).buffer(margin_m)
    if not extent.intersects(gt_box):
        check = ("Inputs without CRS: check --gsd (roadx predict --gsd puts an image's pixel "
                 "(col, row) at x = col × gsd, y = −row × gsd) and that both come from the same "
                 "image." if utm is LOCAL_FRAME else "Check their CRSs and files.")
        raise EvaluationError(
            f"prediction {p_side.path} and the ground truth do not overlap (prediction extent "
            f"{tuple(round(v) for v in extent.bounds)}, ground truth "
            f"{tuple(round(v) for v in gt_box.bounds)} in {_crs_name(utm)}); expected both to "
            f"cover the same place. {check}"
        )


def _pixel_report(p_side: _Side, g_side: _Side, grid: ref.RasterGrid, utm: CRS | None,
                  params: EvalParams, keep: np.ndarray | None) -> PixelReport:
    gt = _values(g_side, grid, utm, params.mask_width_m)
    valid = np.isfinite(gt) if keep is None else np.isfinite(gt) & keep
    with np.errstate(invalid="ignore"):
        gt_mask = gt >= _GT_THRESHOLD
    return pixel_report(_values(p_side, grid, utm, params.mask_width_m), gt_mask, valid=valid,
                        threshold=params.threshold, rho_px=params.rho_px)


def _evaluate_pixel_space(p_side: _Side, g_side: _Side, params: EvalParams, image: Any,
                          aoi: Any, ignore: Any, out_dir: Path | None, overwrite: bool,
                          stage: Callable[[str], None]) -> EvalReport:
    """Both inputs are plain (non-georeferenced) rasters of one size: pixel metrics only."""
    if p_side.raster is None or g_side.raster is None:
        raise InputError(
            f"{(g_side if p_side.raster else p_side).path} is a vector file but the other input "
            "is a raster without georeferencing; give both as rasters, or use georeferenced "
            "inputs."
        )
    grid = p_side.raster.grid
    region = ref.rasterize_mask(list(ref.read_polygons(aoi).geometry), grid) if aoi else None
    if ignore:
        keep = ~ref.rasterize_mask(list(ref.read_polygons(ignore).geometry), grid)
        region = keep if region is None else region & keep
    if not (g_side.raster.values >= _GT_THRESHOLD).any():
        raise EvaluationError(f"{g_side.path} has no road pixel; expected a ground-truth mask.")
    stage("pixel")
    report = EvalReport(str(p_side.path), str(g_side.path), None, params)
    report.pixel = _pixel_report(p_side, g_side, grid, None, params, region)
    report.notes.append("inputs are not georeferenced: pixel metrics only (no CCQ, APLS or "
                        "junctions; those need metric coordinates: pass --gsd M)")
    if out_dir is not None:
        stage("write")
        with np.errstate(invalid="ignore"):
            masks = (p_side.raster.values >= params.threshold,
                     g_side.raster.values >= _GT_THRESHOLD)
        _write_outputs(report, out_dir, None, image, overwrite=overwrite, masks=masks)
    return report


def _write_outputs(report: EvalReport, out_dir: Path, utm: CRS | None, image: Any, *,
                   overwrite: bool, lines: dict[str, list[BaseGeometry]] | None = None,
                   masks: tuple[np.ndarray, np.ndarray] | None = None,
                   gsd_m: float | None = None) -> None:
    """Write the report files into a temporary folder inside ``out_dir`` and put them in place
    together (:func:`roadx.fs.atomic_outputs`); on failure nothing changes in
    ``out_dir``, and folders created for it are removed again."""
    from roadx.fs import atomic_outputs

    created = _make_folders(out_dir)
    try:
        with atomic_outputs(out_dir, overwrite=overwrite) as tmp:
            names = _write_report_files(report, tmp, utm, image, lines=lines, masks=masks,
                                        gsd_m=gsd_m)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    report.outputs.extend(str(out_dir / name) for name in names)


def _write_report_files(report: EvalReport, folder: Path, utm: CRS | None, image: Any, *,
                        lines: dict[str, list[BaseGeometry]] | None,
                        masks: tuple[np.ndarray, np.ndarray] | None,
                        gsd_m: float | None = None) -> list[str]:
    """Write diff.gpkg (network comparisons only; without CRS in the local frame),
    comparison.png and report.json into ``folder``; return their names in that order."""
    net = report.network
    underlay, aspect, fig_crs = None, 1.0, utm
    if image is not None:
        rgb, grid = ref.read_rgb_preview(image, gsd_m=gsd_m)
        (left, top), (right, bottom) = grid.transform @ (0, 0), grid.transform @ grid.shape_xy
        underlay = Underlay(rgb, (left, right, bottom, top))
        if grid.crs is not None:
            fig_crs = CRS.from_user_input(grid.crs)
            if fig_crs.is_geographic:
                aspect = 1.0 / math.cos(math.radians((top + bottom) / 2))
    overlay = mask_overlay(*masks) if masks is not None else None
    layers: dict[str, list[BaseGeometry]] = {}
    names = []
    if net is not None and utm is not None and lines is not None:
        diff = net.diff
        diff_crs = None if utm is LOCAL_FRAME else utm
        frames = {name: gpd.GeoDataFrame(geometry=list(getattr(diff, name)), crs=diff_crs)
                  for name in ("missed", "spurious", "matched")}
        ref.write_diff_layers(frames, folder / "diff.gpkg")
        names.append("diff.gpkg")
        conv = (lambda gs: list(gpd.GeoSeries(gs, crs=utm).to_crs(fig_crs).values)) \
            if fig_crs != utm else list
        layers = {"ground truth": conv(lines["ground truth"]),
                  "prediction": conv(lines["prediction"]), "missed": conv(diff.missed),
                  "spurious": conv(diff.spurious)}
    plot_comparison(folder / "comparison.png", layers=layers, underlay=underlay,
                    overlay_rgba=overlay, title=_title(report), aspect=aspect)
    names += ["comparison.png", "report.json"]
    data = report.to_dict()
    data["outputs"] = report.outputs + [str(folder.parent / n) for n in names]
    (folder / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    return names


def _title(report: EvalReport) -> str:
    parts = [f"{Path(report.prediction).name} vs {Path(report.ground_truth).name}"]
    if (n := report.network) is not None:
        parts.append(f"APLS {n.apls.apls:.3f}  CCQ quality {n.ccq.quality:.3f}  "
                     f"junction F1 {n.junctions.f1:.3f}"
                     + (f"  TOPO F1 {report.topo.f1:.3f}" if report.topo else ""))
    if (px := report.pixel) is not None:
        parts.append(f"IoU {px.confusion.iou:.3f}  relaxed F1 {px.relaxed.f1:.3f}")
    return "\n".join(parts)
