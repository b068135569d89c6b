"""Open a scene raster and read it window by window, never whole.

:func:`open_scene` turns any GDAL raster (GeoTIFF first of all) into a :class:`Scene`: the
*processing grid* (size, CRS, affine transform, metres per pixel) plus
:meth:`Scene.read_window`, which returns a ``(3, h, w)`` uint8 image in the model's band order
and a ``(h, w)`` validity mask for any window, also one that runs past the scene edge.

Decisions, following ``../shared/specs/pipeline-anchors.md`` §4.6–4.8:

* **Validity.** A pixel is valid where the dataset mask (nodata value, alpha band, internal or
  external mask, as GDAL's mask bands report them) of *any* selected band is >= 128 (GDAL's
  ``dataset_mask`` rule, so a dark pixel with one zero channel stays valid), float pixels are
  finite, and the pixel lies inside the scene. Invalid pixels read as 0. ``nodata=`` (``roadx
  predict --nodata 0``) declares a value for files that do not (zero-filled edges of satellite
  scenes are common): it replaces the file's own nodata value, as ``gdalwarp -srcnodata`` does,
  and a pixel is no-data where *every* selected band holds it; alpha bands and mask files
  still count.
* **Bit depth.** Non-uint8 scenes are stretched to uint8 with *scene-global* per-band 2–98 %
  percentiles from one decimated read (long side <= 1024 px, GDAL uses overviews when they
  exist), excluding invalid pixels. Never per window: that would put seams between tiles.
* **GSD.** Metres per pixel from the geotransform: CRS linear unit factor for projected CRSs,
  geodesic length of one pixel at the scene centre for geographic ones.
* **No georeferencing.** World files and ``.aux.xml`` beside an image are read by GDAL
  itself. A geotransform without CRS is kept (units taken as metres); an image without any
  is placed with ``--gsd`` at ``x = col * gsd``, ``y = -row * gsd`` (GDAL/QGIS's pixel
  convention, scaled to metres), see :func:`read_georeferencing`.
* **Resampling.** With ``target_gsd_m`` more than 10 % away from the scene GSD, reads go
  through a :class:`rasterio.vrt.WarpedVRT` in the *same* CRS whose pixels are exactly
  ``target_gsd_m`` metres; masks travel through the VRT's alpha band.
* **Boundless reads** are done as a read of the part inside the grid, padded with invalid
  pixels (WarpedVRTs refuse ``boundless=True``, and it is ~50x cheaper than rasterio's
  per-call boundless VRT).
* **Auxiliary raster** (``--aux nir.tif``, issue #11): a separate raster in any CRS and GSD
  supplies the model's non-RGB channels (NIR, ...); :class:`AuxRaster` warps it onto the
  processing grid with its own WarpedVRT (bilinear; average when downsampling by > 10 %),
  read window by window with the scene. Its validity (nodata, masks, outside its extent) is
  kept apart from the scene's (:meth:`Scene.read_window_aux`): the scene's validity decides
  what is nodata in the outputs, the auxiliary validity what the model sees as "no auxiliary
  data" (NaN, :mod:`roadx.models.d3fnet_mm`).
"""

import logging
import math
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window as RioWindow

from roadx.errors import InputError, SceneError
from roadx.io.bands import STRETCH_PERCENTILES, default_bands, stretch_limits, stretch_to_uint8
from roadx.tiling import Window

logger = logging.getLogger(__name__)

__all__ = ["STRETCH_PERCENTILES"]  # re-exported: the stretch lives in roadx.io.bands
DECIMATED_LONG_SIDE_PX = 1024
RESAMPLE_TOLERANCE = 0.10
_MAX_GRID_PX = 2**31 - 1  # GDAL's raster sizes are C ints
VALID_MIN = 128  # mask values >= this are valid (GDAL masks are 0/255; alpha may be graded)
_COLOURS = ("R", "G", "B")
_NIR_NAMES = ("NIR", "N")  # card band names of a near-infrared channel


GDAL_CACHE_MB = 128
"""GDAL block cache (MB) while roadx reads and writes rasters; a few rows of 512 px blocks."""


def gdal_env(path: str) -> rasterio.Env:
    """Return the GDAL configuration used around opens and reads of ``path``.

    Local files: ``GDAL_DISABLE_READDIR_ON_OPEN=TRUE`` (no listing of large folders, but
    sidecars such as ``.ovr``, ``.msk``, ``.aux.xml`` and world files are still found).
    Remote files (``/vsi*``, ``s3://``, ``https://``): ``EMPTY_DIR`` (no sidecar probes
    over the network), merged range requests and the VSI cache.
    Both: ``GDAL_CACHEMAX`` of :data:`GDAL_CACHE_MB` — GDAL's default block cache is 5 % of
    the machine's RAM, which a windowed pass over a large scene (reading it and writing the
    probability raster) fills completely, so peak memory would grow with the scene.
    """
    if is_remote(path):
        return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", VSI_CACHE="TRUE",
                            GDAL_HTTP_MERGE_CONSECUTIVE_RANGES="YES",
                            GDAL_CACHEMAX=GDAL_CACHE_MB)
    return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE", GDAL_CACHEMAX=GDAL_CACHE_MB)


def gdal_reason(err: BaseException) -> str:
    """The most specific message of a GDAL error: rasterio's "Read failed. See previous
    exception for details." hides GDAL's own reason in the exception it was raised from."""
    cause = err.__cause__ or err.__context__
    return str(cause) if cause is not None and str(cause) else str(err)


def is_remote(path: str) -> bool:
    """True for paths GDAL reads itself: ``/vsi…/`` paths and URLs (``http(s)://``,
    ``s3://``, ``gs://``, …), which are passed to GDAL untouched (no local existence check,
    never turned into a :class:`~pathlib.Path`, which would fold ``//`` into ``/``)."""
    return path.startswith("/vsi") or "://" in path


def scene_reference(path: str | os.PathLike[str]) -> str | Path:
    """A local input as a :class:`~pathlib.Path`, a GDAL path or URL as the string given."""
    text = os.fspath(path)
    return text if is_remote(text) else Path(text)


def open_dataset(path: str | os.PathLike[str]) -> tuple[str, DatasetReader]:
    """Open a raster with rasterio, turning failures into :class:`InputError`.

    Returns:
        ``(uri, dataset)``: the string path used to open it and the open dataset.

    Raises:
        roadx.errors.InputError: the file does not exist or GDAL cannot read it.
    """
    uri = os.fspath(path)
    if not is_remote(uri) and not Path(uri).exists():
        raise InputError(f"{uri} not found; check the path of the input raster.")
    try:
        with gdal_env(uri), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return uri, rasterio.open(uri)
    except RasterioIOError as err:
        raise InputError(
            f"{uri} is not a raster GDAL can read ({err}); expected a GeoTIFF or another "
            "GDAL raster format."
        ) from err


