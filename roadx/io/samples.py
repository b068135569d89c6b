"""Labelled training samples: image/mask pairs and GeoTIFF scenes with road centreline vectors.

The training side of roadx reads every file through this module, so the same decoder
(GDAL, through rasterio) turns pixels into arrays at training and at inference time. That
matters for 4:2:0 JPEGs, which Pillow and GDAL decode differently (see
``shared/data/SOURCES.md``); Pillow is only the fallback for files GDAL cannot open.

Two readers return the same :class:`LabelledImage` at a requested ground sample distance:

* :func:`read_labelled_pair` — an image and a road mask of the same size (DeepGlobe,
  Massachusetts Roads, any ``images/`` + ``masks/`` folder). Masks are road where band 1 > 127.
* :func:`read_labelled_scene` — a georeferenced scene plus road centrelines (GeoJSON, GPKG,
  SHP, ...). The scene is warped to a metric CRS (its own if projected, else the local UTM zone)
  at the target GSD, the lines are reprojected there and rasterized with a buffer of
  ``road_width_m / 2`` on each side.

Valid pixels exclude nodata, alpha and internal masks, and pure-white (255, 255, 255) pixels,
which the Massachusetts tiles use as survey no-data while their masks still draw roads there.

Bands are chosen and stretched by :mod:`roadx.io.bands`, the same core inference uses: R, G, B
(a panchromatic band repeated) by colour interpretation or NAIP/PlanetScope order, plus, when
asked (``extra="NIR"``), the image's near-infrared band, or an auxiliary raster (NIR, DSM, SAR)
warped onto the image grid; non-uint8 bands get the per-band 2–98 % stretch.
"""

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadx.errors import DatasetError
from roadx.io.bands import default_bands, stretch_limits, stretch_to_uint8

logger = logging.getLogger(__name__)

#: Relative GSD difference below which a source is used as is (no resampling).
GSD_TOLERANCE = 0.10


@dataclass(frozen=True)
class LabelledImage:
    """One training image with its road label, at one ground sample distance.

    Attributes:
        image: (H, W, C) uint8 in ``bands`` order: R, G, B (reorder to a model card's bands
            later), then the extra band when one was asked for and found (C = 4).
        road: (H, W) bool, True on road pixels.
        valid: (H, W) bool, True where the image has data (False on nodata, alpha = 0, white).
        gsd_m: ground sample distance of the arrays, metres per pixel.
        path: the image file the arrays come from.
        bands: the name of each channel of ``image``: ``("R", "G", "B")`` or
            ``("R", "G", "B", name)`` with the extra band's name (e.g. ``"NIR"``).
        extra_valid: (H, W) bool, where the extra band has data (an auxiliary raster's own
            nodata and extent); None without an extra band.
    """

    image: np.ndarray
    road: np.ndarray
    valid: np.ndarray
    gsd_m: float
    path: Path
    bands: tuple[str, ...] = ("R", "G", "B")
    extra_valid: np.ndarray | None = None


def white_nodata(image: np.ndarray) -> np.ndarray:
    """Find pure-white (255, 255, 255) pixels, the no-data of the Massachusetts Roads tiles.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (H, W) bool, True where all three bands are 255.
    """
    return np.all(image == 255, axis=-1)


