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
"""

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadx.errors import DatasetError

logger = logging.getLogger(__name__)

#: Relative GSD difference below which a source is used as is (no resampling).
GSD_TOLERANCE = 0.10


@dataclass(frozen=True)
class LabelledImage:
    """One training image with its road label, at one ground sample distance.

    Attributes:
        image: (H, W, 3) uint8 RGB (red, green, blue; reorder to a model card's bands later).
        road: (H, W) bool, True on road pixels.
        valid: (H, W) bool, True where the image has data (False on nodata, alpha = 0, white).
        gsd_m: ground sample distance of the arrays, metres per pixel.
        path: the image file the arrays come from.
    """

    image: np.ndarray
    road: np.ndarray
    valid: np.ndarray
    gsd_m: float
    path: Path


def white_nodata(image: np.ndarray) -> np.ndarray:
    """Find pure-white (255, 255, 255) pixels, the no-data of the Massachusetts Roads tiles.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (H, W) bool, True where all three bands are 255.
    """
    return np.all(image == 255, axis=-1)


def _stretch_to_uint8(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scale (C, H, W) integer/float bands to uint8 with one scene-global 2–98 % stretch."""
    values = bands[:, valid] if valid.any() else bands.reshape(bands.shape[0], -1)
    lo, hi = np.percentile(values.astype(np.float64), [2.0, 98.0])
    scale = 255.0 / max(float(hi - lo), 1e-6)
    return np.clip((bands.astype(np.float64) - lo) * scale, 0, 255).round().astype(np.uint8)


def _rgb_and_valid(
    alpha_bands: Sequence[bool], data: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a read (C, H, W) plus its dataset mask into (H, W, 3) RGB uint8 and (H, W) valid."""
    colour = [i for i in range(data.shape[0]) if not (i < len(alpha_bands) and alpha_bands[i])]
    if len(colour) >= 3:
        bands = data[colour[:3]]
    elif len(colour) >= 1:  # grey / panchromatic: repeat the first band
        bands = np.repeat(data[colour[:1]], 3, axis=0)
    else:
        bands = np.repeat(data[:1], 3, axis=0)
    valid = mask > 0
    if bands.dtype != np.uint8:
        bands = _stretch_to_uint8(bands, valid)
    return np.ascontiguousarray(np.moveaxis(bands, 0, -1)), valid


def _alpha_bands(src: "object") -> list[bool]:
    from rasterio.enums import ColorInterp

    return [ci == ColorInterp.alpha for ci in src.colorinterp]


def _read_plain(path: Path) -> tuple[np.ndarray, np.ndarray, list[bool], float | None]:
    """Read an image with rasterio (Pillow as fallback).

    Returns:
        (C, H, W) data, (H, W) uint8 dataset mask (0 = no data), per-band "is alpha" flags and
        the GSD in metres (None when not georeferenced).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read(), src.dataset_mask(), _alpha_bands(src), _pixel_size_m(src)
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
    data = np.moveaxis(arr, -1, 0)
    mask = data[3] if data.shape[0] == 4 else np.full(data.shape[1:], 255, np.uint8)
    return data[:3], mask, [False, False, False], None


def _pixel_size_m(src: "object") -> float | None:
    """GSD of a georeferenced dataset in metres (None when it has no geotransform)."""
    crs, transform = getattr(src, "crs", None), getattr(src, "transform", None)
    if crs is None or transform is None or transform.is_identity:
        return None
    xres, yres = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lat = np.deg2rad(transform.f + transform.e * src.height / 2)
        metres_per_deg = 111_320.0
        xres, yres = xres * metres_per_deg * np.cos(lat), yres * metres_per_deg
    else:
        xres, yres = xres * crs.linear_units_factor[1], yres * crs.linear_units_factor[1]
    return float(np.sqrt(xres * yres))


def _resize(arr: np.ndarray, height: int, width: int, *, smooth: bool) -> np.ndarray:
    """Resize a (H, W) or (H, W, 3) uint8 array with Pillow (box filter down, bilinear up)."""
    from PIL import Image

    down = height < arr.shape[0]
    method = (Image.Resampling.BOX if down else Image.Resampling.BILINEAR) if smooth else (
        Image.Resampling.NEAREST
    )
    return np.asarray(Image.fromarray(arr).resize((width, height), method))


def resample_labelled(
    image: np.ndarray, road: np.ndarray, valid: np.ndarray, *, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample image, road and valid arrays by ``factor`` (new size = round(old × factor)).

    The image is area-averaged when shrinking and bilinear when enlarging; road and valid are
    resampled as fractions and kept where they cover at least half a pixel.

    Args:
        image: (H, W, 3) uint8.
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


def read_labelled_pair(
    image_path: str | Path,
    mask_path: str | Path,
    *,
    source_gsd_m: float | None = None,
    target_gsd_m: float | None = None,
    white_is_nodata: bool = True,
) -> LabelledImage:
    """Read an image and its road mask, mark no-data, and resample to ``target_gsd_m``.

    Args:
        image_path: any raster GDAL or Pillow reads (JPEG, PNG, WebP, GeoTIFF). 1 band is
            repeated to 3; 16-bit data get a global 2–98 % stretch; alpha is the valid mask.
        mask_path: raster of the same width and height; road where band 1 > 127.
        source_gsd_m: GSD of a non-georeferenced image in m/px (a georeferenced image uses its
            own). None with a target GSD means "already at the target".
        target_gsd_m: GSD to resample to (None: keep the source GSD). Sources within 10 % of
            the target are not resampled.
        white_is_nodata: treat pure-white (255, 255, 255) pixels as no-data.

    Returns:
        The :class:`LabelledImage`; ``gsd_m`` is the GSD of the returned arrays.

    Raises:
        DatasetError: unreadable file, image and mask of different size, or no valid pixel.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    data, mask, alpha, own_gsd_m = _read_plain(image_path)
    image, valid = _rgb_and_valid(alpha, data, mask)
    label, _, _, _ = _read_plain(mask_path)
    if label.shape[1:] != image.shape[:2]:
        raise DatasetError(
            f"{mask_path}: mask is {label.shape[2]}×{label.shape[1]} px but its image "
            f"{image_path.name} is {image.shape[1]}×{image.shape[0]} px; expected the same "
            "size. Fix or remove the pair."
        )
    road = label[0] > 127
    if white_is_nodata:
        valid &= ~white_nodata(image)
    gsd_m = own_gsd_m or source_gsd_m or target_gsd_m or 1.0
    if target_gsd_m is not None and abs(gsd_m - target_gsd_m) / target_gsd_m > GSD_TOLERANCE:
        image, road, valid = resample_labelled(image, road, valid, factor=gsd_m / target_gsd_m)
        gsd_m = target_gsd_m
    if not valid.any():
        raise DatasetError(
            f"{image_path}: no valid pixel (all no-data, alpha 0 or pure white); expected "
            "imagery. Remove the sample."
        )
    return LabelledImage(image, road, valid, float(gsd_m), image_path)


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

    Returns:
        The :class:`LabelledImage` on the warped grid.

    Raises:
        DatasetError: unreadable scene or labels, no georeferencing, no line inside the scene,
            or no valid pixel.
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
        source_gsd_m = _pixel_size_m(src)
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
        alpha = _alpha_bands(src)
        has_mask = any(alpha) or src.nodata is not None
        with WarpedVRT(
            src,
            crs=dst_crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.average if down else Resampling.bilinear,
            add_alpha=not has_mask,  # so pixels outside the source warp to "no data"
        ) as vrt:
            data, mask = vrt.read(), vrt.dataset_mask()
        image, valid = _rgb_and_valid(alpha + [True] * (data.shape[0] - len(alpha)), data, mask)
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
    return LabelledImage(image, road.astype(bool), valid, gsd_m, scene_path)