@dataclass(frozen=True, slots=True)
class Georeferencing:
    """Where a raster grid lies: CRS (None: no CRS is known), pixel -> coordinates transform,
    whether the transform came from the file (False: a plain image placed with ``gsd_m``,
    see :func:`pixel_space_transform`), ``(row, col)`` metres per pixel."""

    crs: CRS | None
    transform: Affine
    georeferenced: bool
    pixel_size_m: tuple[float, float]

    @property
    def gsd_m(self) -> float:
        """Ground sample distance ``sqrt(row_m * col_m)`` in metres."""
        return math.sqrt(self.pixel_size_m[0] * self.pixel_size_m[1])


MIN_LOCAL_PIXEL_M = 1e-3
"""Smallest pixel size (transform units) taken as metres for a geotransform without CRS;
below it the units are most likely degrees, and ``--gsd`` (or the CRS) is asked for."""


def pixel_space_transform(gsd_m: float) -> Affine:
    """The transform roadx gives an image without georeferencing: ``Affine(gsd, 0, 0, 0,
    -gsd, 0)``.

    GDAL (and so rasterio) reports such an image with the identity transform, y growing
    down; QGIS and GDAL's tools place it at ``x = col``, ``y = -row`` (pixel corners), so
    the image stands upright. roadx uses that convention, scaled to metres by ``gsd_m`` so
    that lengths and distances are right: with ``gsd_m == 1`` outputs lie exactly on the
    image in QGIS; otherwise they lie on it once the image has a world file with the same
    numbers (e.g. ``<stem>.pgw``: ``gsd, 0, 0, -gsd, gsd/2, -gsd/2``).

    Args:
        gsd_m: metres per pixel (> 0).

    Returns:
        pixel ``(col, row)`` -> ``(x, y)`` metres of a local frame without CRS.
    """
    return Affine(gsd_m, 0.0, 0.0, 0.0, -gsd_m, 0.0)


def read_georeferencing(src: DatasetReader, path: str, gsd_m: float | None) -> Georeferencing:
    """Work out a dataset's CRS, transform and pixel size in metres.

    Three cases:

    * **CRS and geotransform** (GeoTIFF, or a world file / ``.aux.xml`` that GDAL read with
      a CRS): georeferenced; ``gsd_m`` is ignored with a warning.
    * **Geotransform without CRS** (a world file ``.pgw``/``.jgw``/``.tfw``/``.wld`` or an
      ``.aux.xml`` ``GeoTransform`` beside a plain image, or roadx's own pixel-space
      probability GeoTIFF): the transform is kept, so outputs lie where the world file puts
      the image, and are written without CRS (a warning says so). Its units are taken as
      metres, unless ``gsd_m`` gives the metres per pixel.
    * **No geotransform** (GDAL reports the identity, e.g. a Massachusetts ``.tiff``/``.png``
      tile): needs ``gsd_m``; the grid is then placed by :func:`pixel_space_transform`
      (``x = col * gsd``, ``y = -row * gsd``, no CRS), with a warning.

    Args:
        src: an open dataset.
        path: its path, for messages.
        gsd_m: metres per pixel of a raster without georeferencing (or without CRS).

    Raises:
        roadx.errors.SceneError: no geotransform and no ``gsd_m``; a geotransform without CRS
            whose pixels are smaller than :data:`MIN_LOCAL_PIXEL_M` (degrees?) and no
            ``gsd_m``; unusable pixel size.
    """
    if gsd_m is not None and not gsd_m > 0:
        raise SceneError(f"{path}: --gsd must be a positive number of metres, got {gsd_m}.")
    if src.transform.is_identity:  # GDAL has no geotransform (rasterio reports the identity)
        if gsd_m is None:
            gcps = " (only GCPs/RPCs: orthorectify it first)" if src.gcps[0] or src.rpcs else ""
            raise SceneError(f"{path} has no CRS/geotransform{gcps}; pass --gsd M to process "
                             "it in pixel coordinates.")
        logger.warning(
            "%s has no CRS/geotransform: processing in pixel coordinates at %.3f m/px; outputs "
            "have no CRS and lie at x = col × %g, y = −row × %g (metres; QGIS shows the image "
            "at x = col, y = −row)", path, gsd_m, gsd_m, gsd_m
        )
        return Georeferencing(None, pixel_space_transform(float(gsd_m)), False,
                              (float(gsd_m), float(gsd_m)))
    if src.crs is None:
        return _local_georeferencing(src, path, gsd_m)
    if gsd_m is not None:
        logger.warning("%s is georeferenced; ignoring --gsd %s", path, gsd_m)
    size = _pixel_size_m(src.crs, src.transform, src.width, src.height)
    if not all(math.isfinite(s) and s > 0 for s in size):
        raise SceneError(f"{path}: cannot compute the pixel size in metres from {src.transform}.")
    return Georeferencing(src.crs, src.transform, True, size)


def _local_georeferencing(src: DatasetReader, path: str, gsd_m: float | None) -> Georeferencing:
    """A geotransform without CRS (world file, ``.aux.xml``): keep it; metres per pixel from
    ``gsd_m`` or from the transform (its units taken as metres)."""
    t = src.transform
    size = (math.hypot(t.b, t.e), math.hypot(t.a, t.d))
    if not all(math.isfinite(s) and s > 0 for s in size):
        raise SceneError(f"{path}: cannot compute the pixel size from its geotransform {t}.")
    sidecars = [Path(f).name for f in src.files[1:] if not f.lower().endswith((".ovr", ".msk"))]
    where = ", ".join(sidecars) if sidecars else "the file itself"
    if gsd_m is not None:
        logger.warning(
            "%s has a geotransform (from %s) but no CRS: outputs keep its coordinates and have "
            "no CRS; lengths use --gsd %g m/px", path, where, gsd_m
        )
        return Georeferencing(None, t, True, (float(gsd_m), float(gsd_m)))
    if min(size) < MIN_LOCAL_PIXEL_M:
        raise SceneError(
            f"{path} has a geotransform (from {where}) but no CRS, and its pixels measure "
            f"{size[1]:.3g} × {size[0]:.3g} units (degrees?); add the CRS (e.g. an .aux.xml "
            "with <SRS>EPSG:xxxx</SRS>) or pass --gsd M with the metres per pixel."
        )
    logger.warning(
        "%s has a geotransform (from %s) but no CRS: outputs keep its coordinates and have no "
        "CRS; its units are taken as metres (%.3g m/px; pass --gsd M if they are not)",
        path, where, math.sqrt(size[0] * size[1])
    )
    return Georeferencing(None, t, True, size)


