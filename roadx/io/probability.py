"""Road-probability rasters: the streaming writer and a reader for ``roadx vectorize``.

File format written by :class:`ProbabilityWriter` (COG: GDAL's COG driver, cogeo.org):
a single-band **uint8** GeoTIFF where ``0..254 = round(p * 254)`` and ``255 = nodata``, with
band scale ``1/254`` and offset ``0`` (QGIS and ``gdalinfo`` then show 0..1), 512x512 tiles,
DEFLATE with ``PREDICTOR=2``, ``BIGTIFF=IF_SAFER``, average overviews, and the tag
``ROADX_PROBABILITY``, laid out as a Cloud-Optimized GeoTIFF (GDAL's COG driver). It is 4x smaller than float32 and loses at most 1/508 in probability.

:func:`open_probability` reads that format and also rasters made by other tools: float
probabilities in [0, 1], 0/255 masks and 0/1 masks, row band by row band.
"""

import logging
import math
import os
import shutil
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window as RioWindow

from roadx.errors import InputError, OutputError
from roadx.io import styles
from roadx.fs import check_output_path, discard, format_bytes, partial_path, place
from roadx.io.raster import (
    VALID_MIN,
    decimated_shape,
    gdal_env,
    gdal_reason,
    open_dataset,
    read_georeferencing,
)
from roadx.tiling import Window

logger = logging.getLogger(__name__)

PROB_SCALE = 254
PROB_NODATA = 255
BLOCK_PX = 512
TAG = "ROADX_PROBABILITY"
TAG_TEXT = "road probability p; uint8 value = round(p * 254); 255 = nodata; p = value / 254"
Kind = Literal["roadx", "float", "uint8", "mask01", "scaled"]


def encode_probability(prob: np.ndarray) -> np.ndarray:
    """Encode probabilities as uint8: ``round(p * 254)``, NaN -> 255 (nodata).

    Args:
        prob: float array in [0, 1] (values outside are clipped); NaN marks nodata.

    Returns:
        uint8 array of the same shape with values 0..254 and 255 for nodata.
    """
    p = np.asarray(prob, dtype=np.float32)
    out = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
    out[np.isnan(p)] = PROB_NODATA
    return out


