"""Full-reference metrics (PSNR, SSIM) under named, documented protocols.

Published deraining numbers are only comparable when computed the same way, so every score comes with a
protocol name:

* ``matlab-y``: the official deraining evaluation (Restormer/DMSR ``evaluate_PSNR_SSIM.m``): MATLAB
  ``rgb2ycbcr`` on uint8, keep the rounded Y plane, PSNR on it, Wang et al. 2004 SSIM (11x11 Gaussian,
  sigma 1.5, ``filter2 'valid'``), no border crop.
* ``rgb``: PSNR over all RGB values, the same Gaussian SSIM per channel, averaged.
* ``skimage-rgb``: what the FSDerain and Rain2Avoid scripts compute with scikit-image: RGB PSNR and the
  default ``structural_similarity`` (7x7 uniform window, sample covariance, 3-pixel crop), channel mean.

Everything is computed on float64 copies; inputs are never modified.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from derain.errors import DerainError

PROTOCOLS: tuple[str, ...] = ("matlab-y", "rgb", "skimage-rgb")

_DESCRIPTIONS = {
    "matlab-y": ("PSNR/SSIM on the Y channel of MATLAB rgb2ycbcr (uint8, rounded), Wang 2004 SSIM "
                 "(11x11 Gaussian sigma 1.5, 'valid'), no border crop: the official deraining protocol"),
    "rgb": "PSNR over all RGB values; Wang 2004 Gaussian SSIM per RGB channel, averaged; no border crop",
    "skimage-rgb": ("RGB PSNR; scikit-image default structural_similarity (7x7 uniform window, sample "
                    "covariance, channel mean), as in the FSDerain and Rain2Avoid scripts"),
}

# ITU-R BT.601 studio-swing luma as MATLAB's rgb2ycbcr applies it to uint8 values, in thousandths so that
# Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 can be evaluated exactly in integers.
_Y_WEIGHTS_MILLI = np.array([65481, 128553, 24966], dtype=np.int64)
_Y_DENOM_MILLI = 255_000


def describe(protocol: str) -> str:
    """One line saying how ``protocol`` computes PSNR and SSIM (printed under every table)."""
    _check_protocol(protocol)
    return _DESCRIPTIONS[protocol]


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise DerainError(f"unknown metric protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    """A uint8 HxW or HxWx3 array, or a one-line DerainError saying what is wrong."""
    if not isinstance(img, np.ndarray):
        raise DerainError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise DerainError(f"{name} must be uint8 (0..255), got dtype {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise DerainError(f"{name} must be HxW grey or HxWx3 RGB, got shape {img.shape}")
    if min(img.shape[:2]) < 11:
        raise DerainError(f"{name} is {img.shape[1]}x{img.shape[0]}; SSIM needs at least 11x11 pixels")
    return img


def rgb_to_y_matlab(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 Y of MATLAB ``rgb2ycbcr`` (values 16..235, rounded half away from zero).

    Evaluated exactly in integer arithmetic. MATLAB computes in double, which agrees everywhere except
    possibly at the 194 of 2^24 colours whose exact Y ends in .5 (there its rounding depends on its
    evaluation order; we round those up, as the formula says). A 2-D (grey) input is returned
    unchanged, as the deraining script does for grey images.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise DerainError("rgb_to_y_matlab needs a uint8 numpy image (the formula is for 0..255 values)")
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] != 3:
        raise DerainError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    num = img.astype(np.int64) @ _Y_WEIGHTS_MILLI
    # Y > 0, so floor(y + 1/2) is round-half-away-from-zero; integer division keeps it exact.
    return (16 + (num + _Y_DENOM_MILLI // 2) // _Y_DENOM_MILLI).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all values; ``inf`` for identical inputs."""
    if a.shape != b.shape:
        raise DerainError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


@lru_cache(maxsize=None)
def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g /= g.sum()
    g.setflags(write=False)
    return g


