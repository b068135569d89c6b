"""Write road networks as GIS vector files (GeoPackage, Shapefile, GeoJSON).

Layout (``../shared/specs/pipeline-anchors.md`` §5.10–5.11):

* ``.gpkg`` (the default): one file, layers ``roads`` (a LineString per graph edge) and
  ``junctions`` (every graph node, with ``degree`` and ``kind``), in the native CRS of the
  processing grid.
* ``.shp``: ``<stem>.shp`` (roads) and ``<stem>_junctions.shp`` in the native CRS; field names
  are cut to the dBASE limit of 10 characters.
* ``.geojson``: RFC 7946, i.e. reprojected to WGS 84 lon/lat (written with the GDAL layer
  option ``RFC7946=YES``: no ``crs`` member, 7 decimals), roads in ``<stem>.geojson`` and
  nodes in ``<stem>_junctions.geojson``.

Networks in pixel coordinates (CRS None) can be written as GeoPackage or Shapefile without a
CRS, but not as GeoJSON, whose coordinates must be lon/lat. Every file is written into a
temporary folder beside the output and moved into place with :func:`os.replace` only after
all files were written (see :func:`roadx.io.paths.atomic_outputs`).
"""

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import pyogrio

from roadx.errors import OutputError
from roadx.io.paths import atomic_outputs, vector_output_paths

logger = logging.getLogger(__name__)

DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON"}
ROADS_LAYER = "roads"
JUNCTIONS_LAYER = "junctions"
SHAPEFILE_FIELD_CHARS = 10
_SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
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
    network: NetworkLike, path: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Write a road network's edges and nodes to a vector file chosen by extension.

    Args:
        network: ``edges`` (LineString per graph edge; columns such as ``id``, ``u``, ``v``,
            ``length_m``, ``prob_mean``) and ``nodes`` (Point; ``id``, ``degree``, ``kind``)
            GeoDataFrames in the CRS of the processing grid (None: pixel coordinates).
            Empty frames give valid empty layers.
        path: ``.gpkg``, ``.shp`` or ``.geojson``.
        overwrite: replace existing outputs (all files of the set).

    Returns:
        The files written, roads first (one path for GeoPackage, two otherwise).

    Raises:
        roadx.errors.OutputError: unsupported extension, missing folder, or GeoJSON requested
            for a network without CRS.
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
    options: dict[str, Any] = {"RFC7946": "YES"} if suffix == ".geojson" else {}
    with atomic_outputs(out.parent) as tmp:
        if suffix == ".gpkg":
            _write(edges, tmp / out.name, driver, ROADS_LAYER, "LineString",
                   {"DESCRIPTION": "road centre lines, one per graph edge"})
            _write(nodes, tmp / out.name, driver, JUNCTIONS_LAYER, "Point",
                   {"DESCRIPTION": "road graph nodes (junctions, ends)"})
        else:
            if suffix == ".shp":
                edges, nodes = _shapefile_fields(edges), _shapefile_fields(nodes)
            _write(edges, tmp / targets[0].name, driver, targets[0].stem, "LineString", options)
            _write(nodes, tmp / targets[1].name, driver, targets[1].stem, "Point", options)
        written = {p.name for p in tmp.iterdir()}
    if suffix == ".shp":
        _remove_stale_sidecars(out.parent, [t.stem for t in targets], written)
    logger.info("wrote %d roads and %d nodes to %s", len(edges), len(nodes),
                ", ".join(map(str, targets)))
    return targets


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
    options: dict[str, Any],
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