class ProbabilityWriter:
    """Write a probability raster window by window; the file appears only on success.

    The data go to a unique hidden ``.<name>.roadx-<host>-<pid>-<random>.partial`` file beside
    ``path``; :meth:`close` (or leaving the ``with`` block normally) builds overviews and
    renames it to ``path`` with :func:`os.replace`, so concurrent runs never clobber each
    other's temporary file (:meth:`finish` and :meth:`commit` do the two halves separately).
    A QGIS style ``<stem>.qml`` (a colour ramp, :func:`roadx.io.styles.probability_qml`) is
    written beside it when there is none (or with ``overwrite``). On an exception the partial
    file is removed. Pixels never written read as nodata (255). Memory is one block.

    Args:
        path: output ``.tif``/``.tiff``.
        width: grid width in pixels (the processing grid of the scene).
        height: grid height in pixels.
        crs: grid CRS (None for pixel coordinates).
        transform: grid transform (for a plain image processed with ``--gsd``:
            ``Affine(gsd, 0, 0, 0, -gsd, 0)``, written without CRS, so the raster lies where
            roadx's vector outputs do).
        overwrite: replace an existing file.
        overviews: build internal ``average`` overviews (2, 4, ... down to ~256 px) on close.
        cog: on close, rewrite the file with GDAL's COG driver, so it is a valid
            Cloud-Optimized GeoTIFF (IFDs and overviews first, tiles in order; readable over
            HTTP range requests by QGIS, GDAL ``/vsicurl/``, titiler). Costs one more pass
            over the compressed file (a few seconds per 10⁸ px).

    Raises:
        roadx.errors.OutputError: unsupported extension or missing folder.
        roadx.errors.OutputExistsError: ``path`` exists and ``overwrite`` is false.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, width: int, height: int, crs: CRS | None,
        transform: Affine, overwrite: bool = False, overviews: bool = True,
        tags: dict[str, str] | None = None, cog: bool = True,
    ) -> None:
        self.path = check_output_path(path, overwrite=overwrite, suffixes=(".tif", ".tiff"))
        self._cog = cog
        self.width, self.height = int(width), int(height)
        self._partial = partial_path(self.path)
        self._overviews = overviews
        self._overwrite = overwrite
        profile: dict[str, Any] = dict(
            driver="GTiff", width=self.width, height=self.height, count=1, dtype="uint8",
            nodata=PROB_NODATA, crs=crs, transform=transform, tiled=True,
            blockxsize=BLOCK_PX, blockysize=BLOCK_PX, compress="deflate", predictor=2,
            BIGTIFF="IF_SAFER",
        )
        self._dst: Any = None
        try:  # also on Ctrl-C/SIGTERM here: the caller has no writer to abort yet
            with gdal_env(str(self._partial)), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._dst = rasterio.open(self._partial, "w", **profile)
            self._dst.scales = (1.0 / PROB_SCALE,)
            self._dst.offsets = (0.0,)
            self._dst.update_tags(**{TAG: TAG_TEXT}, **(tags or {}))
            self._dst.set_band_description(1, "road probability (0-1)")
        except BaseException:
            if self._dst is not None:
                self._dst.close()
            discard(self._partial)
            raise
        self._finished = False
        self._committed = False

    def write(self, window: Window, prob: np.ndarray) -> None:
        """Write probabilities for one window of the grid.

        Args:
            window: where ``prob`` lies in the grid; parts outside the grid are dropped.
            prob: ``(h, w)`` float32 in [0, 1] with ``(h, w) == window.shape``; NaN = nodata.

        Raises:
            ValueError: ``prob`` does not match the window, or the writer is closed.
            roadx.errors.OutputError: GDAL cannot write (disk full, I/O error).
        """
        if self._finished:
            raise ValueError(f"{self.path}: the probability writer is already closed")
        if prob.shape != window.shape:
            raise ValueError(f"prob has shape {prob.shape}, expected {window.shape} for {window}")
        inner = window.intersection(Window(0, 0, self.height, self.width))
        if inner.height == 0 or inner.width == 0:
            return
        rows, cols = inner.relative_to(window)
        rio = RioWindow(inner.col_off, inner.row_off, inner.width, inner.height)
        try:
            self._dst.write(encode_probability(prob[rows, cols]), 1, window=rio)
        except RasterioError as err:
            raise self._write_error(err) from err

    def _write_error(self, err: BaseException) -> OutputError:
        """An :class:`OutputError` naming the output, GDAL's reason and the free space."""
        try:
            free = f"; {format_bytes(shutil.disk_usage(self.path.parent).free)} free there"
        except OSError:
            free = ""
        return OutputError(
            f"{self.path}: writing the probability raster failed ({gdal_reason(err)}{free}); "
            "check free space and permissions of its folder."
        )

    def finish(self) -> None:
        """Build the overviews and close the file, which stays under its temporary name
        until :meth:`commit` (so that several outputs can be put in place together).

        Raises:
            roadx.errors.OutputError: GDAL cannot finish the file (disk full, I/O error);
                the temporary file is removed.
        """
        if self._finished:
            return
        self._finished = True
        try:
            factors = [2**i for i in range(1, 32) if max(self.width, self.height) / 2**i >= 256]
            if self._overviews and factors:
                self._dst.build_overviews(factors, Resampling.average)
                self._dst.update_tags(ns="rio_overview", resampling="average")
            self._dst.close()
            if self._cog:
                self._partial = self._to_cog(self._partial)
        except BaseException as err:
            self._dst.close()
            discard(self._partial)
            if isinstance(err, RasterioError):
                raise self._write_error(err) from err
            raise

    def _to_cog(self, tiled: Path) -> Path:
        """Rewrite the finished tiled GeoTIFF with GDAL's COG driver (same tiles,
        compression, overviews, tags and band scale), into a new temporary file.

        Returns:
            The temporary COG path (``tiled`` is removed).
        """
        from rasterio.shutil import copy as gdal_copy

        cog = partial_path(self.path)
        try:
            with gdal_env(str(cog)):
                gdal_copy(
                    str(tiled), str(cog), driver="COG", COMPRESS="DEFLATE", PREDICTOR="2",
                    BLOCKSIZE=str(BLOCK_PX), BIGTIFF="IF_SAFER", OVERVIEWS="AUTO",
                    RESAMPLING="AVERAGE",
                )
        except BaseException:
            discard(cog)
            raise
        finally:
            discard(tiled)
        return cog

    def commit(self) -> None:
        """Move the finished file into place (:func:`roadx.fs.place`: replacing an
        existing file only with ``overwrite``); finishes it first.

        Raises:
            roadx.errors.OutputExistsError: without ``overwrite``, another run put a file at
                ``path`` while this one was writing; the temporary file is removed.
        """
        self.finish()
        if not self._committed:
            try:
                place(self._partial, self.path, overwrite=self._overwrite)
            except BaseException:
                discard(self._partial)
                raise
            self._committed = True
            logger.info("wrote probability raster %s", self.path)
            sidecar = styles.qml_sidecar(self.path)
            if self._overwrite or not sidecar.exists():
                try:  # the style is a convenience: never fail the run over it
                    styles.write_qml(sidecar, styles.probability_qml())
                except OSError as err:
                    logger.warning("could not write the QGIS style %s: %s", sidecar, err)

    def close(self) -> None:
        """Finish the file (overviews) and move it into place."""
        self.commit()

    def abort(self) -> None:
        """Close and remove the temporary file; ``path`` is left untouched (also after a
        :meth:`finish`; after :meth:`commit` this does nothing)."""
        if not self._finished:
            self._finished = True
            self._dst.close()
        if not self._committed:
            discard(self._partial)

    def __enter__(self) -> "ProbabilityWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ProbabilityRaster:
    """A probability or road-mask raster opened for reading in row bands.

    Attributes:
        path: the file.
        width: grid width in pixels.
        height: grid height in pixels.
        crs: CRS (None: pixel coordinates).
        transform: pixel -> CRS coordinates.
        georeferenced: False for rasters without CRS/geotransform opened with ``gsd_m``
            (see :func:`roadx.io.raster.read_georeferencing`).
        pixel_size_m: ``(row, col)`` metres per pixel.
        gsd_m: ``sqrt(row * col)`` metres per pixel.
        kind: the detected encoding: ``"roadx"`` (uint8 /254, 255 nodata), ``"float"``
            ([0, 1]), ``"uint8"`` (0..255 incl. 0/255 masks, /255), ``"mask01"`` (0/1),
            ``"scaled"`` (integer with band scale/offset).
    """

    def __init__(self, uri: str, src: DatasetReader, gsd_m: float | None) -> None:
        self.path = Path(uri)
        self._uri = uri
        self._src = src
        georef = read_georeferencing(src, uri, gsd_m)
        self.width: int = src.width
        self.height: int = src.height
        self.crs: CRS | None = georef.crs
        self.transform: Affine = georef.transform
        self.georeferenced: bool = georef.georeferenced
        self.pixel_size_m: tuple[float, float] = georef.pixel_size_m
        self.gsd_m: float = georef.gsd_m
        if src.count > 1:
            logger.warning("%s has %d bands; reading band 1 as the probability", uri, src.count)
        self.kind, self._scale, self._offset = self._detect()
        logger.info("%s: %s probability raster, %dx%d px", uri, self.kind, self.width, self.height)

    def _detect(self) -> tuple[Kind, float, float]:
        src, uri = self._src, self._uri
        dtype = np.dtype(src.dtypes[0])
        scale, offset = float(src.scales[0]), float(src.offsets[0])
        if TAG in src.tags() or (
            dtype == np.uint8 and src.nodata == PROB_NODATA
            and math.isclose(scale, 1 / PROB_SCALE, rel_tol=1e-4)
        ):
            return "roadx", 1.0 / PROB_SCALE, 0.0
        if not np.issubdtype(dtype, np.floating) and (scale != 1.0 or offset != 0.0):
            return "scaled", scale, offset
        shape = decimated_shape(src.height, src.width)
        sample, masks = self._read(out_shape=shape)
        valid = masks >= VALID_MIN
        values = sample[valid & np.isfinite(sample)] if sample.dtype.kind == "f" else sample[valid]
        lo = float(values.min()) if values.size else 0.0
        hi = float(values.max()) if values.size else 0.0
        if np.issubdtype(dtype, np.floating):
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise InputError(
                    f"{uri} has float values in [{lo:g}, {hi:g}]; expected probabilities in "
                    "[0, 1]. Apply a sigmoid to logits first."
                )
            return "float", 1.0, 0.0
        if hi <= 1:
            return "mask01", 1.0, 0.0
        if dtype == np.uint8:
            return "uint8", 1.0 / 255, 0.0
        raise InputError(
            f"{uri} is {dtype.name} with values up to {hi:g}; expected a roadx probability "
            "raster, float probabilities in [0, 1], or a 0/1 or 0/255 road mask."
        )

    def _read(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Band 1 and its mask (``src.read`` keyword arguments: ``window``, ``out_shape``).

        Raises:
            roadx.errors.InputError: GDAL cannot read the pixels (corrupt or truncated file).
        """
        try:
            with gdal_env(self._uri):
                return self._src.read(1, **kwargs), self._src.read_masks(1, **kwargs)
        except RasterioIOError as err:
            raise InputError(
                f"{self._uri}: reading the pixels failed ({gdal_reason(err)}); the file may be "
                "corrupt or truncated."
            ) from err

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        """Read full-width rows ``[row0, row1)`` as probabilities.

        Args:
            row0: first row (may be negative: rows outside the raster are NaN).
            row1: one past the last row.

        Returns:
            ``(row1 - row0, width)`` float32 in [0, 1]; NaN where nodata/masked/outside.
        """
        out = np.full((max(0, row1 - row0), self.width), np.nan, dtype=np.float32)
        a, b = max(row0, 0), min(row1, self.height)
        if b <= a:
            return out
        values, masks = self._read(window=RioWindow(0, a, self.width, b - a))
        valid = masks >= VALID_MIN
        prob = values.astype(np.float32) * np.float32(self._scale) + np.float32(self._offset)
        np.clip(prob, 0.0, 1.0, out=prob)
        prob[~valid] = np.nan
        out[a - row0 : b - row0] = prob
        return out

    def close(self) -> None:
        """Close the dataset."""
        self._src.close()

    def __enter__(self) -> "ProbabilityRaster":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_probability(
    path: str | os.PathLike[str], *, gsd_m: float | None = None
) -> ProbabilityRaster:
    """Open a probability or road-mask raster for ``roadx vectorize``.

    Accepted encodings (band 1): roadx uint8 (``value / 254``, 255 nodata), float in [0, 1],
    uint8 0..255 including 0/255 masks (``value / 255``), 0/1 masks, and integer rasters with a
    band scale/offset. The raster's nodata value or mask gives NaN.

    Args:
        path: the raster.
        gsd_m: metres per pixel for rasters without CRS/geotransform (pixel coordinates).

    Returns:
        The open :class:`ProbabilityRaster`; read it with ``read_rows``.

    Raises:
        roadx.errors.InputError: missing or unreadable file; values that are not
            probabilities (float outside [0, 1], integer other than 0/1 or 0..255).
        roadx.errors.SceneError: no CRS/geotransform and no ``gsd_m``.
    """
    uri, src = open_dataset(path)
    try:
        return ProbabilityRaster(uri, src, gsd_m)
    except BaseException:
        src.close()
        raise