def _filter_valid(img: np.ndarray, kernel_1d: np.ndarray) -> np.ndarray:
    """Separable correlation with 'valid' output (MATLAB ``filter2(..., 'valid')``) in float64.

    cv2 pads the border, then the padded part is dropped, so only fully covered pixels remain. The kernels
    used here are symmetric, so correlation and convolution coincide.
    """
    r = len(kernel_1d) // 2
    out = cv2.sepFilter2D(img, cv2.CV_64F, kernel_1d, kernel_1d, borderType=cv2.BORDER_REFLECT)
    return out[r:img.shape[0] - r, r:img.shape[1] - r]


def _ssim_map(x: np.ndarray, y: np.ndarray, kernel_1d: np.ndarray, data_range: float,
              cov_norm: float = 1.0) -> np.ndarray:
    """The SSIM map over the 'valid' region for 2-D float64 images (``cov_norm`` rescales (co)variances)."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x = _filter_valid(x, kernel_1d)
    mu_y = _filter_valid(y, kernel_1d)
    var_x = cov_norm * (_filter_valid(x * x, kernel_1d) - mu_x * mu_x)
    var_y = cov_norm * (_filter_valid(y * y, kernel_1d) - mu_y * mu_y)
    cov_xy = cov_norm * (_filter_valid(x * y, kernel_1d) - mu_x * mu_y)
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def _as_2d_float(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise DerainError(f"{what} needs equal shapes, got {a.shape} and {b.shape}")
    if a.ndim != 2:
        raise DerainError(f"{what} works on 2-D images, got shape {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def ssim_gaussian(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Wang et al. 2004 SSIM (``ssim_index.m``): 11x11 Gaussian sigma 1.5, K=(0.01, 0.03), 'valid', map mean."""
    x, y = _as_2d_float(a, b, "SSIM")
    if min(x.shape) < 11:
        raise DerainError(f"SSIM needs at least 11x11 pixels, got {x.shape[1]}x{x.shape[0]}")
    return float(np.mean(_ssim_map(x, y, _gaussian_1d(11, 1.5), data_range)))


def ssim_skimage(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """scikit-image's default ``structural_similarity`` on one 2-D plane.

    7x7 uniform window, sample (co)variances (``N/(N-1)``), and the mean over the map with a 3-pixel border
    dropped: exactly the pixels whose window lies inside the image, which is why the filter's padding mode
    never matters.
    """
    x, y = _as_2d_float(a, b, "SSIM")
    if min(x.shape) < 7:
        raise DerainError(f"SSIM needs at least 7x7 pixels, got {x.shape[1]}x{x.shape[0]}")
    win = 7
    n = win * win
    box = np.full(win, 1.0 / win)
    return float(np.mean(_ssim_map(x, y, box, data_range, cov_norm=n / (n - 1.0))))


def _per_channel(a: np.ndarray, b: np.ndarray, fn) -> float:
    """Mean of ``fn`` over the channels of HxWxC images (or ``fn`` itself for 2-D images)."""
    if a.ndim == 2:
        return fn(a, b)
    return float(np.mean([fn(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def psnr_ssim(pred: np.ndarray, target: np.ndarray, protocol: str = "matlab-y") -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``pred`` against ``target`` (uint8 HxWx3 RGB or HxW grey) under ``protocol``."""
    _check_protocol(protocol)
    _check_image(pred, "prediction")
    _check_image(target, "target")
    if pred.shape != target.shape:
        raise DerainError(f"prediction and target differ in shape: {pred.shape} vs {target.shape}")
    if protocol == "matlab-y":
        y_pred, y_target = rgb_to_y_matlab(pred), rgb_to_y_matlab(target)
        return psnr(y_pred, y_target), ssim_gaussian(y_pred, y_target)
    if protocol == "rgb":
        return psnr(pred, target), _per_channel(pred, target, ssim_gaussian)
    return psnr(pred, target), _per_channel(pred, target, ssim_skimage)
