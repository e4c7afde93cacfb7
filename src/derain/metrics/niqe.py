"""NIQE (Mittal, Soundararajan and Bovik 2013), no-reference: lower is better.

The score follows MATLAB's ``niqe`` with its standard pristine model (``niqe_pris_params.npz``, shipped
with the package): the image is reduced to the rounded BT.601 studio-swing Y plane (the same Y as the
``matlab-y`` protocol), cropped to whole 96x96 blocks, and described at two scales, the second made by
MATLAB's ``imresize(img, 0.5)`` (bicubic, antialiased, symmetric edges). For every block and scale, 18
statistics of the MSCN coefficients are fitted (an asymmetric generalised Gaussian of the coefficients and
of their products with four neighbours); the 36-D features of all blocks are summarised by a Gaussian and
the score is the Mahalanobis-like distance to the pristine Gaussian.

Numerics. NIQE is not a smooth function of the pixels: each shape parameter is a nearest-neighbour look-up
on a grid of step 0.001, so a 1-ulp change of an intermediate value can move a feature by 0.001 and the
score by up to ~1e-2. Our reference table (and many published Python numbers) come from the widely used
float32 port of the MATLAB code (BasicSR's ``calculate_niqe``), so this module reproduces that arithmetic
exactly instead of computing in float64: MSCN maps in float32 (filtered in float64, then rounded), the
per-block moments as float32 numpy reductions, and the half-size resize as the float32 two-pass
resampling with the summation order that port gets from PyTorch's CPU BLAS (see :func:`imresize_half`).
With that, scores agree with the reference table to its 6 decimals; a float64 pipeline differs by up to
9e-3 on the same images.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from derain.errors import DerainError
from derain.metrics.fullref import rgb_to_y_matlab

BLOCK = 96
# The shape-parameter grid of the moment-matching look-up (MATLAB: 0.2:0.001:10).
_ALPHA_GRID = 0.2 + 0.001 * np.arange(9801)
# Neighbour directions of the pairwise products (horizontal, vertical, main and anti-diagonal).
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

# MATLAB's antialiased bicubic kernel at scale 0.5: Keys' cubic (a = -0.5) stretched by 2 and scaled by
# 0.5, sampled at the tap offsets -1.75, -1.25, ..., 1.75. All values are dyadic, so they are exact in
# float32 and already sum to exactly 1 (MATLAB's normalisation changes nothing).
_HALF_TAPS = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375,
                       0.43359375, 0.11328125, -0.03515625, -0.01171875], dtype=np.float32)
_HALF_PAD = 3  # output i reads inputs 2i-3 .. 2i+4: pad 3 before and 3 after (+1 for odd sizes)


@lru_cache(maxsize=1)
def _pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu 36, cov 36x36, 7x7 Gaussian window) of the standard pristine model."""
    with resources.files("derain.metrics").joinpath("niqe_pris_params.npz").open("rb") as fh:
        params = np.load(fh)
        mu = params["mu_pris_param"].astype(np.float64).ravel()
        cov = params["cov_pris_param"].astype(np.float64)
        window = params["gaussian_window"].astype(np.float64)
    return mu, cov, window


def _gamma(x: np.ndarray) -> np.ndarray:
    """Elementwise Gamma function (numpy has none and scipy is not a dependency)."""
    return np.vectorize(math.gamma, otypes=[np.float64])(x)


@lru_cache(maxsize=1)
def _rho_grid() -> np.ndarray:
    """rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on the alpha grid (monotone in alpha)."""
    a = _ALPHA_GRID
    return _gamma(2.0 / a) ** 2 / (_gamma(1.0 / a) * _gamma(3.0 / a))


