"""LDGP, the locally dominant gradient prior of Rain2Avoid: a binary-ish mask of rain-streak candidates.

Per 80x80 patch, the dominant unsigned gradient orientation is read off a HOG descriptor (8x8 cells, 4x4-cell
blocks, stride one cell, 36 bins over 0-180 degrees); the global angle is the most frequent patch angle. The
image is rotated by that angle (expanded canvas, white border), thresholded against its 5x5 mean, opened with a
vertical line and rotated back, so only bright structures along the streak direction survive.

:func:`ldgp` computes it in torch on all patches at once: block histograms as two strided 1-D convolutions
(the Gaussian and the cell weights are separable), pooling for the threshold and the opening, an integer torch
version of OpenCV 4's fixed-point rotation. The definition it is checked against, the official script step by
step with OpenCV 4's arithmetic in numpy (``ldgp_reference``), lives with the tests in
``tests/rain2avoid_oracles.py``; the tests measure how often the two masks agree.

Images are H x W x 3 uint8 RGB; masks are H x W uint8 where 255 marks rain (the rotation back leaves
intermediate values on streak borders, as the official masks have).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from derain.errors import DerainError
from derain.rain2avoid import VARIANTS

NBINS = 36
CELL = 8
BLOCK_CELLS = 4

# OpenCV's fastAtan2 polynomial (degrees), mathfuncs_core: the angles HOG bins are computed with it.
_ATAN_P = [np.float32(c * np.float32(180 / math.pi)) for c in
           (0.9997878412794807, -0.3258083974640975, 0.1555786518463281, -0.04432655554792128)]
_EPS32 = np.float32(2.220446049250313e-16)


@dataclass
class LdgpResult:
    """The rain mask (H x W uint8, 255 = rain) and the angles it was computed with."""

    mask: np.ndarray
    angle: int  # the rotation applied (degrees, in (-90, 90])
    raw_angle: int  # the most frequent patch angle, 0..175


# ----------------------------------------------------------------------------------------------------------
# shared pieces


def map_angle(raw: int, variant: str) -> int:
    """The rotation for a dominant gradient angle: 90 (and 85 for the later version) means no rotation."""
    if variant not in VARIANTS:
        raise DerainError(f"unknown Rain2Avoid variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if raw == 90 or (variant == "nlss" and raw == 85):
        return 0
    return raw - 180 if raw > 90 else raw


def most_frequent(angles: list[int]) -> int:
    """The mode of the patch angles, ties broken exactly as the official ``max(set(l), key=l.count)``."""
    return max(set(angles), key=angles.count)


def opening_length(variant: str, rotated_rows: int, kernel_size: int = 10) -> int:
    """Length of the vertical line element: rows // 30 (ICASSP) or the fixed ``kernel_size`` (later version)."""
    return max(1, rotated_rows // 30) if variant == "icassp" else kernel_size


def rotation_matrix(height: int, width: int, theta: float) -> tuple[np.ndarray, int, int]:
    """(2x3 forward matrix, out width, out height) of the official expanding rotation about the centre."""
    cx, cy = width / 2, height / 2
    a = math.radians(theta)
    alpha, beta = math.cos(a), math.sin(a)
    m = np.array([[alpha, beta, (1 - alpha) * cx - beta * cy],
                  [-beta, alpha, beta * cx + (1 - alpha) * cy]], dtype=np.float64)
    bound_w = int(height * abs(beta) + width * abs(alpha))
    bound_h = int(height * abs(alpha) + width * abs(beta))
    m[0, 2] += bound_w / 2 - cx
    m[1, 2] += bound_h / 2 - cy
    return m, bound_w, bound_h


def crop_offsets(height: int, width: int, theta: int) -> tuple[int, int]:
    """(row, column) offset of the original image inside the image rotated by theta and back."""
    t = math.radians(abs(theta))
    return math.floor(width * math.sin(t) * math.cos(t)), math.floor(height * math.cos(t) * math.sin(t))


def effective_patch(height: int, width: int, patch_size: int) -> int:
    """The patch side used: ``patch_size``, or for images smaller than one patch (where the official script
    fails) one square patch as large as the image allows, trimmed to whole HOG cells."""
    if height >= patch_size and width >= patch_size:
        return patch_size
    side = min(height, width) // CELL * CELL
    if side < CELL * BLOCK_CELLS:
        raise DerainError(f"image of {width}x{height} is too small for LDGP (needs at least "
                          f"{CELL * BLOCK_CELLS}x{CELL * BLOCK_CELLS} pixels)")
    return side


def _check_image(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DerainError(f"LDGP needs an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    return rgb


# ----------------------------------------------------------------------------------------------------------
# shared with the numpy reference of the tests (tests/rain2avoid_oracles.py)


def _block_tables() -> tuple[np.ndarray, np.ndarray]:
    """(Gaussian window 32x32, cell weights 32x4): OpenCV's HOGCache tables for this geometry."""
    size = CELL * BLOCK_CELLS
    sigma = np.float32(size + size) / np.float32(8)  # getWinSigma(): (block w + block h) / 8
    scale = np.float32(1) / (sigma * sigma * np.float32(2))
    d = (np.arange(size, dtype=np.float32) - np.float32(size * 0.5)) ** 2
    gauss = np.exp(-(d[:, None] + d[None, :]) * scale).astype(np.float32)
    pos = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(CELL) - np.float32(0.5)
    cell = np.maximum(np.float32(0), np.float32(1) - np.abs(pos[:, None] - np.arange(BLOCK_CELLS, dtype=np.float32)))
    return gauss, cell.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# vectorised torch implementation


def _fast_atan_deg_torch(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    ax, ay = x.abs(), y.abs()
    p1, p3, p5, p7 = (float(p) for p in _ATAN_P)
    eps = float(_EPS32)
    c = torch.where(ax >= ay, ay / (ax + eps), ax / (ay + eps))
    c2 = c * c
    poly = (((p7 * c2 + p5) * c2 + p3) * c2 + p1) * c
    a = torch.where(ax >= ay, poly, 90.0 - poly)
    a = torch.where(x < 0, 180.0 - a, a)
    return torch.where(y < 0, 360.0 - a, a)


def hog_orientation_sums(patches: torch.Tensor) -> torch.Tensor:
    """The official per-patch 36-bin sums for a batch of grey patches (P x S x S float), all at once.

    Block histograms come from separable sums: the Gaussian window and the bilinear cell weights factor into
    a row table and a column table, so each block is two small matrix products over unfolded views.
    """
    p, s = patches.shape[0], patches.shape[-1]
    cells = s // CELL
    size = CELL * BLOCK_CELLS
    nb = cells - BLOCK_CELLS + 1
    pad = F.pad(patches.float()[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]
    dx = (pad[:, 1:-1, 2:] - pad[:, 1:-1, :-2])[:, : cells * CELL, : cells * CELL]
    dy = (pad[:, 2:, 1:-1] - pad[:, :-2, 1:-1])[:, : cells * CELL, : cells * CELL]
    mag = torch.sqrt(dx * dx + dy * dy)
    angle = _fast_atan_deg_torch(dy, dx) * float(np.float32(math.pi / 180))
    a = angle * float(np.float32(NBINS / math.pi)) - 0.5
    hidx = torch.floor(a)
    frac = a - hidx
    h0 = torch.remainder(hidx.long(), NBINS)
    h1 = torch.remainder(h0 + 1, NBINS)
    per_pixel = torch.zeros(p, NBINS, cells * CELL, cells * CELL)
    per_pixel.scatter_add_(1, h0[:, None], (mag * (1 - frac))[:, None])
    per_pixel.scatter_add_(1, h1[:, None], (mag * frac)[:, None])
    _, cell = _block_tables()
    # exp(-(di + dj) s) = exp(-di s) exp(-dj s): one weight table per axis, (32 positions x 4 cells)
    d = (torch.arange(size, dtype=torch.float32) - size * 0.5) ** 2
    axis = torch.exp(-d * float(1 / (2 * 8.0 ** 2)))[:, None] * torch.from_numpy(cell)
    n = p * NBINS
    # columns of each block (stride one cell), then rows: two strided 1-D convolutions
    cols = F.conv2d(per_pixel.reshape(n, 1, cells * CELL, cells * CELL), axis.t().reshape(BLOCK_CELLS, 1, 1, size),
                    stride=(1, CELL))  # n, cx, Y, bx
    rows = F.conv2d(cols.reshape(n * BLOCK_CELLS, 1, cells * CELL, nb), axis.t().reshape(BLOCK_CELLS, 1, size, 1),
                    stride=(CELL, 1))  # n * cx, cy, by, bx
    hist = rows.reshape(p, NBINS, BLOCK_CELLS, BLOCK_CELLS, nb, nb).permute(0, 4, 5, 2, 3, 1)  # P, by, bx, cx, cy, K
    flat = hist.reshape(p, nb, nb, -1)
    norm = 1.0 / (flat.square().sum(-1, keepdim=True).sqrt() + flat.shape[-1] * 0.1)
    flat = torch.minimum(flat * norm, torch.tensor(0.2))
    flat = flat / (flat.square().sum(-1, keepdim=True).sqrt() + 1e-3)
    r = flat.reshape(p, nb, nb, BLOCK_CELLS, BLOCK_CELLS, NBINS).double()  # [by, bx, cx, cy]
    ave = torch.zeros(p, cells, cells, NBINS, dtype=torch.float64)
    count = torch.zeros(cells, cells, 1, dtype=torch.float64)
    for i in range(BLOCK_CELLS):  # same swapped crediting as the official averaging
        for j in range(BLOCK_CELLS):
            ave[:, i:nb + i, j:nb + j] += r[:, :, :, i, j]
            count[i:nb + i, j:nb + j] += 1
    return (ave / count).sum(dim=(1, 2))


def grey_opencv(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV 4's fixed-point RGB->grey of uint8 values (3 x H x W, any integer-valued dtype) as int64."""
    r, g, b = rgb.long().unbind(0)
    return (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14


def patch_angles(rgb: torch.Tensor, patch_size: int = 80) -> list[int]:
    """Dominant angle of every patch (official order), for a 3 x H x W uint8 tensor."""
    grey = grey_opencv(rgb).float()
    h, w = grey.shape
    patch_size = effective_patch(h, w, patch_size)
    ny, nx = h // patch_size, w // patch_size
    patches = grey[: ny * patch_size, : nx * patch_size].reshape(ny, patch_size, nx, patch_size)
    patches = patches.permute(2, 0, 1, 3).reshape(nx * ny, patch_size, patch_size)  # x outer, y inner
    sums = hog_orientation_sums(patches)
    return [5 * int(i) for i in sums.argmax(dim=1)]


def warp_affine(image: torch.Tensor, m: np.ndarray, out_w: int, out_h: int, border: int = 255) -> torch.Tensor:
    """OpenCV 4's bilinear ``warpAffine`` with a constant border (C x H x W integer-valued in, int64 out):
    1/32-pixel source positions and 15-bit integer weights, as OpenCV 4 computes 8-bit images."""
    import cv2

    inv = torch.from_numpy(cv2.invertAffineTransform(m))
    xs, ys = torch.arange(out_w, dtype=torch.float64), torch.arange(out_h, dtype=torch.float64)
    adelta, bdelta = torch.round(inv[0, 0] * xs * 1024).long(), torch.round(inv[1, 0] * xs * 1024).long()
    x0 = torch.round((inv[0, 1] * ys + inv[0, 2]) * 1024).long() + 16
    y0 = torch.round((inv[1, 1] * ys + inv[1, 2]) * 1024).long() + 16
    sx, sy = (x0[:, None] + adelta[None]) >> 5, (y0[:, None] + bdelta[None]) >> 5
    ix, fx, iy, fy = sx >> 5, sx & 31, sy >> 5, sy & 31
    c, h, w = image.shape
    src = image.long().reshape(c, -1)
    acc = torch.zeros(c, out_h, out_w, dtype=torch.int64)
    for dy, wy in ((0, 32 - fy), (1, fy)):
        for dx, wx in ((0, 32 - fx), (1, fx)):
            yy, xx = iy + dy, ix + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = src[:, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(-1)].reshape(c, out_h, out_w)
            acc += torch.where(inside, vals, border) * (wy * wx * 32)
    return (acc + (1 << 14)) >> 15


def adaptive_mean_threshold(grey: torch.Tensor, block: int = 5) -> torch.Tensor:
    """``cv2.adaptiveThreshold(MEAN_C, BINARY, block, C=0)``: 255 where a pixel exceeds its rounded local mean."""
    r = block // 2
    padded = F.pad(grey.double()[None, None], (r, r, r, r), mode="replicate")
    total = F.avg_pool2d(padded, block, stride=1)[0, 0] * (block * block)
    mean = torch.floor((torch.round(total) + (block * block) // 2) / (block * block))  # uint8 mean, rounded
    return torch.where(grey.double() > mean, 255.0, 0.0)


def vertical_opening(binary: torch.Tensor, length: int) -> torch.Tensor:
    """OpenCV's erode-then-dilate with a 1 x ``length`` column element (anchor ``length // 2`` for both)."""
    top, bottom = length // 2, length - 1 - length // 2
    x = binary[None, None]
    # OpenCV's default borders: erosion sees +inf outside, dilation -inf, so the border never interferes.
    eroded = -F.max_pool2d(-F.pad(x, (0, 0, top, bottom), value=255.0), (length, 1), stride=1)
    dilated = F.max_pool2d(F.pad(eroded, (0, 0, top, bottom), value=0.0), (length, 1), stride=1)
    return dilated[0, 0]


def ldgp(image: np.ndarray | torch.Tensor, variant: str = "icassp", patch_size: int = 80,
         kernel_size: int = 10) -> LdgpResult:
    """LDGP mask of one image (H x W x 3 uint8 numpy RGB, or 3 x H x W uint8 tensor), vectorised in torch."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.array(_check_image(image))).permute(2, 0, 1)
    h, w = image.shape[-2:]
    raw = most_frequent(patch_angles(image, patch_size))
    theta = map_angle(raw, variant)
    m, bw, bh = rotation_matrix(h, w, theta)
    rotated = warp_affine(image, m, bw, bh) if theta else image
    bw_map = adaptive_mean_threshold(grey_opencv(rotated).double())
    opened = vertical_opening(bw_map, opening_length(variant, bw_map.shape[0], kernel_size))
    if theta:
        m_back, bw2, bh2 = rotation_matrix(opened.shape[0], opened.shape[1], -theta)
        opened = warp_affine(opened[None].long(), m_back, bw2, bh2)[0]
    ch, cw = crop_offsets(h, w, theta)
    mask = opened[ch:ch + h, cw:cw + w].to(torch.uint8).numpy()
    return LdgpResult(np.ascontiguousarray(mask), theta, raw)
