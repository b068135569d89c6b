"""Training augmentation of D-LinkNet / D3FNet, in numpy (d3fnet.md §5.2).

The released ``data.py`` of D-LinkNet and D3FNet applies, in this order:

1. an HSV shift (p = 0.5): hue += randint[-30, 30] on OpenCV's 8-bit hue (0..179) **with
   uint8 wrap-around** (a quirk kept here), saturation += U(-5, 5) and value += U(-15, 15),
   saturating;
2. a shift / scale / aspect warp without rotation (p = 0.5): scale 1 + U(-0.1, 0.1), aspect
   1 + U(-0.1, 0.1) with sx = scale·√aspect, sy = scale/√aspect, shift
   round(U(-0.1, 0.1)·size) in x and y; bilinear for image and mask, border 0;
3. horizontal flip, 4. vertical flip, 5. rot90 counter-clockwise (each p = 0.5).

Beyond the reference, an optional **sensor augmentation** (``p_sensor``, off by default) runs
after the HSV shift: a gamma, a contrast change about the crop mean, a small gain per band and,
sometimes, conversion to grey. It makes a model trained on one survey (bright grey roads of the
Massachusetts orthophotos) see the same ground as other sensors deliver it: the dark, low-contrast
8-bit SpaceNet pan-sharpened chips, or a panchromatic band repeated three times.

A stronger, optional **domain augmentation** (``p_domain``, off by default) draws a new "sensor
and landscape" per crop: a palette (any hue rotation, an arid brown-for-green palette, a snow
palette), per-band gains, partial desaturation, haze, blur or sharpening, sensor noise, JPEG
artefacts and pan-sharpening-like colour bleeding, and a **scale jitter** that resamples the crop
as if it were taken at another GSD (``scale_jitter`` = 2: between 0.5× and 2× the training GSD;
done by :class:`roadx.train.data.PatchDataset`, which cuts a larger or smaller window and resizes
it, so no border is invented). It aims at imagery unlike the training survey: rural and arid
scenes, other satellites, compressed deliveries (domain randomization, Tobin et al. IROS 2017;
photometric and blur/noise/JPEG sets of this kind are standard in remote-sensing segmentation
augmentation, e.g. Buslaev et al. "Albumentations", Information 2020).

The reference warps the corners with a perspective transform, which for these parameters is an
affine map; it is done here with :func:`scipy.ndimage.affine_transform`. One deliberate change:
pixels that come from outside the crop (the zero border) are marked invalid, so they are left
out of the loss instead of being counted as background.

References:
    Zhou, Zhang, Wu. "D-LinkNet", CVPR-W 2018, ``data.py``; D3FNet (arXiv 2508.15537), ``data.py``.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges of the §5.2 augmentation (defaults are the reference values).

    Attributes:
        p_hsv: probability of the HSV shift.
        hue_shift: max |hue shift| in OpenCV 8-bit hue units (2° each).
        sat_shift: max |saturation shift| (0..255 scale).
        val_shift: max |value shift| (0..255 scale).
        p_shift_scale: probability of the shift/scale/aspect warp.
        shift_limit: max shift as a fraction of the crop size.
        scale_limit: max relative scale change.
        aspect_limit: max relative aspect change.
        p_hflip: probability of a horizontal flip.
        p_vflip: probability of a vertical flip.
        p_rot90: probability of one counter-clockwise 90° rotation.
        p_sensor: probability of the sensor augmentation (not in §5.2; 0 = reference chain).
        gamma_limit: the gamma is log-uniform in [1 / gamma_limit, gamma_limit].
        contrast_limit: contrast factor about the crop mean in 1 ± contrast_limit.
        band_gain_limit: gain per band in 1 ± band_gain_limit.
        p_grey: probability, given the sensor augmentation, of converting to grey.
        p_domain: probability of the domain augmentation (:func:`domain_shift`), 0 = off.
        scale_jitter: largest GSD factor of the scale jitter (the crop is resampled by a
            log-uniform factor in [1 / scale_jitter, scale_jitter]); 1 = off. Applied by
            :class:`roadx.train.data.PatchDataset` with probability ``p_domain``.
    """

    p_hsv: float = 0.5
    hue_shift: int = 30
    sat_shift: float = 5.0
    val_shift: float = 15.0
    p_shift_scale: float = 0.5
    shift_limit: float = 0.1
    scale_limit: float = 0.1
    aspect_limit: float = 0.1
    p_hflip: float = 0.5
    p_vflip: float = 0.5
    p_rot90: float = 0.5
    p_sensor: float = 0.0
    gamma_limit: float = 2.5
    contrast_limit: float = 0.4
    band_gain_limit: float = 0.1
    p_grey: float = 0.2
    p_domain: float = 0.0
    scale_jitter: float = 1.0