# ---------------------------------------------------------------------------------------------- resize
def _sum_tree(p: list[np.ndarray], order: str) -> np.ndarray:
    """Float32 sum of the eight tap products in one of the two orders the reference's second pass uses."""
    if order == "A":  # ((((((p0+p1)+p2)+p3)+p4)+p6) + (p5+p7))
        return (((((p[0] + p[1]) + p[2]) + p[3]) + p[4]) + p[6]) + (p[5] + p[7])
    # "B": (((((((p0+p1)+p2)+p4) + (p3+p5)) + p6) + p7)
    return ((((((p[0] + p[1]) + p[2]) + p[4]) + (p[3] + p[5])) + p[6]) + p[7])


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)`` (bicubic, antialiased, symmetric edges) of a float32 2-D image.

    Output pixel ``i`` is the 8-tap weighted sum of input pixels ``2i-3 .. 2i+4``, rows first, then
    columns; the result is unclipped float32. The arithmetic is that of the reference implementation
    (BasicSR's ``imresize`` in float32, whose matrix-vector products run in PyTorch's CPU BLAS, MKL on
    x86-64), reproduced bit for bit because NIQE amplifies 1-ulp differences (see the module docstring):
    the row pass accumulates the taps in order; the column pass is an 8-term float32 dot product whose
    summation order follows the 16-byte alignment of its taps in the padded buffer, which for widths
    that are multiples of 4 (all block-cropped widths) only depends on the parity of the output column.
    """
    if img.ndim != 2 or img.dtype != np.float32:
        raise ValueError("imresize_half expects a 2-D float32 array")
    h, w = img.shape
    oh, ow = (h + 1) // 2, (w + 1) // 2
    taps = _HALF_TAPS
    # Row pass: out[i] = ((w0*x[2i-3] + w1*x[2i-2]) + ...) + w7*x[2i+4], accumulated in order.
    rows = np.pad(img, ((_HALF_PAD, _HALF_PAD + 1), (0, 0)), mode="symmetric")
    acc = taps[0] * rows[0:2 * oh:2]
    for k in range(1, 8):
        acc = acc + taps[k] * rows[k:k + 2 * oh:2]
    # Column pass, with the alternating summation order.
    cols = np.pad(acc, ((0, 0), (_HALF_PAD, _HALF_PAD + 1)), mode="symmetric")
    prods = [taps[k] * cols[:, k:k + 2 * ow:2] for k in range(8)]
    out = np.empty((oh, ow), dtype=np.float32)
    if w % 4 == 0:
        out[:, 0::2] = _sum_tree([p[:, 0::2] for p in prods], "B")
        out[:, 1::2] = _sum_tree([p[:, 1::2] for p in prods], "A")
    else:  # never reached from niqe(); one fixed order, within an ulp or so of the reference
        out[:] = _sum_tree(prods, "B")
    return out


# ------------------------------------------------------------------------------------------------ MSCN
def _filter(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlation with ``window`` in float64, edges replicated (MATLAB ``imfilter(..., 'replicate')``)."""
    return cv2.filter2D(img.astype(np.float64), cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE)


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Float32 MSCN coefficients (I - mu) / (sigma + 1) of a float32 image.

    The two filters are evaluated in float64 and rounded to float32; everything else is float32, as in
    the reference implementation.
    """
    mu = _filter(img, window).astype(np.float32)
    mean_sq = _filter(np.square(img), window).astype(np.float32)
    sigma = np.sqrt(np.abs(mean_sq - np.square(mu)))
    return (img - mu) / (sigma + np.float32(1.0))


# -------------------------------------------------------------------------------------------- features
def _aggd_moments(x: np.ndarray) -> tuple[float, float, float]:
    """(left std, right std, corrected moment ratio) of the flat float32 sample ``x``.

    The left/right standard deviations use the strictly negative/positive samples (NaN when there are
    none); rhat = E|x|^2 / E[x^2] is corrected for the asymmetry g = left/right. All of it is float32
    numpy arithmetic on scalars, as in the reference: numpy's float32 pairwise summation and scalar
    powers are part of the result at the 1e-7 level, hence one call per block rather than batched sums.
    """
    sq = x * x
    neg, pos = sq[x < 0], sq[x > 0]
    left = np.sqrt(np.mean(neg)) if neg.size else np.float32(np.nan)
    right = np.sqrt(np.mean(pos)) if pos.size else np.float32(np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # a flat block gives 0/0: NaN features
        rhat = np.mean(np.abs(x)) ** 2 / np.mean(sq)
        g = left / right
        r_norm = (rhat * (g ** 3 + 1) * (g + 1)) / ((g ** 2 + 1) ** 2)
    return float(left), float(right), float(r_norm)


def _aggd_fit(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised AGGD fit from (..., 3) moments (left std, right std, r_norm): (alpha, beta_l, beta_r).

    Moment matching: alpha is the grid value whose rho is nearest to r_norm; the betas rescale the side
    standard deviations. NaN moments give NaN betas (and alpha 0.2, like MATLAB's ``min`` over NaN),
    which the pooled statistics skip.
    """
    left, right, r_norm = (moments[..., i].astype(np.float64) for i in range(3))
    alpha = _ALPHA_GRID[np.argmin((_rho_grid() - r_norm[..., None]) ** 2, axis=-1)]
    scale = np.sqrt(_gamma(1.0 / alpha) / _gamma(3.0 / alpha))
    return alpha, left * scale, right * scale


