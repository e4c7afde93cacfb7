"""Statistics of the rain in one rainy photo, without its clean version: is synthetic rain like real rain?

Every image is first resized so that its shorter side is ``ANALYSIS_SIDE`` (320) pixels (area averaging when
shrinking), so that a photo of any size gives comparable numbers: all lengths below are pixels at that
analysis scale, and all intensities are fractions of full scale (0-1).

The rain layer is estimated by a background / rain decomposition: rain streaks are thin, bright, grey and
long. A median filter of ``BACKGROUND_SIZE`` (9) px drops any bright line narrower than about 4 px, so it
gives the background, and the positive residual ``image - median`` is mostly rain. It is taken per colour
channel and the smallest of the three kept (rain brightens R, G and B alike, coloured texture does not),
clipped at 0, then opened by 1-px lines of ``LINE_LENGTH`` (9) px within ``LINE_ANGLES`` (45) degrees of
vertical, keeping the best direction per pixel: dots, blobs and short texture vanish, streaks stay.
Streaks wider than about 4 px or shorter than 9 px (analysis scale) are therefore under-counted.

From it: density and contrast (threshold ``THRESHOLD``), the orientation from the structure tensor (Scharr
derivatives), width and length from the autocorrelation, and, from the image itself, the dark channel of
He et al. (veil) and the mean luma (brightness). See :class:`RainStats` for units.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
from scipy.stats import wasserstein_distance

ANALYSIS_SIDE = 320  # shorter side of the analysis scale (pixels)
BACKGROUND_SIZE = 9  # median window of the background: wider than twice the widest streak we measure
THRESHOLD = 0.03  # a pixel is rain where the rain estimate exceeds this (fraction of full scale)
DARK_CHANNEL_SIZE = 15  # local minimum window of the dark channel (He et al. use 15 px)
TENSOR_SIGMA = 1.5  # Gaussian window of the local structure tensor (pixels)
LINE_LENGTH = 9  # a streak is at least this long (pixels, odd)
LINE_ANGLES = 45.0  # and within this many degrees of vertical
LINE_STEP = 5.0  # angular step of the line openings (degrees)
MAX_LAG = 96  # the autocorrelation is searched for its half maximum up to this lag (pixels)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601 weights of R, G, B


@dataclass(frozen=True)
class RainStats:
    """Rain statistics of one image (see the module docstring for the analysis scale)."""

    density: float  # fraction of pixels (0-1) whose rain estimate exceeds THRESHOLD
    contrast: float  # mean rain estimate over those pixels (fraction of full scale); nan if there are none
    angle: float  # dominant streak orientation, degrees from vertical in [-90, 90), positive: lower end right '\'
    angle_spread: float  # circular standard deviation of the local streak orientations (degrees)
    width: float  # streak width (pixels): 2 x half width at half maximum of the autocorrelation across streaks
    length: float  # streak length (pixels): 2 x half width at half maximum of the autocorrelation along streaks
    veil: float  # mean of the dark channel (fraction of full scale): haze / fog raises it
    brightness: float  # mean Rec. 601 luma of the image (fraction of full scale): low at night


STAT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RainStats))


def to_analysis_scale(image: np.ndarray) -> np.ndarray:
    """``image`` (H x W x 3, uint8 or float in [0, 1]) as float32 in [0, 1], shorter side ANALYSIS_SIDE."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.integer) and image.dtype != np.uint8:
        raise ValueError(f"expected uint8 or float pixels, got {image.dtype}")
    x: np.ndarray = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    h, w = x.shape[:2]
    scale = ANALYSIS_SIDE / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        # Area averaging when shrinking (no aliasing of thin streaks); bicubic when enlarging.
        x = cv2.resize(x, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return np.clip(x, 0.0, 1.0)


def rain_layer(x: np.ndarray) -> np.ndarray:
    """Rain estimate (H x W float32 >= 0) of an analysis-scale image: min over RGB of ``channel - median``."""
    residuals = []
    for c in range(3):
        # cv2's median filter takes any window size only on uint8; the 1/255 rounding is far below THRESHOLD.
        background = cv2.medianBlur(np.rint(x[..., c] * 255).astype(np.uint8), BACKGROUND_SIZE)
        residuals.append(x[..., c] - background.astype(np.float32) / 255.0)
    residual = np.minimum.reduce(residuals)
    # Under one 8-bit level is rounding (of the file and of the median), not rain: it would otherwise give
    # a rain-free image a streak angle and size.
    residual[residual < 1.0 / 255.0] = 0.0
    # Streaks are long: keep only what survives an opening by a line of LINE_LENGTH px in some direction
    # within LINE_ANGLES of vertical, which removes blobs, dots and short texture of the background.
    return np.maximum.reduce([cv2.morphologyEx(residual, cv2.MORPH_OPEN, k) for k in _line_kernels()])


@functools.lru_cache(maxsize=1)
def _line_kernels() -> tuple[np.ndarray, ...]:
    """Rasterised 1-px lines of LINE_LENGTH px at every LINE_STEP degrees within LINE_ANGLES of vertical."""
    half = LINE_LENGTH // 2
    kernels = []
    for angle in np.arange(-LINE_ANGLES, LINE_ANGLES + 1e-6, LINE_STEP):
        k = np.zeros((LINE_LENGTH, LINE_LENGTH), np.uint8)
        dx, dy = half * math.sin(math.radians(angle)), half * math.cos(math.radians(angle))
        cv2.line(k, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1)
        kernels.append(k)
    return tuple(kernels)


def _orientation(rain: np.ndarray) -> tuple[float, float]:
    """(dominant streak angle, circular spread), degrees, from the structure tensor of ``rain``."""
    # Scharr derivatives: the most rotation-invariant 3x3 ones, so thin slanted lines do not bias the angle.
    gx = cv2.Scharr(rain, cv2.CV_32F, 1, 0)
    gy = cv2.Scharr(rain, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = (cv2.GaussianBlur(g, (0, 0), TENSOR_SIGMA) for g in (gx * gx, gy * gy, gx * gy))
    # Orientations are axial (theta and theta + 180 are the same): average the doubled angles as vectors.
    cos2, sin2 = jxx - jyy, 2 * jxy
    energy = jxx + jyy
    if float(energy.sum()) <= 0:
        return math.nan, math.nan
    gradient = 0.5 * math.atan2(float(sin2.sum()), float(cos2.sum()))  # from +x, rows pointing down
    # Gradients point across the streaks; with y down, a '\' streak at +a has its gradient at -a from +x.
    angle = (math.degrees(-gradient) + 90.0) % 180.0 - 90.0
    # Each pixel's local orientation, as a unit vector of doubled angle, weighted by its gradient energy.
    norm = np.sqrt(cos2 * cos2 + sin2 * sin2)
    valid = norm > 1e-12 * max(float(norm.max()), 1e-30)
    wc = float((energy[valid] * cos2[valid] / norm[valid]).sum())
    ws = float((energy[valid] * sin2[valid] / norm[valid]).sum())
    resultant = min(max(math.hypot(wc, ws) / float(energy.sum()), 1e-6), 1.0)
    spread = 0.5 * math.degrees(math.sqrt(-2.0 * math.log(resultant)))  # halved: back from doubled angles
    return angle, spread


def _half_width(profile: np.ndarray, step: float) -> float:
    """Lag (pixels) where a decreasing profile (value 1 at lag 0) first falls to 0.5, interpolated linearly."""
    below = np.nonzero(profile <= 0.5)[0]
    if len(below) == 0:
        return MAX_LAG
    i = max(int(below[0]), 1)  # the profile is exactly 1 at lag 0, so i >= 1 anyway
    a, b = float(profile[i - 1]), float(profile[i])
    return step * (i - 1 + (a - 0.5) / (a - b))


def _size(rain: np.ndarray, angle: float) -> tuple[float, float]:
    """(width, length) in pixels: 2 x half width at half maximum of the rain's autocorrelation across / along.

    For a streak with a box profile of width w the autocorrelation across it is a triangle of half base w,
    which is at half maximum at w / 2: twice that lag is the width itself (and likewise the length).
    Capped at 2 x MAX_LAG; nan without any rain.
    """
    r = rain - rain.mean()
    h, w = r.shape
    # Zero padding to twice the size: a linear (not circular) autocorrelation, no wrap-around of streaks.
    spectrum = np.fft.rfft2(r, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(spectrum * np.conj(spectrum), s=(2 * h, 2 * w))
    if ac[0, 0] <= 0 or not math.isfinite(angle):
        return math.nan, math.nan
    ac = np.fft.fftshift(ac / ac[0, 0]).astype(np.float32)
    cy, cx = h, w  # lag 0 after fftshift
    step = 0.25
    lags = np.arange(0, MAX_LAG + step, step, dtype=np.float32)
    theta = math.radians(angle)
    result = []
    for dx, dy in ((math.cos(theta), -math.sin(theta)), (math.sin(theta), math.cos(theta))):  # across, along
        map_x = (cx + lags * dx).reshape(1, -1).astype(np.float32)
        map_y = (cy + lags * dy).reshape(1, -1).astype(np.float32)
        profile = cv2.remap(ac, map_x, map_y, cv2.INTER_LINEAR)[0]
        result.append(2.0 * _half_width(profile, step))
    return result[0], result[1]


def rain_stats(image: np.ndarray) -> RainStats:
    """The :class:`RainStats` of one rainy image (H x W x 3, uint8 or float in [0, 1]), at the analysis scale."""
    x = to_analysis_scale(image)
    rain = rain_layer(x)
    mask = rain > THRESHOLD
    density = float(mask.mean())
    contrast = float(rain[mask].mean()) if mask.any() else math.nan
    angle, spread = _orientation(rain)
    width, length = _size(rain, angle)
    # Dark channel prior (He et al. 2009): haze-free outdoor patches have a dark pixel in some channel;
    # a veil adds airlight everywhere and lifts it. The 15 px minimum also ignores thin streaks.
    dark = cv2.erode(x.min(axis=2), cv2.getStructuringElement(cv2.MORPH_RECT, (DARK_CHANNEL_SIZE,) * 2))
    return RainStats(density=density, contrast=contrast, angle=angle, angle_spread=spread, width=width,
                     length=length, veil=float(dark.mean()), brightness=float((x @ _LUMA).mean()))


def stats_table(stats: list[RainStats]) -> dict[str, np.ndarray]:
    """Column view of many images' statistics: name -> float64 array (one value per image)."""
    return {name: np.array([getattr(s, name) for s in stats], dtype=np.float64) for name in STAT_NAMES}


def distribution_distance(real: list[RainStats], synthetic: list[RainStats]) -> dict[str, float]:
    """Per statistic, Wasserstein-1 distance between the two samples over the real sample's std; and ``mean``.

    0: the same distribution; about 1: off by one standard deviation of real photos. Undefined values (nan,
    e.g. the contrast of an image without rain pixels) are left out; a statistic that one sample lacks
    entirely is nan and left out of the mean. Angles are compared as plain numbers: rain lies well within
    45 degrees of vertical, far from where -90 and +90 meet.
    """
    a, b = stats_table(real), stats_table(synthetic)
    out: dict[str, float] = {}
    for name in STAT_NAMES:
        x, y = a[name][np.isfinite(a[name])], b[name][np.isfinite(b[name])]
        if len(x) == 0 or len(y) == 0:
            out[name] = math.nan
            continue
        distance = float(wasserstein_distance(x, y))
        std = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
        out[name] = distance / std if std > 0 else (0.0 if distance == 0 else math.inf)
    finite = [v for v in out.values() if not math.isnan(v)]
    out["mean"] = float(np.mean(finite)) if finite else math.nan
    return out