def rgb_to_hsv8(image: np.ndarray) -> np.ndarray:
    """Convert RGB to OpenCV-style 8-bit HSV (H in 0..179, S and V in 0..255).

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (H, W, 3) float64 HSV, H in [0, 180), S and V in [0, 255].
    """
    rgb = image.astype(np.float64)
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    s = np.where(v > 0, 255.0 * delta / np.maximum(v, 1e-9), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-9)
    h = np.where(
        v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)
    )
    h = np.where(delta > 0, (h * 60.0) % 360.0, 0.0) / 2.0
    return np.stack([h, s, v], axis=-1)


def hsv8_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Convert OpenCV-style HSV back to uint8 RGB; H may exceed 179 (read as H·2° mod 360).

    Args:
        hsv: (H, W, 3) float HSV, H in OpenCV units (0..255 accepted), S and V in [0, 255].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    h6 = ((hsv[..., 0] * 2.0) % 360.0) / 60.0
    s, v = hsv[..., 1] / 255.0, hsv[..., 2]
    c = v * s
    x = c * (1.0 - np.abs(h6 % 2.0 - 1.0))
    m = v - c
    sector = np.floor(h6).astype(np.int64) % 6
    zeros = np.zeros_like(c)
    table = [
        (c, x, zeros), (x, c, zeros), (zeros, c, x), (zeros, x, c), (x, zeros, c), (c, zeros, x)
    ]
    out = np.zeros(hsv.shape, np.float64)
    for k, (r, g, b) in enumerate(table):
        sel = sector == k
        out[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return np.clip(np.round(out + m[..., None]), 0, 255).astype(np.uint8)


def hsv_shift(image: np.ndarray, hue: int, sat: float, val: float) -> np.ndarray:
    """Shift hue (uint8 wrap-around, the reference quirk), saturation and value (saturating).

    Args:
        image: (H, W, 3) uint8 RGB.
        hue: hue shift in OpenCV units (2° each).
        sat: saturation shift on the 0..255 scale.
        val: value shift on the 0..255 scale.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    hsv = np.round(rgb_to_hsv8(image))
    hsv[..., 0] = (hsv[..., 0] + hue) % 256  # uint8 wrap-around as cv2 on a uint8 array
    hsv[..., 1] = np.clip(hsv[..., 1] + round(sat), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + round(val), 0, 255)
    return hsv8_to_rgb(hsv)


def shift_scale(
    image: np.ndarray,
    road: np.ndarray,
    valid: np.ndarray,
    *,
    sx: float,
    sy: float,
    dx_px: float,
    dy_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale about the crop centre by (sx, sy) and shift by (dx_px, dy_px), bilinear, border 0.

    Args:
        image: (H, W, C) uint8 (every channel is warped alike).
        road: (H, W) bool.
        valid: (H, W) bool.
        sx: horizontal scale factor.
        sy: vertical scale factor.
        dx_px: shift to the right in pixels.
        dy_px: shift down in pixels.

    Returns:
        Warped (image uint8, road bool re-binarised at 0.5, valid bool; outside pixels invalid).
    """
    from scipy.ndimage import affine_transform

    height, width = road.shape
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    # output (r, c) samples input (cy + (r - cy - dy) / sy, cx + (c - cx - dx) / sx)
    matrix = np.array([1.0 / sy, 1.0 / sx])
    offset = np.array([cy - (cy + dy_px) / sy, cx - (cx + dx_px) / sx])

    def warp(channel: np.ndarray) -> np.ndarray:
        return affine_transform(channel, matrix, offset=offset, order=1, mode="constant", cval=0.0)

    out_image = np.stack([warp(image[..., k].astype(np.float32)) for k in range(image.shape[-1])],
                         axis=-1)
    out_road = warp(road.astype(np.float32)) >= 0.5
    out_valid = warp(valid.astype(np.float32)) >= 0.999
    return np.clip(np.round(out_image), 0, 255).astype(np.uint8), out_road, out_valid


def sensor_shift(
    image: np.ndarray, gamma: float, contrast: float, gains: np.ndarray, grey: bool
) -> np.ndarray:
    """Change the radiometry of an 8-bit image as another sensor or processing chain would.

    ``out = clip(gain_b · (mean + contrast · (255 · (x / 255)^gamma − mean)))``, where the
    mean is taken over the whole gamma-corrected crop; with ``grey`` the bands are first
    replaced by their mean (a panchromatic look).

    Args:
        image: (H, W, 3) uint8.
        gamma: exponent on x / 255 (> 1 darkens the mid-tones, < 1 brightens them).
        contrast: factor on the deviation from the crop mean (> 0).
        gains: (3,) gain per band.
        grey: replace the bands by their mean first.

    Returns:
        (H, W, 3) uint8.
    """
    x = image.astype(np.float32)
    if grey:
        x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    x = 255.0 * (x / 255.0) ** gamma
    mean = float(x.mean())
    x = (mean + contrast * (x - mean)) * np.asarray(gains, dtype=np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DomainDraw:
    """One draw of the domain augmentation (all photometric, the geometry is untouched).

    Attributes:
        palette: ``"none"``, ``"hue"`` (rotate every hue by ``hue_deg``), ``"arid"`` (greens
            and blues turned to browns and ochres, lower saturation) or ``"snow"`` (bright,
            nearly colourless ground, roads stay darker).
        hue_deg: hue rotation in degrees (palette ``"hue"``).
        gains: (3,) per-band gain.
        desaturate: 0..1 share of the grey image mixed in.
        haze: 0..1 share of a bright, bluish-grey veil mixed in.
        blur_sigma_px: Gaussian blur sigma in pixels (0 = none); negative = unsharp masking
            with that (absolute) sigma, amount 0.8.
        noise_sigma: standard deviation of additive Gaussian noise (0..255 scale).
        jpeg_quality: JPEG re-encoding quality 1..95, 0 = none.
        bleed_sigma_px: sigma in pixels of the chroma blur (colour bleeding), 0 = none.
    """

    palette: str = "none"
    hue_deg: float = 0.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    desaturate: float = 0.0
    haze: float = 0.0
    blur_sigma_px: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int = 0
    bleed_sigma_px: float = 0.0


def draw_domain(rng: np.random.Generator) -> DomainDraw:
    """Draw a :class:`DomainDraw` (every effect on its own chance, so most crops get 2–4).

    Probabilities: palette hue 25 % / arid 20 % / snow 5 %; per-band gains ±25 % 50 %;
    desaturation 20 %; haze 15 %; blur 25 % or sharpening 10 %; noise 25 %; JPEG 20 %;
    colour bleeding 15 %.
    """
    u = rng.random()
    palette = "hue" if u < 0.25 else "arid" if u < 0.45 else "snow" if u < 0.5 else "none"
    hue_deg = float(rng.uniform(-180, 180))
    gains = tuple(float(g) for g in (1 + rng.uniform(-0.25, 0.25, 3)))
    use_gains = rng.random() < 0.5
    desaturate = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.2 else 0.0
    haze = float(rng.uniform(0.1, 0.45)) if rng.random() < 0.15 else 0.0
    b = rng.random()
    blur = float(rng.uniform(0.5, 1.6)) if b < 0.25 else -float(rng.uniform(0.6, 1.5)) if b < 0.35 else 0.0
    noise = float(rng.uniform(2.0, 10.0)) if rng.random() < 0.25 else 0.0
    quality = int(rng.integers(20, 80)) if rng.random() < 0.2 else 0
    bleed = float(rng.uniform(1.0, 3.0)) if rng.random() < 0.15 else 0.0
    return DomainDraw(
        palette=palette, hue_deg=hue_deg, gains=gains if use_gains else (1.0, 1.0, 1.0),
        desaturate=desaturate, haze=haze, blur_sigma_px=blur, noise_sigma=noise,
        jpeg_quality=quality, bleed_sigma_px=bleed,
    )


def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


def domain_shift(image: np.ndarray, draw: DomainDraw, rng: np.random.Generator) -> np.ndarray:
    """Render one crop as another sensor and landscape would deliver it (photometric only).

    Order: palette, gains, desaturation, haze, colour bleeding, blur/sharpening, noise, JPEG.

    Args:
        image: (H, W, 3) uint8 RGB.
        draw: the effects (:func:`draw_domain`).
        rng: generator for the noise.

    Returns:
        (H, W, 3) uint8 RGB of the same shape.
    """
    from scipy.ndimage import gaussian_filter

    x = image.astype(np.float32)
    if draw.palette == "hue":
        hsv = rgb_to_hsv8(image)
        hsv[..., 0] = (hsv[..., 0] + draw.hue_deg / 2.0) % 180.0
        x = hsv8_to_rgb(hsv).astype(np.float32)
    elif draw.palette == "arid":
        # vegetation (green > red) and water (blue) turn to browns; a warm, dusty cast
        hsv = rgb_to_hsv8(image)
        hue = hsv[..., 0]
        green_blue = (hue > 30) & (hue < 135)  # 60°..270°: greens, cyans, blues
        hsv[..., 0] = np.where(green_blue, 10.0 + (hue - 30.0) * 0.12, hue)
        hsv[..., 1] *= 0.6
        hsv[..., 2] = np.clip(hsv[..., 2] * 1.15 + 15.0, 0, 255)
        x = hsv8_to_rgb(hsv).astype(np.float32)
    elif draw.palette == "snow":
        grey = _luma(x)[..., None]
        bright = 255.0 - 0.5 * (255.0 - grey)  # lift everything towards white ...
        x = np.where(grey < 90.0, grey * 0.9, bright) * np.array([0.97, 0.99, 1.0], np.float32)
    x = x * np.asarray(draw.gains, np.float32)
    if draw.desaturate:
        x = x + draw.desaturate * (_luma(x)[..., None] - x)
    if draw.haze:
        x = (1.0 - draw.haze) * x + draw.haze * np.array([200.0, 205.0, 215.0], np.float32)
    if draw.bleed_sigma_px:
        luma = _luma(x)[..., None]
        chroma = x - luma
        for k in range(3):
            chroma[..., k] = gaussian_filter(chroma[..., k], draw.bleed_sigma_px)
        x = luma + chroma
    if draw.blur_sigma_px > 0:
        x = np.stack([gaussian_filter(x[..., k], draw.blur_sigma_px) for k in range(3)], -1)
    elif draw.blur_sigma_px < 0:
        sigma = -draw.blur_sigma_px
        soft = np.stack([gaussian_filter(x[..., k], sigma) for k in range(3)], -1)
        x = x + 0.8 * (x - soft)
    if draw.noise_sigma:
        x = x + rng.normal(0.0, draw.noise_sigma, x.shape).astype(np.float32)
    out = np.clip(np.round(x), 0, 255).astype(np.uint8)
    if draw.jpeg_quality:
        out = jpeg_roundtrip(out, draw.jpeg_quality)
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1..95, 4:2:0 chroma) and decode (Pillow).

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (H, W, 3) uint8 RGB with JPEG block and ringing artefacts.
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def augment(
    image: np.ndarray,
    road: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the §5.2 augmentation chain to one crop (same geometry for all three arrays).

    Colour changes apply to R, G, B only; channels beyond the third (a NIR or auxiliary band,
    or a validity channel) are moved with the geometry and never recoloured.

    Args:
        image: (H, W, C) uint8, R, G, B first, H == W (rot90 needs a square crop).
        road: (H, W) bool.
        valid: (H, W) bool.
        rng: random generator (its state decides every draw, so results are reproducible).
        params: probabilities and ranges.

    Returns:
        (image (H, W, C) uint8, road (H, W) bool, valid (H, W) bool), contiguous.
    """
    image, rest = image[..., :3], image[..., 3:]
    if rng.random() < params.p_hsv:
        hue = int(rng.integers(-params.hue_shift, params.hue_shift + 1))
        sat = rng.uniform(-params.sat_shift, params.sat_shift)
        val = rng.uniform(-params.val_shift, params.val_shift)
        image = hsv_shift(image, hue, sat, val)
    # no draw at all when off, so the §5.2 chain keeps its random stream (and old runs resume)
    if params.p_sensor > 0 and rng.random() < params.p_sensor:
        log_gamma = np.log(params.gamma_limit)
        image = sensor_shift(
            image,
            gamma=float(np.exp(rng.uniform(-log_gamma, log_gamma))),
            contrast=1.0 + rng.uniform(-params.contrast_limit, params.contrast_limit),
            gains=1.0 + rng.uniform(-params.band_gain_limit, params.band_gain_limit, size=3),
            grey=bool(rng.random() < params.p_grey),
        )
    if params.p_domain > 0 and rng.random() < params.p_domain:
        image = domain_shift(image, draw_domain(rng), rng)
    if rest.shape[-1]:
        image = np.concatenate([image, rest], axis=-1)
    if rng.random() < params.p_shift_scale:
        scale = 1.0 + rng.uniform(-params.scale_limit, params.scale_limit)
        aspect = 1.0 + rng.uniform(-params.aspect_limit, params.aspect_limit)
        size = road.shape[0]
        dx = round(rng.uniform(-params.shift_limit, params.shift_limit) * size)
        dy = round(rng.uniform(-params.shift_limit, params.shift_limit) * size)
        image, road, valid = shift_scale(
            image, road, valid, sx=scale * np.sqrt(aspect), sy=scale / np.sqrt(aspect),
            dx_px=dx, dy_px=dy,
        )
    if rng.random() < params.p_hflip:
        image, road, valid = image[:, ::-1], road[:, ::-1], valid[:, ::-1]
    if rng.random() < params.p_vflip:
        image, road, valid = image[::-1], road[::-1], valid[::-1]
    if rng.random() < params.p_rot90:
        image, road, valid = np.rot90(image), np.rot90(road), np.rot90(valid)
    return (
        np.ascontiguousarray(image),
        np.ascontiguousarray(road),
        np.ascontiguousarray(valid),
    )