def _stretch_bands(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scale (C, H, W) non-uint8 bands to uint8, each band by its own 2–98 % stretch over
    ``valid`` (H, W) pixels (all pixels when none is valid); uint8 bands are returned as is."""
    if bands.dtype == np.uint8:
        return bands
    out = np.empty(bands.shape, np.uint8)
    for k, band in enumerate(bands):
        values = band[valid & np.isfinite(band)] if valid.any() else band[np.isfinite(band)]
        lo, hi = stretch_limits(values) if values.size else (0.0, 1.0)
        out[k] = stretch_to_uint8(band, lo, hi)
    return out


def _image_and_valid(
    path: Path, colorinterp: Sequence[object], data: np.ndarray, mask: np.ndarray, *,
    nir: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Turn a read (C, H, W) plus its dataset mask into (H, W, 3|4) uint8 and (H, W) valid.

    R, G, B (or one panchromatic band, repeated) are chosen by :func:`default_bands`; with
    ``nir`` the image's near-infrared band is appended when it has one (third value True).

    Raises:
        DatasetError: no usable colour bands (two image bands, or only alpha).
    """
    roles = default_bands(colorinterp)
    if not roles.colour:
        raise DatasetError(
            f"{path}: {len(roles.image)} image band(s) and no R,G,B or panchromatic band "
            "roadx can use; expected 1 band, or 3+ bands as R,G,B[,NIR]."
        )
    colour = list(roles.colour) * (3 if len(roles.colour) == 1 else 1)
    with_nir = nir and roles.nir is not None
    picked = colour + ([roles.nir] if with_nir else [])
    valid = mask > 0
    bands = _stretch_bands(data[[b - 1 for b in picked]], valid)
    return np.ascontiguousarray(np.moveaxis(bands, 0, -1)), valid, with_nir


def _read_plain(path: Path) -> tuple[np.ndarray, np.ndarray, list[object], float | None]:
    """Read an image with rasterio (Pillow as fallback).

    Returns:
        (C, H, W) data, (H, W) uint8 dataset mask (0 = no data), the bands' colour
        interpretations and the GSD in metres (None when not georeferenced).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read(), src.dataset_mask(), list(src.colorinterp), _gsd_m(src)
    except RasterioIOError:
        pass
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(
            f"{path}: cannot be read as a raster ({err}); expected an image GDAL or Pillow "
            "can open. Remove it or convert it to PNG/GeoTIFF."
        ) from err
    from rasterio.enums import ColorInterp

    data = np.moveaxis(arr, -1, 0)
    mask = data[3] if data.shape[0] == 4 else np.full(data.shape[1:], 255, np.uint8)
    return data[:3], mask, [ColorInterp.red, ColorInterp.green, ColorInterp.blue], None


def _gsd_m(src: "object") -> float | None:
    """GSD of a georeferenced dataset in metres, computed as inference computes it
    (:func:`roadx.io.raster.dataset_gsd_m`); None when it has no geotransform."""
    from roadx.io.raster import dataset_gsd_m

    return dataset_gsd_m(src)


def _resize(arr: np.ndarray, height: int, width: int, *, smooth: bool) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) uint8 array with Pillow, channel by channel (box filter
    down, bilinear up; per channel, so a 4th band is never taken for alpha)."""
    from PIL import Image

    if arr.ndim == 3:
        return np.stack(
            [_resize(arr[..., k], height, width, smooth=smooth) for k in range(arr.shape[-1])],
            axis=-1,
        )
    down = height < arr.shape[0]
    method = (Image.Resampling.BOX if down else Image.Resampling.BILINEAR) if smooth else (
        Image.Resampling.NEAREST
    )
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((width, height), method))