def grid_gsd_m(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Metres per pixel of a georeferenced grid: ``sqrt(row_m * col_m)`` (see module notes).

    The one GSD rule of roadx (scenes at inference, training samples, auxiliary rasters).

    Args:
        crs: the grid's CRS (projected: its linear unit; geographic: geodesic lengths).
        transform: the grid's affine transform.
        width, height: grid size in pixels (a geographic grid is measured at its centre).

    Returns:
        Metres per pixel.
    """
    row_m, col_m = _pixel_size_m(crs, transform, width, height)
    return math.sqrt(row_m * col_m)


def dataset_gsd_m(src: DatasetReader) -> float | None:
    """Metres per pixel of an open dataset (:func:`grid_gsd_m`); None without a CRS or with
    an identity (missing) geotransform."""
    if src.crs is None or src.transform.is_identity:
        return None
    return grid_gsd_m(src.crs, src.transform, src.width, src.height)


def _pixel_size_m(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """``(row, col)`` metres per pixel; geographic CRSs use geodesics at the scene centre."""
    pcrs = pyproj.CRS.from_wkt(crs.to_wkt())
    a, b, d, e = transform.a, transform.b, transform.d, transform.e
    if pcrs.is_geographic:
        ell = pcrs.ellipsoid
        geod = (pyproj.Geod(a=ell.semi_major_metre, rf=ell.inverse_flattening)
                if ell is not None and ell.inverse_flattening > 0 else pyproj.Geod(ellps="WGS84"))
        deg = math.degrees(pcrs.axis_info[0].unit_conversion_factor) if pcrs.axis_info else 1.0
        lon, lat = transform @ (width / 2, height / 2)
        lon, lat = lon * deg, lat * deg
        col_m = geod.inv(lon, lat, lon + a * deg, lat + d * deg)[2]
        row_m = geod.inv(lon, lat, lon + b * deg, lat + e * deg)[2]
        return float(row_m), float(col_m)
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return math.hypot(b, e) * factor, math.hypot(a, d) * factor


def _select_bands(
    src: DatasetReader, path: str, bands: Sequence[int] | None, band_order: Sequence[str]
) -> tuple[int, ...]:
    """1-based source band of each model channel, in ``band_order`` (see :func:`open_scene`)."""
    wants_nir = any(name in _NIR_NAMES for name in band_order)
    count = src.count
    expected = "4 bands given as R,G,B,NIR" if wants_nir else (
        "1 band (panchromatic) or 3 bands given as R,G,B")
    if bands is None:
        roles = default_bands(src.colorinterp)  # the same choice as training (io.samples)
        if not roles.image:
            raise SceneError(
                f"{path} has only alpha (transparency) band(s), {count} in all, and no image "
                "band; expected image data. If band 1 does hold the image, pass --bands 1."
            )
        chosen = list(roles.colour)
        if wants_nir:  # R,G,B + NIR (NAIP/PlanetScope order, or the first band not R,G,B)
            chosen = [*chosen, roles.nir] if len(chosen) == 3 and roles.nir else []
        if len(chosen) != 4 if wants_nir else not chosen:
            raise SceneError(
                f"{path} has {count} band(s) and no R,G,B{',NIR' if wants_nir else ''} colour "
                f"interpretation the model ({','.join(band_order)}) can use; pass --bands with "
                f"{expected} (1-based), e.g. --bands {'1,2,3,4' if wants_nir else '1,2,3'}."
            )
    else:
        chosen = [int(b) for b in bands]
        bad = [b for b in chosen if not 1 <= b <= count]
        sizes = (4,) if wants_nir else (1, 3)
        if bad or len(chosen) not in sizes:
            problem = f"band(s) {bad} out of range" if bad else f"{len(chosen)} bands given"
            raise SceneError(
                f"{path} has {count} band(s); --bands {','.join(map(str, chosen))} is invalid "
                f"for the model's input {','.join(band_order)} ({problem}). Expected {expected}, "
                f"each in 1..{count}."
            )
    if len(chosen) == 1:
        return tuple(chosen * len(band_order))
    given = [*_COLOURS, "NIR"][: len(chosen)]
    wanted = ["NIR" if name in _NIR_NAMES else name for name in band_order]
    if sorted(wanted) != sorted(given):
        raise SceneError(
            f"{path}: the model expects bands {tuple(band_order)}, which cannot be built from "
            f"a {','.join(given)} band selection; use a model with {','.join(given)} input."
        )
    return tuple(chosen[given.index(name)] for name in wanted)


def _stretch_band(values: np.ndarray, lo_hi: tuple[float, float] | None) -> np.ndarray:
    """Map one band's source values to uint8 with its scene-global stretch.

    The one stretch of the inference readers (:class:`Scene` and :class:`AuxRaster` bands),
    :func:`roadx.io.bands.stretch_to_uint8`, which training uses too.

    Args:
        values: ``(h, w)`` source values of one band, any numeric dtype.
        lo_hi: the band's ``(lo, hi)`` source values mapped to 0 and 255 (2nd and 98th
            percentiles, :func:`_check_not_empty_and_stretch`); None: ``values`` are uint8
            already and are returned as they are.

    Returns:
        ``(h, w)`` uint8: ``rint((v - lo) * 255 / (hi - lo))`` clipped to 0..255; NaN -> 0,
        +inf -> 255, -inf -> 0.
    """
    if lo_hi is None:
        return values.astype(np.uint8, copy=False)
    return stretch_to_uint8(values, *lo_hi)


def decimated_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of a read whose long side is at most :data:`DECIMATED_LONG_SIDE_PX`."""
    scale = max(height, width) / DECIMATED_LONG_SIDE_PX
    if scale <= 1:
        return height, width
    return max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale))


def _file_nodata_masks(src: DatasetReader | WarpedVRT, bands: Sequence[int]) -> bool:
    """True when the masks of ``bands`` come from the file's nodata value (not from an alpha
    band or a mask file), i.e. what a ``nodata=`` override replaces."""
    return all(MaskFlags.nodata in src.mask_flag_enums[b - 1] for b in bands)