def _block_features(mscn: np.ndarray, block: int) -> np.ndarray:
    """The 18 features of every ``block`` x ``block`` tile of a float32 MSCN map: (n_blocks, 18)."""
    h, w = mscn.shape
    tiles = [mscn[r:r + block, c:c + block] for r in range(0, h, block) for c in range(0, w, block)]
    moments = np.empty((len(tiles), 1 + len(_SHIFTS), 3), dtype=np.float32)
    for i, tile in enumerate(tiles):
        moments[i, 0] = _aggd_moments(tile.ravel())
        for j, shift in enumerate(_SHIFTS, start=1):
            # Neighbour products wrap around inside the tile, like MATLAB's circshift.
            moments[i, j] = _aggd_moments((tile * np.roll(tile, shift, axis=(0, 1))).ravel())
    alpha, bl, br = _aggd_fit(moments)
    feats = [alpha[:, 0], (bl[:, 0] + br[:, 0]) / 2.0]
    for j in range(1, 1 + len(_SHIFTS)):
        a = alpha[:, j]
        mean = (br[:, j] - bl[:, j]) * (_gamma(2.0 / a) / _gamma(1.0 / a))
        feats += [a, mean, bl[:, j], br[:, j]]
    return np.stack(feats, axis=1)


def _niqe_features(y: np.ndarray) -> np.ndarray:
    """(n_blocks, 36) NIQE features of a float32 Y plane whose sides are multiples of 96."""
    _, _, window = _pristine()
    scale1 = _block_features(_mscn(y, window), BLOCK)
    half = imresize_half(y / np.float32(255.0)) * np.float32(255.0)
    scale2 = _block_features(_mscn(half, window), BLOCK // 2)
    return np.concatenate([scale1, scale2], axis=1)


def _mvg_distance(feats: np.ndarray) -> float:
    """Distance between the pristine Gaussian and the one fitted to ``feats`` (NaN-robust).

    Like MATLAB's ``nanmean``/``nancov``: the mean skips NaN entries per feature, the covariance uses the
    blocks without any NaN. NaN when no block has usable statistics (a flat image).
    """
    mu_p, cov_p, _ = _pristine()
    if np.isnan(feats).all(axis=0).any():
        return math.nan
    mu_d = np.nanmean(feats, axis=0)
    complete = feats[~np.isnan(feats).any(axis=1)]
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov_p)
    diff = mu_p - mu_d
    dist = float(diff @ np.linalg.pinv((cov_p + cov_d) / 2.0) @ diff)
    return math.sqrt(max(dist, 0.0))


def niqe(img: np.ndarray) -> float:
    """NIQE of a uint8 RGB (HxWx3) or grey (HxW) image; lower means more natural.

    RGB is reduced to the ``matlab-y`` Y plane; a grey image is used as it is. The image is cropped to
    whole 96x96 blocks from the top-left corner and needs at least two. Constant blocks have undefined
    statistics (NaN), left out like MATLAB's ``nanmean``/``nancov``; an image made only of constant
    blocks has no NIQE and gives NaN.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        got = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
        raise DerainError(f"NIQE needs a uint8 image (HxW grey or HxWx3 RGB), got {got}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise DerainError(f"NIQE needs an HxW grey or HxWx3 RGB image, got shape {img.shape}")
    h, w = img.shape[:2]
    nh, nw = h // BLOCK, w // BLOCK
    if nh * nw < 2:
        raise DerainError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks; the image is {w}x{h}")
    y = rgb_to_y_matlab(img)[: nh * BLOCK, : nw * BLOCK].astype(np.float32)
    return _mvg_distance(_niqe_features(y))
