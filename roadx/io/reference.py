"""Reading evaluation inputs (predictions, ground truth, AOI) and writing the diff layers.

Everything ``roadx eval`` reads goes through here, so rasterio / pyogrio stay inside
``roadx.io``: road vectors in any OGR format, probability or mask rasters (GeoTIFF or plain
PNG/JPEG/WebP images without georeferencing), CSVs of pixel-coordinate WKT lines (SpaceNet
``ImageId,WKT_Pix``) georeferenced through a reference raster, AOI / ignore polygons, a
decimated RGB underlay for figures; and the diff GeoPackage.
"""

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from shapely.geometry.base import BaseGeometry

from roadx.errors import InputError, OutputExistsError, SceneError
from roadx.fs import atomic_outputs
from roadx.io.raster import pixel_space_transform

logger = logging.getLogger(__name__)

VECTOR_SUFFIXES = frozenset(
    {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".gml", ".kml", ".sqlite", ".geojsonl"}
)
RASTER_SUFFIXES = frozenset(
    {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp", ".vrt", ".jp2", ".img", ".bmp"}
)
InputKind = Literal["vector", "raster", "pixel_csv"]


def input_kind(path: str | Path) -> InputKind:
    """Classify an evaluation input by its suffix.

    Raises:
        InputError: the file does not exist or the suffix is not a known vector, raster or
            ``.csv`` format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "pixel_csv"
    if suffix in VECTOR_SUFFIXES:
        return "vector"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    raise InputError(
        f"{path}: unknown input type {suffix!r}; expected road vectors "
        f"({', '.join(sorted(VECTOR_SUFFIXES))}), a raster ({', '.join(sorted(RASTER_SUFFIXES))}) "
        "or a .csv of pixel WKT lines."
    )


def read_lines(
    path: str | Path, *, layer: str | None = None, allow_no_crs: bool = False
) -> gpd.GeoDataFrame:
    """Read road lines from any OGR vector file (GPKG: layer ``roads`` when present).

    Args:
        path: vector file.
        layer: layer name (default: ``roads`` if the file has one, else the first layer).
        allow_no_crs: accept a layer without CRS (returned with CRS None), e.g. roadx's
            outputs for an image without georeferencing (``roadx predict --gsd``), whose
            coordinates are metres of the image's pixel space.

    Returns:
        GeoDataFrame of the line features (non-line geometries are kept; callers explode).

    Raises:
        InputError: the file cannot be read.
        SceneError: the layer has features but no CRS (unless ``allow_no_crs``).
    """
    path = Path(path)
    try:
        if layer is None:
            names = [str(n) for n in pyogrio.list_layers(path)[:, 0]]
            layer = "roads" if "roads" in names else None
        frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as err:  # pyogrio raises several types for unreadable files
        raise InputError(
            f"{path}: cannot read road vectors ({err}). Expected a GPKG/GeoJSON/SHP file."
        ) from err
    if frame.crs is None and len(frame) and not allow_no_crs:
        raise SceneError(
            f"{path} has no CRS; roadx needs georeferenced road vectors. Assign its CRS, e.g. "
            f"`ogr2ogr -a_srs EPSG:xxxx fixed{path.suffix} {path.name}`."
        )
    return clean_lines(frame, path)


def clean_lines(frame: gpd.GeoDataFrame, path: str | Path) -> gpd.GeoDataFrame:
    """Make road vectors safe to measure: drop Z/M, and refuse impossible coordinates.

    3-D (or measured) geometries become 2-D (heights play no part in road metrics) and a 3-D
    CRS such as EPSG:4979 its 2-D form. Features without geometry are dropped.

    Raises:
        InputError: a feature has a NaN or infinite coordinate, or, in a geographic CRS, a
            longitude outside [-180, 180] or a latitude outside [-90, 90] (the message counts
            them and names the first few features, 0-based).
    """
    frame = frame[frame.geometry.notna()]
    if frame.empty:
        return frame
    if frame.crs is not None and len(frame.crs.axis_info) > 2:
        frame = frame.set_crs(frame.crs.to_2d(), allow_override=True)
    frame = frame.set_geometry(shapely.force_2d(frame.geometry.values), crs=frame.crs)
    geographic = frame.crs is not None and frame.crs.is_geographic
    bad = [i for i, geom in enumerate(frame.geometry.values) if not _plausible(geom, geographic)]
    if bad:
        what = ("NaN, infinite or out-of-range (longitude beyond ±180°, latitude beyond ±90°)"
                if geographic else "NaN or infinite")
        raise InputError(
            f"{path} has {what} coordinates in {len(bad)} of {len(frame)} features (0-based: "
            f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''}); fix or remove "
            "them."
        )
    return frame


def _plausible(geom: BaseGeometry, geographic: bool) -> bool:
    """True when every coordinate is finite (and a longitude/latitude, if ``geographic``)."""
    xy = shapely.get_coordinates(geom)
    if not np.isfinite(xy).all():
        return False
    return not geographic or bool((np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all())


def read_pixel_wkt_csv(
    path: str | Path, *, reference: str | Path, column: str = "WKT_Pix"
) -> gpd.GeoDataFrame:
    """Read lines in pixel coordinates from a CSV and georeference them with a raster.

    The SpaceNet submission format has columns ``ImageId,WKT_Pix`` with ``LINESTRING (col
    row, ...)`` in pixels of the image; ``x = col``, ``y = row`` are mapped through the
    reference raster's affine transform (pixel-corner convention). Empty geometries are
    dropped.

    Args:
        path: the CSV file.
        reference: the raster whose pixel grid the WKT refers to (e.g. the RGB tile).
        column: column holding the WKT.

    Returns:
        GeoDataFrame of lines in the reference raster's CRS.

    Raises:
        InputError: unreadable CSV, missing column, bad WKT, or unreadable reference.
        SceneError: the reference raster has no CRS.
    """
    path = Path(path)
    grid = read_grid(reference)
    if grid.crs is None:
        raise SceneError(
            f"{reference} has no CRS, so the pixel lines of {path.name} cannot be georeferenced; "
            "pass the georeferenced image the CSV was made from."
        )
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the CSV ({err}).") from err
    if rows and column not in rows[0]:
        raise InputError(
            f"{path} has columns {list(rows[0])}; expected a {column!r} column of pixel WKT."
        )
    try:
        geoms = shapely.from_wkt([r[column] for r in rows])
    except shapely.errors.GEOSException as err:
        raise InputError(f"{path}: invalid WKT in column {column!r} ({err}).") from err
    t = grid.transform
    geoms = [
        shapely.transform(g, lambda xy: np.column_stack(
            (t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f)
        ))
        for g in geoms
        if g is not None and not g.is_empty
    ]
    return clean_lines(gpd.GeoDataFrame(geometry=geoms, crs=grid.crs), path)


@dataclass(frozen=True)
class RasterGrid:
    """Pixel grid of a raster: size, affine transform and CRS (None when not georeferenced).

    ``local`` marks a grid without CRS that is still placed in a metric frame: a geotransform
    without CRS (a world file, roadx's own pixel-space probability GeoTIFF; units taken as
    metres), or a raster without geotransform read with ``gsd_m``, placed as ``roadx predict
    --gsd`` places it (:func:`roadx.io.raster.pixel_space_transform`). A grid that is
    neither georeferenced nor local is in bare pixels (identity transform).
    """

    path: Path
    width: int
    height: int
    transform: Affine
    crs: CRS | None
    local: bool = False

    @property
    def georeferenced(self) -> bool:
        """True when the raster has a CRS and a geotransform."""
        return self.crs is not None

    @property
    def shape_xy(self) -> tuple[int, int]:
        """(width, height) in pixels, the order an affine transform takes."""
        return (self.width, self.height)

    @property
    def footprint(self) -> BaseGeometry:
        """The raster's outline as a polygon in its CRS (pixel units when not georeferenced)."""
        t = self.transform
        w, h = self.width, self.height
        return shapely.Polygon([t @ (0, 0), t @ (w, 0), t @ (w, h), t @ (0, h)])


def _open(path: str | Path) -> rasterio.DatasetReader:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as err:
        raise InputError(f"{path}: cannot read as a raster ({err}).") from err


def _grid(src: rasterio.DatasetReader, path: Path, gsd_m: float | None = None) -> RasterGrid:
    """The grid of ``src``: georeferenced (CRS and geotransform), local (a geotransform
    without CRS; or no geotransform and ``gsd_m``: pixel space in metres) or bare pixels."""
    if src.transform != Affine.identity():
        return RasterGrid(path, src.width, src.height, src.transform, src.crs,
                          local=src.crs is None)
    if gsd_m is not None:
        return RasterGrid(path, src.width, src.height, pixel_space_transform(gsd_m), None,
                          local=True)
    return RasterGrid(path, src.width, src.height, src.transform, None)


def read_grid(path: str | Path, *, gsd_m: float | None = None) -> RasterGrid:
    """Read the pixel grid (size, transform, CRS) of a raster.

    Args:
        path: the raster.
        gsd_m: metres per pixel of a raster without geotransform: it is then placed at
            ``x = col * gsd_m``, ``y = -row * gsd_m`` (``local``), as ``roadx predict --gsd``
            places its outputs.

    Raises:
        InputError: missing or unreadable file.
    """
    with _open(path) as src:
        return _grid(src, Path(path), gsd_m)


@dataclass(frozen=True)
class RasterLayer:
    """A probability or mask raster as float values in [0, 1] on its grid.

    Attributes:
        grid: the pixel grid.
        values: (H, W) float32 in [0, 1]; NaN = nodata (masked, alpha or nodata value).
    """

    grid: RasterGrid
    values: np.ndarray


def _to_unit(raw: np.ma.MaskedArray, src: rasterio.DatasetReader) -> np.ndarray:
    """Scale band values into [0, 1] (roadx uint8 probabilities, float, 0/1 or 0/255 masks)."""
    data = raw.astype(np.float32).filled(np.nan)
    scale, offset = src.scales[0], src.offsets[0]
    if (scale, offset) != (1.0, 0.0):
        data = data * np.float32(scale) + np.float32(offset)
    elif np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
        vmax = float(np.nanmax(data)) if np.isfinite(data).any() else 0.0
        if src.dtypes[0] == "uint8" and src.nodata == 255:
            data = data / np.float32(254.0)  # roadx probability convention: 0..254, 255 nodata
        elif vmax > 1:
            data = data / np.float32(255.0 if src.dtypes[0] == "uint8" else vmax)
    elif np.isfinite(data).any() and float(np.nanmax(data)) > 1:
        data = data / np.float32(255.0)
    return np.clip(data, 0.0, 1.0)


def read_raster_layer(
    path: str | Path, *, like: RasterGrid | None = None, gsd_m: float | None = None
) -> RasterLayer:
    """Read band 1 of a probability / mask raster as values in [0, 1].

    Accepted: roadx probability GeoTIFFs (uint8 0..254, 255 nodata, or band scale/offset),
    float rasters in [0, 1], 0/1 and 0/255 masks (GeoTIFF or plain PNG/JPEG/WebP).

    Args:
        path: the raster.
        like: resample onto this grid (nearest neighbour; through a WarpedVRT when both are
            georeferenced, or both local, see :class:`RasterGrid`). A raster in bare pixels
            must have the same size as a ``like`` in bare pixels.
        gsd_m: metres per pixel of a raster without geotransform (see :func:`read_grid`).

    Returns:
        :class:`RasterLayer`.

    Raises:
        InputError: unreadable file, a size mismatch of rasters in bare pixels, or rasters
            that cannot be aligned (one with a CRS, the other without; one in bare pixels).
    """
    path = Path(path)
    with _open(path) as src:
        grid = _grid(src, path, gsd_m)
        kind = grid_frame(grid)
        if like is None or kind == grid_frame(like) == "pixels":
            if like is not None and (like.width, like.height) != (grid.width, grid.height):
                raise InputError(
                    f"{path} is {grid.width}x{grid.height} px but {like.path.name} is "
                    f"{like.width}x{like.height} px; non-georeferenced rasters must have the "
                    "same size."
                )
            return RasterLayer(grid, _to_unit(src.read(1, masked=True), src))
        like_kind = grid_frame(like)
        if kind != like_kind:
            raise InputError(
                f"{path} ({_FRAME_NAMES[kind]}) and {like.path.name} ({_FRAME_NAMES[like_kind]}) "
                "cannot be aligned; give both with a CRS, or both without (with --gsd for "
                "rasters without georeferencing)."
            )
        if grid.local and (grid.transform, grid.width, grid.height) == (
            like.transform, like.width, like.height
        ):
            return RasterLayer(like, _to_unit(src.read(1, masked=True), src))
        placement: dict[str, Any] = (
            {"crs": like.crs} if grid.georeferenced else {"src_transform": grid.transform}
        )
        with WarpedVRT(
            src, transform=like.transform, width=like.width, height=like.height,
            resampling=Resampling.nearest, **placement,
        ) as vrt:
            return RasterLayer(like, _to_unit(vrt.read(1, masked=True), src))


_FRAME_NAMES = {"crs": "with a CRS", "local": "without CRS",
                "pixels": "without georeferencing; pass --gsd"}


def grid_frame(grid: RasterGrid) -> Literal["crs", "local", "pixels"]:
    """Which coordinates a grid is in: ``"crs"`` (georeferenced), ``"local"`` (no CRS but
    placed in metres, see :class:`RasterGrid`) or ``"pixels"`` (bare pixels)."""
    return "crs" if grid.georeferenced else "local" if grid.local else "pixels"


def read_polygons(path: str | Path, *, gsd_m: float | None = None) -> gpd.GeoDataFrame:
    """Read AOI / ignore polygons from a vector file, or take a raster's footprint.

    Args:
        path: a vector file of polygons, or a raster.
        gsd_m: metres per pixel of a raster without geotransform (see :func:`read_grid`).

    Returns:
        GeoDataFrame of polygons; CRS None means pixel coordinates (or pixel space in metres
        with ``gsd_m``).

    Raises:
        InputError: unreadable file or no polygon in it.
    """
    path = Path(path)
    if input_kind(path) == "raster":
        grid = read_grid(path, gsd_m=gsd_m)
        return gpd.GeoDataFrame(geometry=[grid.footprint], crs=grid.crs)
    try:
        frame = gpd.read_file(path, engine="pyogrio")
    except Exception as err:
        raise InputError(f"{path}: cannot read polygons ({err}).") from err
    frame = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise InputError(f"{path} has no polygon; expected (Multi)Polygon features.")
    return frame


def rasterize_mask(geoms: list[BaseGeometry], grid: RasterGrid) -> np.ndarray:
    """Burn polygons (in the grid's CRS) into an (H, W) bool mask (pixel centres inside)."""
    shapes = [g for g in geoms if g is not None and not g.is_empty]
    if not shapes:
        return np.zeros((grid.height, grid.width), dtype=bool)
    burned = rasterize(
        shapes, out_shape=(grid.height, grid.width), transform=grid.transform, fill=0,
        default_value=1, dtype="uint8",
    )
    return burned.astype(bool)


def read_rgb_preview(
    path: str | Path, *, max_px: int = 1600, gsd_m: float | None = None
) -> tuple[np.ndarray, RasterGrid]:
    """Read a decimated 8-bit RGB of an image for figures (grid: the preview's, same bounds).

    Args:
        path: the image (1, 3 or more bands; bands 1-3 are taken as R, G, B).
        max_px: longest side of the preview, pixels.
        gsd_m: metres per pixel of an image without geotransform (see :func:`read_grid`).

    Returns:
        (h, w, 3) uint8 array stretched to 2-98 % per band, and the preview's grid.

    Raises:
        InputError: unreadable image.
    """
    path = Path(path)
    with _open(path) as src:
        grid = _grid(src, path, gsd_m)
        factor = max(1.0, max(src.width, src.height) / max_px)
        h, w = max(1, round(src.height / factor)), max(1, round(src.width / factor))
        bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        data = src.read(bands, out_shape=(3, h, w), resampling=Resampling.average)
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for i in range(3):
        band = data[i].astype(np.float32)
        lo, hi = np.percentile(band, [2, 98]) if band.size else (0.0, 1.0)
        rgb[..., i] = np.clip((band - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    scaled = grid.transform @ Affine.scale(grid.width / w, grid.height / h)
    return rgb, RasterGrid(path, w, h, scaled, grid.crs, grid.local)


def write_diff_layers(
    layers: dict[str, gpd.GeoDataFrame], path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write line layers (e.g. ``missed``, ``spurious``, ``matched``) into one GeoPackage.

    Written into a temporary folder beside ``path`` (:func:`roadx.fs.atomic_outputs`)
    and moved into place only when every layer was written. Empty layers are written as
    empty LineString layers so QGIS shows all of them.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it.")
    with atomic_outputs(path.parent, overwrite=overwrite) as tmp, warnings.catch_warnings():
        # layers without CRS: inputs without CRS, compared in their own metric frame
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        for name, frame in layers.items():
            pyogrio.write_dataframe(
                frame, tmp / path.name, layer=name, driver="GPKG", geometry_type="LineString",
                append=(tmp / path.name).exists(),
            )
    return path