def nodata_valid(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Validity under a declared no-data value: False where every band equals ``nodata``.

    Args:
        data: ``(C, h, w)`` source values (any dtype) of the selected bands.
        nodata: the value, or None (no declared value).

    Returns:
        ``(h, w)`` bool, or None when ``nodata`` is None. A pixel with one band at the value
        and another not stays valid (GDAL's ``dataset_mask`` rule for nodata values).
    """
    if nodata is None:
        return None
    if np.isnan(nodata):
        return ~np.isnan(data).all(axis=0)
    return ~(data == nodata).all(axis=0)


def _check_not_empty_and_stretch(
    src: DatasetReader, path: str, bands: Sequence[int], stretch: bool, *,
    expected: str = "expected a scene with image data. Check the nodata value and --bands.",
    nodata: float | None = None,
) -> dict[int, tuple[float, float]]:
    """Raise if the raster has no valid pixel; return per-band global stretch stats if asked.

    Args:
        src: the open source dataset (a scene, or an ``--aux`` raster).
        path: its path, for messages.
        bands: 1-based bands to check (and stretch).
        stretch: compute the 2–98 % percentiles of each band (non-uint8 data).
        expected: the end of the no-valid-pixel message (what was expected, what to do).
        nodata: a declared no-data value replacing the file's (see :func:`open_scene`).

    Returns:
        ``{band: (lo, hi)}`` source values mapped to 0 and 255 (empty without ``stretch``).

    Raises:
        roadx.errors.SceneError: no valid pixel in ``bands``.
    """
    unique = sorted(set(bands))
    all_valid = all(MaskFlags.all_valid in src.mask_flag_enums[b - 1] for b in unique)
    floating = np.issubdtype(np.dtype(src.dtypes[unique[0] - 1]), np.floating)
    if all_valid and not stretch and nodata is None:
        return {}
    out_shape = (len(unique), *decimated_shape(src.height, src.width))
    if nodata is not None and _file_nodata_masks(src, unique):
        masks = np.ones(out_shape, dtype=bool)  # the declared value replaces the file's
    else:
        masks = src.read_masks(unique, out_shape=out_shape) >= VALID_MIN
    read_data = stretch or floating or nodata is not None
    data = src.read(unique, out_shape=out_shape) if read_data else None
    if data is not None and floating:
        masks &= np.isfinite(data)
    declared = None if data is None else nodata_valid(data, nodata)
    if declared is not None:
        masks &= declared
    if not masks.any():
        # nearest-neighbour decimation can miss small valid areas: confirm with an average
        coarse = src.read_masks(unique, out_shape=out_shape, resampling=Resampling.average) > 0
        if floating:
            mean = src.read(unique, out_shape=out_shape, resampling=Resampling.average)
            coarse &= np.isfinite(mean)
        if nodata is not None:  # only the declared value: exact, so no average to confirm
            coarse[:] = False
        if not coarse.any():
            what = f"equal to the declared no-data value {nodata:g}" if nodata is not None else (
                "nodata or masked")
            raise SceneError(
                f"{path} has no valid pixels in bands {tuple(unique)} (everything is {what}); "
                f"{expected}"
            )
        masks = coarse
    stats: dict[int, tuple[float, float]] = {}
    if data is not None and stretch:
        for i, band in enumerate(unique):
            values = data[i][masks[i]]
            if values.size == 0:
                values = data[i][masks.any(axis=0)]
            stats[band] = stretch_limits(values)
    return stats


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """How a scene was opened: a picklable value that opens the same scene again elsewhere
    (another process or machine that sees the same path), e.g. on a Ray worker.

    Attributes: the arguments of :func:`open_scene` (``path`` and ``aux`` as strings: local
    paths or GDAL paths/URLs).
    """

    path: str
    bands: tuple[int, ...] | None
    band_order: tuple[str, ...]
    target_gsd_m: float | None
    gsd_m: float | None
    aux: str | None = None
    optional: tuple[str, ...] = ()
    nodata: float | None = None

    def open(self) -> "Scene":
        """Open the scene again (same processing grid, bands, stretch and auxiliary raster).

        Raises:
            As :func:`open_scene`.
        """
        return open_scene(self.path, bands=self.bands, band_order=self.band_order,
                          target_gsd_m=self.target_gsd_m, gsd_m=self.gsd_m, aux=self.aux,
                          optional=self.optional, nodata=self.nodata)


class Scene:
    """An open scene raster, read window by window on its processing grid.

    Use :func:`open_scene` to create one; close it (or use it as a context manager) when done.
    All sizes, the CRS and the transform describe the *processing grid*: the source grid, or
    the resampled grid when ``resampled`` is true. Reads are thread-safe (serialised).

    Attributes:
        path: the scene file.
        width: processing grid width in pixels.
        height: processing grid height in pixels.
        crs: CRS of the grid (None: no CRS is known: a plain image processed with ``gsd_m``,
            or a world file without CRS).
        transform: pixel -> CRS coordinates of the processing grid; for a plain image
            :func:`pixel_space_transform` (``x = col * gsd``, ``y = -row * gsd``).
        georeferenced: False for plain images processed with ``gsd_m`` (True when the
            transform came from the file, with or without CRS).
        pixel_size_m: ``(row, col)`` metres per processing-grid pixel.
        gsd_m: ``sqrt(row * col)`` metres per processing-grid pixel.
        source_gsd_m: GSD of the source grid in metres.
        resampled: True when reads go through a WarpedVRT to ``target_gsd_m``.
        band_indexes: 1-based source band of each channel read from the scene, in model
            order (with an auxiliary raster: the R,G,B channels only).
        dtype: source data type, e.g. ``"uint16"``.
        stretch: per channel of ``band_indexes`` ``(lo, hi)`` source values mapped to 0 and
            255, or None for uint8 scenes (no stretch).
        channels: channels of :meth:`read_window` (``len(band_order)``).
        aux: the auxiliary raster warped onto the processing grid (``--aux``), or None.
        aux_channels: model-order positions of the channels ``aux`` supplies (``()`` without
            one), or of the optional channels the scene lacks (``absent``).
        absent: True when ``aux_channels`` are optional bands that neither the scene nor an
            auxiliary raster supplies (a 3-band scene for ``d3fnet34-mm``): they read as 0
            with ``aux_valid`` False everywhere, so the model runs without them.
        nodata: the declared no-data value (``open_scene(nodata=)``), or None: the file's
            own nodata value, masks and alpha band decide validity.
        spec: the :class:`SceneSpec` that opens this scene again (set by
            :func:`open_scene`).
    """

    spec: SceneSpec

    def __init__(
        self, path: str, src: DatasetReader, vrt: WarpedVRT | None, *,
        georef: Georeferencing, source_gsd_m: float, band_indexes: tuple[int, ...],
        stretch: dict[int, tuple[float, float]], aux: "AuxRaster | None" = None,
        aux_channels: tuple[int, ...] = (), absent: bool = False, nodata: float | None = None,
    ) -> None:
        self.path = Path(path)
        self._uri = path
        self._src = src
        self._vrt = vrt
        self._reader: DatasetReader | WarpedVRT = vrt if vrt is not None else src
        self._lock = threading.Lock()
        self._closed = False
        self._stats = stretch
        self._bands = sorted(set(band_indexes))
        flags = self._reader.mask_flag_enums
        shared = all(MaskFlags.per_dataset in flags[i - 1] for i in self._bands)
        self._mask_bands = self._bands[:1] if shared else self._bands  # alpha/mask: read once
        self.nodata = nodata
        # a declared value replaces masks that come from the file's own nodata value
        self._read_masks = nodata is None or not _file_nodata_masks(self._reader, self._bands)
        self.width: int = self._reader.width
        self.height: int = self._reader.height
        self.crs: CRS | None = georef.crs
        self.transform: Affine = georef.transform
        self.georeferenced: bool = georef.georeferenced
        self.pixel_size_m: tuple[float, float] = georef.pixel_size_m
        self.gsd_m: float = georef.gsd_m
        self.source_gsd_m = source_gsd_m
        self.resampled: bool = vrt is not None
        self.band_indexes = band_indexes
        self.dtype: str = src.dtypes[band_indexes[0] - 1]
        self.stretch: tuple[tuple[float, float], ...] | None = (
            tuple(stretch[b] for b in band_indexes) if stretch else None
        )
        self.aux = aux
        self.aux_channels = aux_channels
        self.absent = absent
        self.channels: int = len(band_indexes) + len(aux_channels)
        self._scene_channels = [c for c in range(self.channels) if c not in aux_channels]

    def __repr__(self) -> str:
        aux = "" if self.aux is None else f", aux={self.aux.path!r} -> {self.aux_channels}"
        return (
            f"Scene({str(self.path)!r}, {self.width}x{self.height} px, crs={self.crs}, "
            f"gsd_m={self.gsd_m:.3f}, bands={self.band_indexes}, resampled={self.resampled}"
            f"{aux})"
        )

    def _read_inside(
        self, window: Window, masks_only: bool
    ) -> tuple[Window, Any, np.ndarray, "tuple[np.ndarray, np.ndarray] | None"]:
        """Read data and validity for the part of ``window`` inside the grid, and the
        auxiliary raster's ``(data, valid)`` there (None: masks only, or no aux raster)."""
        inner = window.intersection(Window(0, 0, self.height, self.width))
        if inner.height == 0 or inner.width == 0:
            return inner, None, np.zeros(inner.shape, dtype=bool), None
        rio = RioWindow(inner.col_off, inner.row_off, inner.width, inner.height)
        aux = None
        try:
            with self._lock, gdal_env(self._uri):
                if self._closed:  # a reader thread outliving its run (e.g. after Ctrl-C)
                    raise InputError(f"{self._uri} was closed; reading {window} stopped.")
                masks = (self._reader.read_masks(self._mask_bands, window=rio)
                         if self._read_masks else None)
                read_data = not masks_only or self.nodata is not None
                data = self._reader.read(self._bands, window=rio) if read_data else None
                if not masks_only and self.aux is not None:
                    aux = self.aux.read(rio)  # under the same lock: closed with the scene
        except RasterioIOError as err:
            raise InputError(f"{self._uri}: reading {window} failed ({gdal_reason(err)}); the "
                             "file may be corrupt or truncated.") from err
        valid = (np.ones(inner.shape, dtype=bool) if masks is None
                 else (masks >= VALID_MIN).any(axis=0))
        if data is not None and np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        declared = None if data is None else nodata_valid(data, self.nodata)
        if declared is not None:
            valid &= declared
        return inner, None if masks_only else data, valid, aux

    def read_window(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read one window of the processing grid (boundless).

        Memory is ``O(window)``: only the window's pixels are read, from the source or the
        WarpedVRT (and from the auxiliary raster's WarpedVRT).

        Args:
            window: rows/cols of the processing grid; may extend past any scene edge.

        Returns:
            ``image``: ``(C, h, w)`` uint8 with ``C = len(band_order)`` channels in model
            band order (3, or 4 for B,G,R,NIR); stretched with the scene-global stats for
            non-uint8 sources; 0 where invalid. With an auxiliary raster its channels
            (:attr:`aux_channels`) come from it, 0 where it has no data (see
            :meth:`read_window_aux` for where that is). ``valid``: ``(h, w)`` bool, False
            outside the scene and where masked (the scene's own validity, whatever the
            auxiliary raster holds).
        """
        image, valid, _ = self.read_window_aux(window)
        return image, valid

    def read_window_aux(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`read_window` plus where the auxiliary raster has data.

        This is the reader :func:`roadx.predict.predict_scene` gets: it turns the auxiliary
        channels into NaN (the multimodal models' "no auxiliary data") where ``aux_valid`` is
        False.

        Args:
            window: rows/cols of the processing grid; may extend past any scene edge.

        Returns:
            ``(image, valid, aux_valid)``: ``image`` and ``valid`` as :meth:`read_window`;
            ``aux_valid`` ``(h, w)`` bool, True where every auxiliary band has data (inside
            the auxiliary raster's extent, not nodata or masked, finite), also where the scene
            itself is invalid; None for a scene without an auxiliary raster; all False for
            ``absent`` optional channels.

        Raises:
            roadx.errors.InputError: the scene or the auxiliary raster cannot be read there
                (corrupt, truncated), or the scene was closed.
        """
        image = np.zeros((self.channels, window.height, window.width), dtype=np.uint8)
        valid = np.zeros(window.shape, dtype=bool)
        aux_valid = (None if self.aux is None and not self.absent
                     else np.zeros(window.shape, dtype=bool))
        inner, data, inner_valid, aux = self._read_inside(window, masks_only=False)
        if data is None:
            return image, valid, aux_valid
        rows, cols = inner.relative_to(window)
        valid[rows, cols] = inner_valid
        for channel, band in zip(self._scene_channels, self.band_indexes, strict=True):
            values = data[self._bands.index(band)]
            image[channel, rows, cols] = self._to_uint8(band, values)
        if aux is not None and aux_valid is not None:
            aux_image, aux_inside = aux
            aux_valid[rows, cols] = aux_inside
            for i, channel in enumerate(self.aux_channels):
                image[channel, rows, cols] = aux_image[i]
        image[:, ~valid] = 0
        return image, valid, aux_valid

    def read_overview(self, max_side_px: int) -> np.ndarray:
        """The whole scene decimated to at most ``max_side_px`` on its longer side.

        Read from the source's overviews where it has them (GDAL picks the level), else by
        decimated reads; memory is that of the result. Same band order and stretch as
        :meth:`read_window`; invalid pixels are 0. Auxiliary channels are 0 (a preview shows
        the scene's colours only).

        Returns:
            ``(C, h, w)`` uint8, ``h / height == w / width`` up to rounding (of the processing
            grid, which covers the same ground as the source).
        """
        scale = min(1.0, max_side_px / max(self.width, self.height))
        shape = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
        source = self._vrt if self._vrt is not None else self._src
        with self._lock:
            data = source.read(self._bands, out_shape=(len(self._bands), *shape),
                               resampling=Resampling.average, masked=True)
        valid = ~np.ma.getmaskarray(data).any(axis=0) if self._read_masks else np.ones(
            shape, dtype=bool)
        declared = nodata_valid(np.ma.getdata(data), self.nodata)
        if declared is not None:  # averaged values: the edge of a no-data area may stay
            valid &= declared
        image = np.zeros((self.channels, *shape), np.uint8)
        for channel, band in zip(self._scene_channels, self.band_indexes, strict=True):
            image[channel] = self._to_uint8(band, np.ma.getdata(data[self._bands.index(band)]))
        image[:, ~valid] = 0
        return image

    def _to_uint8(self, band: int, values: np.ndarray) -> np.ndarray:
        """Map one band's source values to uint8 with the global stretch."""
        return _stretch_band(values, self._stats.get(band))

    def valid_fraction_in(self, window: Window) -> float:
        """Fraction of ``window`` (pixels outside the scene count as invalid) that is valid."""
        if window.height == 0 or window.width == 0:
            return 0.0
        _, _, valid, _ = self._read_inside(window, masks_only=True)
        return float(valid.sum()) / (window.height * window.width)

    def close(self) -> None:
        """Close the WarpedVRT (if any), the dataset and the auxiliary raster, after a read
        in progress on another thread has ended; later reads raise
        :class:`~roadx.errors.InputError` instead of touching freed GDAL memory."""
        with self._lock:
            self._closed = True
            if self._vrt is not None:
                self._vrt.close()
            self._src.close()
            if self.aux is not None:
                self.aux.close()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_scene(
    path: str | os.PathLike[str], *, bands: Sequence[int] | None = None,
    band_order: Sequence[str] = ("B", "G", "R"), target_gsd_m: float | None = None,
    gsd_m: float | None = None, aux: str | os.PathLike[str] | None = None,
    optional: Sequence[str] = (), nodata: float | None = None,
) -> Scene:
    """Open a scene raster for windowed reading on its processing grid.

    Only metadata and one decimated read (long side <= 1024 px, for the empty-scene check and
    the uint16 stretch) happen here; pixels are read later by :meth:`Scene.read_window`.
    With ``aux`` the same holds for the auxiliary raster (:func:`open_aux`).

    Args:
        path: a GeoTIFF or any raster GDAL reads (1..N bands, uint8/uint16/float, any CRS).
        bands: 1-based source bands given as R,G,B (3 bands) or one panchromatic band that is
            repeated to every channel; for a model with a near-infrared channel, R,G,B,NIR
            (4 bands). Default: the bands whose colour interpretation is R,G,B (plus, for such
            a model, the first other image band), else 1,2,3 (1,2,3,4: the NAIP/PlanetScope
            order) (an alpha band is never an image band; it is the validity mask), or the
            only image band.
        band_order: the name of each model channel (the ModelCard's ``band_names``), a
            permutation of ``("R", "G", "B")`` or of ``("R", "G", "B", "NIR")``; default BGR
            as the D-LinkNet/D3FNet weights.
        target_gsd_m: the model's metres per pixel; when the scene GSD differs by more than
            10 % the scene is resampled on the fly (same CRS).
        gsd_m: metres per pixel for rasters without CRS/geotransform (plain JPEG/PNG); they
            are then processed in pixel coordinates placed by :func:`pixel_space_transform`
            (``georeferenced=False``). For a geotransform without CRS (world file) it gives
            the metres per pixel; ignored for georeferenced rasters.
            See :func:`read_georeferencing`.
        aux: a separate, co-registered raster (any CRS and GSD; uint8, uint16 or float) that
            supplies the channels of ``band_order`` other than R, G and B (e.g. NIR), from
            its first image bands (band 1 for one such channel); the scene then supplies
            R,G,B only (``bands``: 1 or 3 bands). It is warped onto the processing grid
            window by window (:func:`open_aux`); where it has no data,
            :meth:`Scene.read_window_aux` says so. Needs a scene with a CRS.
        optional: names in ``band_order`` the model works without (``BandSpec.optional``,
            e.g. ``("NIR",)`` for ``d3fnet34-mm``). Without ``aux`` and without 4 ``bands``,
            a scene that has no such band (1 or 3 image bands) is read as R,G,B with those
            channels absent (:attr:`Scene.absent`) instead of being refused.
        nodata: a source value (in the file's units, e.g. ``0`` for zero-filled edges) that
            marks no-data, for files that do not declare it or declare another: it replaces
            the file's nodata value (``gdalwarp -srcnodata``), keeps alpha bands and mask
            files, and a pixel is no-data where every selected band holds it. Such pixels are
            left out of the uint16 stretch, read as invalid, and become nodata in the
            outputs. Resampled reads pass it to the WarpedVRT, so no-data does not bleed into
            valid pixels. None: the file's own nodata value, masks and alpha band.

    Returns:
        The open :class:`Scene`.

    Raises:
        roadx.errors.InputError: the file does not exist or is not a raster GDAL can read;
            ``aux`` with 4 ``bands`` or with a ``band_order`` of R, G, B only.
        roadx.errors.SceneError: no CRS/geotransform and no ``gsd_m``; a world file in
            degrees without CRS and no ``gsd_m``; invalid ``bands``; no valid pixel (also:
            every pixel equals ``nodata``); ``aux``
            with a scene without CRS; every error of :func:`open_aux`.

    References:
        ``../shared/specs/pipeline-anchors.md`` §4.6–4.8 (nodata, bands and dtype, GSD);
        CRESI ``create_8bit_images`` (2–98 % percentile stretch).
    """
    aux_uri = None if aux is None else os.fspath(aux)
    aux_channels = () if aux_uri is None else _aux_channels(path, aux_uri, bands, band_order)
    uri, src = open_dataset(path)
    absent = False
    if aux_uri is None and _lacks_optional(src, bands, band_order, optional):
        aux_channels = tuple(i for i, n in enumerate(band_order) if n in optional)
        absent = True
        names = "/".join(band_order[i] for i in aux_channels)
        logger.warning(
            "%s %s: bands %s run without it (the model's %s-absent path)", uri,
            f"has no {names} band" if bands is None else
            f"--bands {','.join(map(str, bands))} names no {names} band",
            ",".join(n for i, n in enumerate(band_order) if i not in aux_channels), names,
        )
    scene_order = [n for i, n in enumerate(band_order) if i not in aux_channels]
    vrt: WarpedVRT | None = None
    aux_raster: AuxRaster | None = None
    try:
        with gdal_env(uri):
            georef = read_georeferencing(src, uri, gsd_m)
            if aux_uri is not None and georef.crs is None:
                what = "a CRS (only a geotransform)" if georef.georeferenced else (
                    "georeferencing (a plain image)")
                raise SceneError(
                    f"{uri} has no {what}, so the auxiliary raster --aux {aux_uri} cannot be "
                    "warped onto it; give the scene a CRS, or drop --aux."
                )
            band_indexes = _select_bands(src, uri, bands, scene_order)
            stretch_needed = src.dtypes[band_indexes[0] - 1] != "uint8"
            stats = _check_not_empty_and_stretch(src, uri, band_indexes, stretch_needed,
                                                 nodata=nodata)
            source_gsd = georef.gsd_m
            if target_gsd_m is not None and (
                abs(source_gsd - target_gsd_m) / target_gsd_m > RESAMPLE_TOLERANCE
            ):
                vrt, georef = _warped_grid(src, georef, target_gsd_m, nodata)
        if aux_uri is not None:
            reader = vrt if vrt is not None else src
            aux_raster = open_aux(aux_uri, scene=uri, crs=georef.crs, transform=georef.transform,
                                  width=reader.width, height=reader.height, gsd_m=georef.gsd_m,
                                  count=len(aux_channels))
    except BaseException:
        if vrt is not None:
            vrt.close()
        src.close()
        raise
    scene = Scene(uri, src, vrt, georef=georef, source_gsd_m=source_gsd,
                  band_indexes=band_indexes, stretch=stats, aux=aux_raster,
                  aux_channels=aux_channels, absent=absent, nodata=nodata)
    scene.spec = SceneSpec(uri, None if bands is None else tuple(bands), tuple(band_order),
                           target_gsd_m, gsd_m, aux_uri, tuple(optional), nodata)
    logger.info("opened %r", scene)
    if scene.stretch:
        logger.info("global stretch (lo, hi) per channel: %s", scene.stretch)
    return scene


def _lacks_optional(
    src: DatasetReader, bands: Sequence[int] | None, band_order: Sequence[str],
    optional: Sequence[str],
) -> bool:
    """True when ``band_order`` has optional non-R,G,B channels the scene cannot supply: no
    NIR band by :func:`roadx.io.bands.default_bands`, or ``bands`` giving 1 or 3 bands."""
    wanted = [n for n in band_order if n not in _COLOURS]
    if not wanted or any(n not in optional for n in wanted):
        return False
    if bands is not None:
        return len(bands) in (1, 3)
    roles = default_bands(src.colorinterp)
    return bool(roles.colour) and roles.nir is None


def _aux_channels(
    scene: str | os.PathLike[str], aux: str, bands: Sequence[int] | None,
    band_order: Sequence[str],
) -> tuple[int, ...]:
    """Model-order positions of the channels an ``--aux`` raster supplies: every channel of
    ``band_order`` that is not R, G or B (the scene supplies those).

    Raises:
        roadx.errors.InputError: ``band_order`` has no such channel; ``bands`` names 4 bands
            (R,G,B,NIR from the scene, so the auxiliary raster would have nothing to supply).
    """
    channels = tuple(i for i, name in enumerate(band_order) if name not in _COLOURS)
    if not channels:
        raise InputError(
            f"--aux {aux}: the model's input ({','.join(band_order)}) has no near-infrared or "
            "auxiliary channel for it; use a multimodal model (e.g. --model d3fnet34-mm), or "
            "drop --aux."
        )
    if bands is not None and len(bands) == 4:
        raise InputError(
            f"--aux {aux} supplies the {','.join(band_order[i] for i in channels)} channel, but "
            f"--bands {','.join(map(str, bands))} takes 4 bands (R,G,B,NIR) from the scene "
            f"{os.fspath(scene)}; with --aux give the scene's R,G,B (e.g. --bands 1,2,3), or "
            "drop --aux to read the NIR band from the scene."
        )
    return channels


def _warped_grid(
    src: DatasetReader, georef: Georeferencing, target_gsd_m: float, nodata: float | None = None,
) -> tuple[WarpedVRT, Georeferencing]:
    """A WarpedVRT in the source CRS whose pixels are ``target_gsd_m`` metres on each axis
    (``nodata``: a declared source no-data value, see :func:`open_scene`)."""
    row_m, col_m = georef.pixel_size_m
    sx, sy = target_gsd_m / col_m, target_gsd_m / row_m
    width = max(1, math.ceil(src.width / sx - 1e-6))
    height = max(1, math.ceil(src.height / sy - 1e-6))
    if max(width, height) > _MAX_GRID_PX:
        raise SceneError(
            f"{src.name}: resampling from {georef.gsd_m:.3g} m to {target_gsd_m:.3g} m per pixel "
            f"would make a {width:,} × {height:,} px grid, larger than GDAL can address "
            f"({_MAX_GRID_PX:,} px a side); check the weights' GSD, or pass --no-resample."
        )
    transform = georef.transform @ Affine.scale(sx, sy)
    factor = target_gsd_m / georef.gsd_m
    resampling = Resampling.average if factor > 2 else Resampling.bilinear
    # the VRT's alpha band carries validity: nodata, internal masks, outside the source
    options: dict[str, Any] = dict(transform=transform, width=width, height=height,
                                   resampling=resampling,
                                   add_alpha=ColorInterp.alpha not in src.colorinterp)
    if nodata is not None:  # the warper leaves it out of resampling and the alpha band
        options["src_nodata"] = nodata
    if georef.crs is not None:
        options["crs"] = src.crs
    else:  # no CRS: a plain image (pixel-space transform) or a world file without CRS
        options["src_transform"] = georef.transform
    vrt = WarpedVRT(src, **options)
    logger.info("resampling %.3f m -> %.3f m per pixel (%s): %dx%d -> %dx%d px", georef.gsd_m,
                target_gsd_m, resampling.name, src.width, src.height, width, height)
    if factor < 0.25:
        logger.warning("upsampling %s by %.0fx; the model sees no more detail than the source "
                       "has (%.2f m/px)", src.name, 1 / factor, georef.gsd_m)
    size = (row_m * sy, col_m * sx)
    return vrt, Georeferencing(georef.crs, transform, georef.georeferenced, size)


class AuxRaster:
    """An auxiliary raster (``--aux``: NIR, nDSM, SAR, ...) warped onto a scene's processing
    grid, read window by window together with the scene.

    Create it with :func:`open_aux` (:func:`open_scene` does, given ``aux``). Reads go through
    a :class:`rasterio.vrt.WarpedVRT` whose grid *is* the scene's processing grid (same CRS,
    transform and size), so a window of the scene is the same window here; GDAL warps only
    the pixels of that window (memory ``O(window)``, never the whole auxiliary raster).
    Not thread-safe: :class:`Scene` calls :meth:`read` under its own lock.

    Attributes:
        path: the auxiliary raster as given (a local path or a GDAL path/URL).
        band_indexes: its 1-based source band of each auxiliary channel.
        dtype: its source data type, e.g. ``"uint16"``.
        stretch: per channel ``(lo, hi)`` source values mapped to 0 and 255 (2–98 %
            percentiles of the whole auxiliary raster, :func:`_stretch_band`), or None for
            uint8 data (no stretch).
        resampling: ``bilinear``, or ``average`` when its pixels are more than 10 % finer
            than the processing grid's (downsampling).
        gsd_m: its own metres per pixel.
    """

    def __init__(self, path: str, src: DatasetReader, vrt: WarpedVRT, *,
                 band_indexes: tuple[int, ...], stretch: dict[int, tuple[float, float]],
                 resampling: Resampling, gsd_m: float) -> None:
        self.path = path
        self._src = src
        self._vrt = vrt
        self.band_indexes = band_indexes
        self.dtype: str = src.dtypes[band_indexes[0] - 1]
        self._stats = stretch
        self.stretch: tuple[tuple[float, float], ...] | None = (
            tuple(stretch[b] for b in band_indexes) if stretch else None
        )
        self.resampling = resampling
        self.gsd_m = gsd_m
        flags = vrt.mask_flag_enums
        shared = all(MaskFlags.per_dataset in flags[b - 1] for b in band_indexes)
        self._mask_bands = list(band_indexes[:1] if shared else band_indexes)

    def __repr__(self) -> str:
        return (f"AuxRaster({self.path!r}, bands={self.band_indexes}, dtype={self.dtype}, "
                f"gsd_m={self.gsd_m:.3f}, resampling={self.resampling.name})")

    def read(self, window: RioWindow) -> tuple[np.ndarray, np.ndarray]:
        """Read one window of the processing grid that lies inside that grid.

        Args:
            window: a rasterio window of the scene's processing grid, within its bounds.

        Returns:
            ``(image, valid)``: ``image`` ``(k, h, w)`` uint8, one channel per
            ``band_indexes``, stretched like the scene's bands for non-uint8 data, 0 where
            not valid; ``valid`` ``(h, w)`` bool, True where every band has data: inside the
            raster's extent, not nodata or masked (through the VRT's alpha band), finite.

        Raises:
            roadx.errors.InputError: GDAL cannot read or warp the raster there.
        """
        bands = list(self.band_indexes)
        try:
            with gdal_env(self.path):
                masks = self._vrt.read_masks(self._mask_bands, window=window)
                data = self._vrt.read(bands, window=window)
        except RasterioIOError as err:
            raise InputError(f"--aux {self.path}: reading the window at row {window.row_off}, "
                             f"col {window.col_off} failed ({gdal_reason(err)}); the file may "
                             "be corrupt or truncated.") from err
        valid = (masks >= VALID_MIN).all(axis=0)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        image = np.stack([_stretch_band(values, self._stats.get(band))
                          for values, band in zip(data, bands, strict=True)])
        image[:, ~valid] = 0
        return image, valid

    def close(self) -> None:
        """Close the WarpedVRT and the dataset."""
        self._vrt.close()
        self._src.close()


def open_aux(
    path: str | os.PathLike[str], *, scene: str | os.PathLike[str], crs: CRS,
    transform: Affine, width: int, height: int, gsd_m: float, count: int = 1,
) -> AuxRaster:
    """Open an auxiliary raster warped onto a scene's processing grid.

    The raster may have any CRS and GSD; it is warped with bilinear resampling, or
    ``average`` when its pixels are more than 10 % finer than the grid's (downsampling), like
    the scene's own resampling. Its nodata value, masks and alpha band, and everything
    outside its extent, become "no data" (the VRT's alpha band). Non-uint8 data are
    stretched to uint8 with the scene bands' 2–98 % percentile stretch, computed from one
    decimated read of the whole auxiliary raster (scene-global, never per window). Only
    metadata and that read happen here.

    Args:
        path: the auxiliary raster: any raster GDAL reads, with a CRS and a geotransform;
            its first ``count`` image (non-alpha) bands are used.
        scene: the scene's path, for messages.
        crs: CRS of the processing grid (:attr:`Scene.crs`).
        transform: pixel -> CRS coordinates of the processing grid.
        width: processing grid width in pixels.
        height: processing grid height in pixels.
        gsd_m: metres per processing-grid pixel.
        count: auxiliary channels wanted (1 for NIR).

    Returns:
        The open :class:`AuxRaster`.

    Raises:
        roadx.errors.InputError: the file does not exist or is not a raster GDAL can read.
        roadx.errors.SceneError: it has no CRS or no geotransform; fewer than ``count`` image
            bands; no valid pixel; its extent does not overlap the scene's.
    """
    uri, src = open_dataset(path)
    try:
        with gdal_env(uri):
            if src.transform.is_identity or src.crs is None:
                what = "CRS" if not src.transform.is_identity else "CRS/geotransform"
                gcps = " (only GCPs/RPCs: orthorectify it first)" if (
                    src.gcps[0] or src.rpcs) else ""
                raise SceneError(
                    f"--aux {uri} has no {what}{gcps}, so it cannot be warped onto the grid of "
                    f"the georeferenced scene {os.fspath(scene)} ({crs}); give it a CRS and a "
                    "geotransform."
                )
            image = default_bands(src.colorinterp).image
            if len(image) < count:
                raise SceneError(
                    f"--aux {uri} has {len(image)} image band(s); the model needs {count} "
                    "auxiliary band(s) from it."
                )
            bands = tuple(image[:count])
            stats = _check_not_empty_and_stretch(
                src, uri, bands, src.dtypes[bands[0] - 1] != "uint8",
                expected="expected auxiliary data. Check its nodata value.")
            _check_overlap(src, uri, os.fspath(scene), crs, transform, width, height)
            aux_gsd = grid_gsd_m(src.crs, src.transform, src.width, src.height)
            resampling = (Resampling.average if gsd_m / aux_gsd > 1 + RESAMPLE_TOLERANCE
                          else Resampling.bilinear)
            vrt = WarpedVRT(src, crs=crs, transform=transform, width=width, height=height,
                            resampling=resampling,
                            add_alpha=ColorInterp.alpha not in src.colorinterp)
    except BaseException:
        src.close()
        raise
    aux = AuxRaster(uri, src, vrt, band_indexes=bands, stretch=stats, resampling=resampling,
                    gsd_m=aux_gsd)
    logger.info("auxiliary raster %r warped onto the %dx%d px grid of %s", aux, width, height,
                os.fspath(scene))
    if aux.stretch:
        logger.info("auxiliary global stretch (lo, hi) per channel: %s", aux.stretch)
    return aux


def _check_overlap(src: DatasetReader, path: str, scene: str, crs: CRS, transform: Affine,
                   width: int, height: int) -> None:
    """Raise :class:`SceneError` when the extent of ``src`` (transformed to ``crs``) and the
    grid's do not overlap; skipped (logged) when the extent cannot be transformed."""
    corners = [transform @ (c, r) for c, r in ((0, 0), (width, 0), (0, height), (width, height))]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    grid = (min(xs), min(ys), max(xs), max(ys))
    try:
        left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
    except (RasterioError, ValueError) as err:
        logger.info("cannot transform the extent of %s to %s (%s); overlap not checked", path,
                    crs, err)
        return
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        logger.info("the extent of %s has no finite bounds in %s; overlap not checked", path, crs)
        return
    if left >= grid[2] or right <= grid[0] or bottom >= grid[3] or top <= grid[1]:
        raise SceneError(
            f"--aux {path} does not overlap the scene {scene}: in {crs.to_string() or crs} it "
            f"covers x {left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g}, the scene x "
            f"{grid[0]:.6g}..{grid[2]:.6g}, y {grid[1]:.6g}..{grid[3]:.6g}; check that it is "
            "the raster of the same area."
        )
