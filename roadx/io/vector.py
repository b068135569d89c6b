"""Write road networks as GIS vector files (GeoPackage, Shapefile, GeoJSON).

Layout (``../shared/specs/pipeline-anchors.md`` §5.10–5.11):

* ``.gpkg`` (the default): one file, layers ``roads`` (a LineString per graph edge) and
  ``junctions`` (every graph node, with ``degree`` and ``kind``), in the native CRS of the
  processing grid.
* ``.shp``: ``<stem>.shp`` (roads) and ``<stem>_junctions.shp`` in the native CRS; field names
  are cut to the dBASE limit of 10 characters.
* ``.geojson``: RFC 7946, i.e. reprojected to WGS 84 lon/lat (written with the GDAL layer
  option ``RFC7946=YES``: no ``crs`` member, 7 decimals), roads in ``<stem>.geojson`` and
  nodes in ``<stem>_junctions.geojson``. Longitudes are wrapped into [-180, 180] and a line
  that crosses the antimeridian becomes a MultiLineString cut at ±180° (RFC 7946 §3.1.9), by
  :func:`split_at_antimeridian` itself rather than by whatever the installed GDAL does.

Networks in pixel coordinates (CRS None) can be written as GeoPackage or Shapefile without a
CRS, but not as GeoJSON, whose coordinates must be lon/lat. Every file is written into a
temporary folder beside the output and moved into place with :func:`os.replace` only after
all files were written (see :func:`roadx.fs.atomic_outputs`).
"""

import logging
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import numpy as np
import pyogrio
import pyogrio.errors
import shapely
from shapely.geometry.base import BaseGeometry

from roadx.errors import OutputError
from roadx.io import styles
from roadx.fs import atomic_outputs, format_bytes, vector_output_paths

logger = logging.getLogger(__name__)

DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON"}
ROADS_LAYER = "roads"
JUNCTIONS_LAYER = "junctions"
SHAPEFILE_FIELD_CHARS = 10
_SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
_GDAL_WRITE_ERRORS = (
    pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError, pyogrio.errors.FeatureError,
)
_EMPTY_DTYPES = {
    "id": "int64", "u": "int64", "v": "int64", "degree": "int64", "length_m": "float64",
    "prob_mean": "float64", "prob_min": "float64", "width_m": "float64", "bridged": "bool",
    "bridged_m": "float64",
}


class NetworkLike(Protocol):
    """Anything with ``edges`` and ``nodes`` GeoDataFrames, e.g. ``roadx.vectorize.RoadNetwork``."""

    @property
    def edges(self) -> gpd.GeoDataFrame: ...

    @property
    def nodes(self) -> gpd.GeoDataFrame: ...