def resample_labelled(
    image: np.ndarray, road: np.ndarray, valid: np.ndarray, *, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample image, road and valid arrays by ``factor`` (new size = round(old × factor)).

    The image is area-averaged when shrinking and bilinear when enlarging; road and valid are
    resampled as fractions and kept where they cover at least half a pixel.

    Args:
        image: (H, W, C) uint8.
        road: (H, W) bool.
        valid: (H, W) bool.
        factor: source GSD / target GSD (0.5 halves the size).

    Returns:
        (image, road, valid) at the new size, same dtypes.
    """
    height = max(1, round(image.shape[0] * factor))
    width = max(1, round(image.shape[1] * factor))
    out_image = _resize(image, height, width, smooth=True)
    out_road = _resize(road.astype(np.uint8) * 255, height, width, smooth=True) >= 128
    out_valid = _resize(valid.astype(np.uint8) * 255, height, width, smooth=True) >= 128
    return out_image, out_road, out_valid


def read_aux_on_grid(
    aux_path: str | Path, *, crs: "object | None", transform: "object | None", width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Read band 1 of an auxiliary raster (NIR, DSM, SAR, ...) on an image's pixel grid.

    A georeferenced auxiliary raster is warped onto the grid (bilinear; area average when it
    is more than 10 % finer); without a CRS on either side it must have the grid's exact
    size and is taken pixel for pixel. Non-uint8 values get the per-band 2–98 % stretch
    (:mod:`roadx.io.bands`) over the valid pixels on the grid.

    Args:
        aux_path: any raster GDAL reads.
        crs, transform: the grid's CRS and affine transform (None: not georeferenced).
        width, height: grid size in pixels.

    Returns:
        ``(values (H, W) uint8, valid (H, W) bool)``; invalid where the raster has nodata or
        does not cover the grid.

    Raises:
        DatasetError: unreadable file; no common georeferencing and a different size; no
            overlap with the grid.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.vrt import WarpedVRT

    aux_path = Path(aux_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(aux_path)
    except RasterioIOError as err:
        raise DatasetError(f"{aux_path}: auxiliary raster cannot be opened ({err}).") from err
    with src:
        georeferenced = crs is not None and src.crs is not None and _gsd_m(src) is not None
        if not georeferenced:
            if (src.width, src.height) != (width, height):
                raise DatasetError(
                    f"{aux_path}: auxiliary raster is {src.width}×{src.height} px without a "
                    f"common CRS, its image {width}×{height} px; expected the same size (or "
                    "both georeferenced, to warp it onto the image)."
                )
            data, valid = src.read(1), src.dataset_mask() > 0
        else:
            from roadx.io.raster import grid_gsd_m

            down = (_gsd_m(src) or 0.0) * (1 + GSD_TOLERANCE) < grid_gsd_m(
                crs, transform, width, height)
            with WarpedVRT(
                src, crs=crs, transform=transform, width=width, height=height,
                resampling=Resampling.average if down else Resampling.bilinear,
                add_alpha=src.nodata is None and not any(
                    m.name == "alpha" for m in src.colorinterp),
            ) as vrt:
                data, valid = vrt.read(1), vrt.dataset_mask() > 0
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data)
    if not valid.any():
        raise DatasetError(
            f"{aux_path}: the auxiliary raster has no valid pixel on its image's grid (no "
            "overlap, or all nodata); expected a co-registered raster."
        )
    values = _stretch_bands(data[None], valid)[0]
    values[~valid] = 0
    return values, valid


def _with_extra(
    image: np.ndarray, valid: np.ndarray, *, path: Path, extra: str | None, has_nir: bool,
    aux_path: Path | None, crs: "object | None", transform: "object | None",
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray | None]:
    """Append the extra band (an auxiliary raster, else the image's own NIR) to ``image``."""
    rgb = ("R", "G", "B")
    if extra is None:
        return image[..., :3], rgb, None
    if aux_path is not None:
        values, aux_valid = read_aux_on_grid(
            aux_path, crs=crs, transform=transform, width=image.shape[1], height=image.shape[0]
        )
        return np.concatenate([image[..., :3], values[..., None]], -1), (*rgb, extra), aux_valid
    if has_nir and extra.upper() in ("NIR", "N"):
        return image, (*rgb, extra), valid.copy()
    logger.debug("%s: no %s band; the channel is absent (no data)", path, extra)
    return image[..., :3], rgb, None


def read_labelled_pair(
    image_path: str | Path,
    mask_path: str | Path,
    *,
    source_gsd_m: float | None = None,
    target_gsd_m: float | None = None,
    white_is_nodata: bool = True,
    extra: str | None = None,
    aux_path: str | Path | None = None,
) -> LabelledImage:
    """Read an image and its road mask, mark no-data, and resample to ``target_gsd_m``.

    Args:
        image_path: any raster GDAL or Pillow reads (JPEG, PNG, WebP, GeoTIFF). 1 band is
            repeated to 3; non-uint8 bands get the per-band 2–98 % stretch of
            :mod:`roadx.io.bands`; alpha is the valid mask.
        mask_path: raster of the same width and height; road where band 1 > 127.
        source_gsd_m: GSD of a non-georeferenced image in m/px (a georeferenced image uses its
            own). None with a target GSD means "already at the target".
        target_gsd_m: GSD to resample to (None: keep the source GSD). Sources within 10 % of
            the target are not resampled.
        white_is_nodata: treat pure-white (255, 255, 255) pixels of a uint8 image as no-data.
        extra: name of a 4th channel to add (a model card's ``nir``/``aux`` band, e.g.
            ``"NIR"``): read from ``aux_path`` when given, else the image's own NIR band
            (``"NIR"`` only); left out when neither exists (``bands`` then has 3 names).
        aux_path: auxiliary raster for ``extra``, see :func:`read_aux_on_grid`.

    Returns:
        The :class:`LabelledImage`; ``gsd_m`` is the GSD of the returned arrays.

    Raises:
        DatasetError: unreadable file, image and mask of different size, unusable bands,
            an auxiliary raster that does not fit, or no valid pixel.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    image_path, mask_path = Path(image_path), Path(mask_path)
    data, mask, colorinterp, own_gsd_m = _read_plain(image_path)
    image, valid, has_nir = _image_and_valid(
        image_path, colorinterp, data, mask, nir=extra is not None and aux_path is None
    )
    crs = transform = None
    if aux_path is not None and own_gsd_m is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(image_path) as src:
                crs, transform = src.crs, src.transform
    image, bands, extra_valid = _with_extra(
        image, valid, path=image_path, extra=extra, has_nir=has_nir,
        aux_path=None if aux_path is None else Path(aux_path), crs=crs, transform=transform,
    )
    label, _, _, _ = _read_plain(mask_path)
    if label.shape[1:] != image.shape[:2]:
        raise DatasetError(
            f"{mask_path}: mask is {label.shape[2]}×{label.shape[1]} px but its image "
            f"{image_path.name} is {image.shape[1]}×{image.shape[0]} px; expected the same "
            "size. Fix or remove the pair."
        )
    road = label[0] > 127
    if white_is_nodata and data.dtype == np.uint8:  # not for stretched imagery: its white
        valid &= ~white_nodata(image[..., :3])      # is the top 2 % of the data

    gsd_m = own_gsd_m or source_gsd_m or target_gsd_m or 1.0
    if target_gsd_m is not None and abs(gsd_m - target_gsd_m) / target_gsd_m > GSD_TOLERANCE:
        image, road, valid = resample_labelled(image, road, valid, factor=gsd_m / target_gsd_m)
        if extra_valid is not None:
            extra_valid = _resize(extra_valid.astype(np.uint8) * 255, *valid.shape,
                                  smooth=True) >= 128
        gsd_m = target_gsd_m
    if not valid.any():
        raise DatasetError(
            f"{image_path}: no valid pixel (all no-data, alpha 0 or pure white); expected "
            "imagery. Remove the sample."
        )
    return LabelledImage(image, road, valid, float(gsd_m), image_path, bands, extra_valid)


def _metric_crs(src: "object") -> "object":
    """The scene's CRS if projected in metres, else the UTM zone of its centre."""
    from pyproj import CRS
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info
    from rasterio.crs import CRS as RioCRS
    from rasterio.warp import transform_bounds

    if src.crs.is_projected:
        return src.crs
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(west, south, east, north)
    )
    return RioCRS.from_wkt(CRS.from_epsg(infos[0].code).to_wkt())


def read_road_lines(paths: Sequence[str | Path], crs: "object") -> list["object"]:
    """Read road lines from vector files and reproject them to ``crs``.

    Args:
        paths: GeoJSON / GPKG / SHP (anything pyogrio reads). Files without a CRS are taken
            as EPSG:4326 (RFC 7946). Non-line geometries are ignored.
        crs: target CRS (rasterio or pyproj CRS).

    Returns:
        Shapely (Multi)LineStrings in ``crs``.

    Raises:
        DatasetError: a file cannot be read.
    """
    import geopandas as gpd

    lines: list[object] = []
    for path in paths:
        try:
            frame = gpd.read_file(path)
        except Exception as err:  # pyogrio raises several types for unreadable files
            raise DatasetError(
                f"{path}: cannot be read as road vectors ({err}); expected GeoJSON, GPKG or SHP."
            ) from err
        if frame.crs is None:
            frame = frame.set_crs("EPSG:4326")
        frame = frame[frame.geometry.notna()]
        frame = frame[frame.geom_type.isin(["LineString", "MultiLineString"])]
        if len(frame):
            lines.extend(frame.to_crs(crs.to_wkt()).geometry)
    return lines


def read_labelled_scene(
    scene_path: str | Path,
    label_paths: Sequence[str | Path],
    *,
    target_gsd_m: float | None = None,
    road_width_m: float = 4.0,
    extra: str | None = None,
    aux_path: str | Path | None = None,
) -> LabelledImage:
    """Read a georeferenced scene and rasterize its road centrelines as a buffered mask.

    The scene is warped (bilinear) to a metric CRS with square pixels of ``target_gsd_m``;
    lines are reprojected to it and buffered by ``road_width_m / 2`` (flat caps, so a road is
    ``road_width_m`` wide in total).

    Args:
        scene_path: GeoTIFF (any GDAL raster with a CRS and geotransform).
        label_paths: vector files with road lines; they may cover many scenes (clipped here).
        target_gsd_m: output GSD in m/px (None: the scene's own GSD).
        road_width_m: total buffered road width in metres.
        extra, aux_path: a 4th channel, as in :func:`read_labelled_pair` (an auxiliary
            raster is warped onto the same metric grid).

    Returns:
        The :class:`LabelledImage` on the warped grid.

    Raises:
        DatasetError: unreadable scene or labels, no georeferencing, no line inside the scene,
            unusable bands, an auxiliary raster that does not fit, or no valid pixel.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.features import rasterize
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform
    from shapely.geometry import box

    scene_path = Path(scene_path)
    try:
        src = rasterio.open(scene_path)
    except RasterioIOError as err:
        raise DatasetError(f"{scene_path}: cannot be opened as a raster ({err}).") from err
    with src:
        source_gsd_m = _gsd_m(src)
        if source_gsd_m is None:
            raise DatasetError(
                f"{scene_path}: no CRS or geotransform; expected a georeferenced scene to match "
                "vector labels. Use the images/ + masks/ layout for plain images."
            )
        gsd_m = float(target_gsd_m or source_gsd_m)
        dst_crs = _metric_crs(src)
        transform, width, height = calculate_default_transform(
            src.crs, dst_crs, src.width, src.height, *src.bounds, resolution=gsd_m
        )
        down = gsd_m > source_gsd_m * (1 + GSD_TOLERANCE)
        has_mask = any(c.name == "alpha" for c in src.colorinterp) or src.nodata is not None
        with WarpedVRT(
            src,
            crs=dst_crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.average if down else Resampling.bilinear,
            add_alpha=not has_mask,  # so pixels outside the source warp to "no data"
        ) as vrt:
            data, mask, colorinterp = vrt.read(), vrt.dataset_mask(), list(vrt.colorinterp)
        image, valid, has_nir = _image_and_valid(
            scene_path, colorinterp, data, mask, nir=extra is not None and aux_path is None
        )
    image, bands, extra_valid = _with_extra(
        image, valid, path=scene_path, extra=extra, has_nir=has_nir,
        aux_path=None if aux_path is None else Path(aux_path), crs=dst_crs, transform=transform,
    )
    lines = read_road_lines(label_paths, dst_crs)
    left, top = transform.c, transform.f
    bounds = box(left, top + transform.e * height, left + transform.a * width, top)
    buffered = [g.buffer(road_width_m / 2, cap_style="flat") for g in lines if g.intersects(bounds)]
    if not buffered:
        raise DatasetError(
            f"{scene_path}: none of the road lines in {', '.join(str(p) for p in label_paths)} "
            "falls inside the scene; expected labels covering it. Check the CRS of the labels."
        )
    road = rasterize(
        buffered, out_shape=(height, width), transform=transform, fill=0, default_value=1,
        dtype="uint8",
    )
    if not valid.any():
        raise DatasetError(f"{scene_path}: no valid pixel after warping; expected imagery.")
    logger.debug("%s: %d lines rasterized at %.2f m", scene_path, len(buffered), gsd_m)
    return LabelledImage(image, road.astype(bool), valid, gsd_m, scene_path, bands, extra_valid)