def write_roads(
    network: NetworkLike, path: str | os.PathLike[str], *, overwrite: bool = False,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write a road network's edges and nodes to a vector file chosen by extension.

    Args:
        network: ``edges`` (LineString per graph edge; columns such as ``id``, ``u``, ``v``,
            ``length_m``, ``prob_mean``) and ``nodes`` (Point; ``id``, ``degree``, ``kind``)
            GeoDataFrames in the CRS of the processing grid (None: pixel coordinates).
            Empty frames give valid empty layers.
        path: ``.gpkg``, ``.shp`` or ``.geojson``.
        overwrite: replace existing outputs (all files of the set).
        metadata: provenance (text keys and values) stored as the metadata of both
            GeoPackage layers (QGIS: Layer Properties → Information; ``ogrinfo``). Layer, not
            dataset, metadata: GDAL (3.12, as bundled with pyogrio) writes a
            ``<name>.gpkg.aux.xml`` sidecar whenever it reads a GeoPackage with dataset
            metadata. Shapefile and GeoJSON carry none.

    Returns:
        The files written, roads first (one path for GeoPackage, two otherwise). Each layer
        gets a default QGIS style (:mod:`roadx.io.styles`): in the GeoPackage's
        ``layer_styles`` table, or as ``<stem>.qml`` beside a Shapefile/GeoJSON (an existing
        ``.qml`` is replaced only with ``overwrite``).

    Raises:
        roadx.errors.OutputError: unsupported extension, missing or unwritable folder, GeoJSON
            requested for a network without CRS, or GDAL failed to write (disk full, I/O
            error: the message names the file and the free space); nothing is left behind.
        roadx.errors.OutputExistsError: an output exists and ``overwrite`` is false.
    """
    targets = vector_output_paths(path, overwrite=overwrite, suffixes=tuple(DRIVERS))
    out = targets[0]
    suffix = out.suffix.lower()
    driver = DRIVERS[suffix]
    edges, nodes = _with_common_crs(network.edges, network.nodes)
    if suffix == ".geojson":
        if edges.crs is None:
            raise OutputError(
                f"{out}: the road network has no CRS (pixel coordinates), but GeoJSON "
                "(RFC 7946) needs lon/lat coordinates. Write .gpkg or .shp instead, or "
                "process a georeferenced scene."
            )
        edges, nodes = edges.to_crs(4326), nodes.to_crs(4326)
        edges = edges.set_geometry(
            [split_at_antimeridian(g) for g in edges.geometry.values], crs=edges.crs
        )
        nodes = nodes.set_geometry(
            [split_at_antimeridian(g) for g in nodes.geometry.values], crs=nodes.crs
        )
    options: dict[str, Any] = {"RFC7946": "YES"} if suffix == ".geojson" else {}
    try:
        written = _write_set(edges, nodes, targets, driver, options, overwrite=overwrite,
                             metadata=metadata)
    except _GDAL_WRITE_ERRORS as err:
        raise OutputError(
            f"{out}: writing failed ({err}{_free_space(out.parent)}); check free space and "
            "permissions of its folder. Nothing was written."
        ) from err
    if suffix == ".shp":
        _remove_stale_sidecars(out.parent, [t.stem for t in targets], written)
    logger.info("wrote %d roads and %d nodes to %s", len(edges), len(nodes),
                ", ".join(map(str, targets)))
    return targets


def read_roads(path: str | os.PathLike[str]) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Read back a road network written by :func:`write_roads`.

    Args:
        path: the ``.gpkg`` (layers ``roads`` and ``junctions``), or the roads ``.shp`` /
            ``.geojson`` (nodes in ``<stem>_junctions.<ext>`` beside it).

    Returns:
        ``(edges, nodes)`` GeoDataFrames in the file's CRS, with the column names
        :func:`write_roads` wrote (Shapefile names cut to 10 characters are restored).

    Raises:
        roadx.errors.InputError: a missing or unreadable file, or a layer missing.
    """
    from roadx.errors import InputError

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in DRIVERS:
        raise InputError(f"{out}: not a roadx road file (.gpkg, .shp or .geojson)")
    try:
        if suffix == ".gpkg":
            edges = gpd.read_file(out, layer=ROADS_LAYER, engine="pyogrio")
            nodes = gpd.read_file(out, layer=JUNCTIONS_LAYER, engine="pyogrio")
        else:
            edges = gpd.read_file(out, engine="pyogrio")
            nodes = gpd.read_file(out.with_name(f"{out.stem}_junctions{out.suffix}"),
                                  engine="pyogrio")
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
        raise InputError(f"{out}: cannot read its road layers ({err})") from None
    full = {name[:SHAPEFILE_FIELD_CHARS]: name for name in _EMPTY_DTYPES}
    edges = edges.rename(columns={c: full[c] for c in edges.columns if c in full})
    nodes = nodes.rename(columns={c: full[c] for c in nodes.columns if c in full})
    return edges, nodes


def _free_space(folder: Path) -> str:
    """``"; N free there"`` for error messages (empty when it cannot be read)."""
    try:
        return f"; {format_bytes(shutil.disk_usage(folder).free)} free there"
    except OSError:
        return ""


def _write_set(
    edges: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame, targets: list[Path], driver: str,
    options: dict[str, Any], *, overwrite: bool = False,
    metadata: dict[str, str] | None = None,
) -> set[str]:
    """Write the layers of one output set atomically, with their QGIS styles (in the
    GeoPackage, or ``.qml`` files beside the others; an existing ``.qml`` is kept unless
    ``overwrite``); return the file names written."""
    out = targets[0]
    suffix = out.suffix.lower()
    with atomic_outputs(out.parent, overwrite=overwrite) as tmp:
        if suffix == ".gpkg":
            _write(edges, tmp / out.name, driver, ROADS_LAYER, "LineString",
                   {"DESCRIPTION": "road centre lines, one per graph edge"},
                   layer_metadata=metadata)
            _write(nodes, tmp / out.name, driver, JUNCTIONS_LAYER, "Point",
                   {"DESCRIPTION": "road graph nodes (junctions, ends)"},
                   layer_metadata=metadata)
            styles.write_gpkg_styles(tmp / out.name, {ROADS_LAYER: styles.roads_qml(),
                                                      JUNCTIONS_LAYER: styles.junctions_qml()})
        else:
            if suffix == ".shp":
                edges, nodes = _shapefile_fields(edges), _shapefile_fields(nodes)
            _write(edges, tmp / targets[0].name, driver, targets[0].stem, "LineString", options)
            _write(nodes, tmp / targets[1].name, driver, targets[1].stem, "Point", options)
            for target, qml in ((targets[0], styles.roads_qml()),
                                (targets[1], styles.junctions_qml())):
                sidecar = styles.qml_sidecar(target)
                if overwrite or not sidecar.exists():
                    styles.write_qml(tmp / sidecar.name, qml)
        return {p.name for p in tmp.iterdir()}


def split_at_antimeridian(geom: BaseGeometry | None) -> BaseGeometry | None:
    """Make a lon/lat geometry RFC 7946 compliant (§3.1.9): longitudes in [-180, 180], and a
    line that crosses the antimeridian cut there into a MultiLineString.

    Consecutive vertices are taken to be less than 180° of longitude apart (road vertices
    are metres apart), so a step from 179.9° to -179.9° is a crossing, not a trip round the
    world. The cut point's latitude is interpolated linearly between the two vertices.

    Args:
        geom: a (Multi)LineString or Point in EPSG:4326 (lon, lat), or None.

    Returns:
        The same geometry when nothing needed changing, else the wrapped or cut geometry.
    """
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type == "Point":
        lon = _wrap(geom.x)
        return geom if lon == geom.x else shapely.Point(lon, geom.y)
    if geom.geom_type not in ("LineString", "MultiLineString"):
        return geom
    lines = [geom] if geom.geom_type == "LineString" else list(geom.geoms)
    parts = [part for line in lines for part in _cut_line(np.asarray(line.coords)[:, :2])]
    if len(parts) == len(lines) and all(
        np.array_equal(p, np.asarray(line.coords)[:, :2]) for p, line in zip(parts, lines)
    ):
        return geom
    if len(parts) == 1:
        return shapely.LineString(parts[0])
    return shapely.MultiLineString(parts)


def _wrap(lon: float) -> float:
    """A longitude in [-180, 180] (180 stays 180)."""
    return lon if -180.0 <= lon <= 180.0 else (lon + 180.0) % 360.0 - 180.0


def _cut_line(xy: np.ndarray) -> list[np.ndarray]:
    """Pieces of one line (``(n, 2)`` lon/lat) inside [-180, 180], cut at ±180°."""
    lon = np.unwrap(xy[:, 0], period=360.0)
    lon -= 360.0 * math.floor((lon[0] + 180.0) / 360.0)  # first vertex in [-180, 180)
    lat = xy[:, 1]
    pieces, piece = [], [(lon[0], lat[0])]
    for i in range(1, len(lon)):
        a, b = lon[i - 1], lon[i]
        cell_a, cell_b = math.floor((a + 180.0) / 360.0), math.floor((b + 180.0) / 360.0)
        while cell_a != cell_b:
            step = 1 if cell_b > cell_a else -1
            edge = -180.0 + 360.0 * (cell_a + (step > 0))
            t = (edge - a) / (b - a)
            cut = (edge, lat[i - 1] + t * (lat[i] - lat[i - 1]))
            piece.append(cut)
            pieces.append(piece)
            piece = [cut]
            cell_a += step
        piece.append((b, lat[i]))
    pieces.append(piece)
    out = []
    for piece in pieces:
        arr = np.asarray(piece, dtype=float)
        arr = arr[np.r_[True, (np.diff(arr, axis=0) != 0).any(axis=1)]]  # no repeated vertex
        if len(arr) < 2:
            continue  # a vertex exactly on ±180° leaves a zero-length piece
        mid = 0.5 * (arr[:, 0].min() + arr[:, 0].max())
        arr[:, 0] -= 360.0 * math.floor((mid + 180.0) / 360.0)
        out.append(np.round(arr, 9))  # undo the float noise of the shifts (0.1 mm)
    return out or [xy]


def _with_common_crs(
    edges: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Give both frames the same CRS when only one of them carries it."""
    if edges.crs is None and nodes.crs is not None:
        edges = edges.set_crs(nodes.crs)
    elif nodes.crs is None and edges.crs is not None:
        nodes = nodes.set_crs(edges.crs)
    return edges, nodes


def _geometry_type(frame: gpd.GeoDataFrame, default: str) -> tuple[str, bool]:
    """OGR geometry type to declare, and whether single parts must be promoted to multi."""
    types = set(frame.geom_type.dropna())
    if not types:
        return default, False
    if len(types) == 1:
        return types.pop(), False
    base = {t.removeprefix("Multi") for t in types}
    if len(base) == 1:
        return "Multi" + base.pop(), True
    return "Unknown", False


def _write(
    frame: gpd.GeoDataFrame, path: Path, driver: str, layer: str, default_type: str,
    options: dict[str, Any], layer_metadata: dict[str, str] | None = None,
) -> None:
    """Write one layer with pyogrio (adds a layer when ``path`` is an existing GeoPackage)."""
    if frame.empty:
        frame = frame.copy()
        for column, dtype in _EMPTY_DTYPES.items():
            if column in frame.columns and frame[column].dtype == object:
                frame[column] = frame[column].astype(dtype)
    geometry_type, promote = _geometry_type(frame, default_type)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)  # pixel coords
        pyogrio.write_dataframe(
            frame, path, layer=layer, driver=driver, geometry_type=geometry_type,
            promote_to_multi=promote, layer_options=options or None,
            layer_metadata=layer_metadata or None,
        )


def _shapefile_fields(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Rename columns to unique names of at most 10 characters (the dBASE limit)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for column in frame.columns:
        if column == frame.geometry.name:
            continue
        name = str(column)[:SHAPEFILE_FIELD_CHARS]
        n = 1
        while name.lower() in used:
            tail = f"_{n}"
            name = str(column)[: SHAPEFILE_FIELD_CHARS - len(tail)] + tail
            n += 1
        used.add(name.lower())
        if name != column:
            names[column] = name
    if names:
        logger.info("shapefile field names shortened: %s", names)
    return frame.rename(columns=names) if names else frame


def _remove_stale_sidecars(folder: Path, stems: list[str], written: set[str]) -> None:
    """Delete sidecars left from an older Shapefile of the same name (e.g. an old .prj)."""
    for stem in stems:
        for ext in _SHAPEFILE_SIDECARS:
            old = folder / f"{stem}{ext}"
            if old.name not in written and old.exists():
                old.unlink()
                logger.debug("removed stale %s", old)
