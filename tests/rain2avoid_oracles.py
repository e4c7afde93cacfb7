"""Test-only oracles of Rain2Avoid: the official scripts' definitions, slow and step by step, that the library's
vectorised LDGP (:mod:`derain.rain2avoid.ldgp`) and pseudo ground truths (:mod:`derain.rain2avoid.pseudo_gt`)
are checked against.

LDGP (``ldgp_reference``) follows the official script with OpenCV 4's arithmetic. OpenCV 5 (installed here) no
longer ships ``cv2.HOGDescriptor``, so :func:`hog_orientation_sums_reference` re-implements OpenCV 4's
``HOGDescriptor.compute`` in numpy: central-difference gradients with a reflect-101 border, the ``fastAtan2``
polynomial, each gradient split linearly between two of the 36 orientation bins, the Gaussian block window
(sigma 8), the bilinear split between cells, L2-Hys block normalisation, then the official script's cell
averaging (including its swap of the cell x/y indices, which changes the weights of border cells). OpenCV 5 also
changed two other steps the official results went through: its grey conversion (15-bit instead of 14-bit
weights) and its bilinear ``warpAffine`` (floating point instead of 1/32-pixel fixed point), so both are
re-implemented with OpenCV 4's arithmetic too (``opencv4=False`` uses the installed OpenCV's). The adaptive
threshold and the morphology are OpenCV's own.

The pseudo ground truths (``*_loop``) are per-pixel Python loops following the official ``pgt.py`` scripts.
Images here are H x W x 3 uint8 numpy arrays and masks H x W uint8 numpy arrays.
"""
from __future__ import annotations

import math

import numpy as np

from derain.errors import DerainError
from derain.rain2avoid.ldgp import (_ATAN_P, _EPS32, BLOCK_CELLS, CELL, NBINS, LdgpResult, _block_tables,
                                    _check_image, crop_offsets, effective_patch, map_angle, most_frequent,
                                    opening_length, rotation_matrix)


def _fast_atan_deg(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """OpenCV's ``fastAtan2`` in float32, degrees in [0, 360)."""
    ax, ay = np.abs(x), np.abs(y)
    p1, p3, p5, p7 = _ATAN_P
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(ax >= ay, ay / (ax + _EPS32), ax / (ay + _EPS32)).astype(np.float32)
    c2 = c * c
    poly = (((p7 * c2 + p5) * c2 + p3) * c2 + p1) * c
    a = np.where(ax >= ay, poly, np.float32(90) - poly)
    a = np.where(x < 0, np.float32(180) - a, a)
    a = np.where(y < 0, np.float32(360) - a, a)
    return a.astype(np.float32)


def _hog_gradients_reference(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 4 ``HOGDescriptor::computeGradient`` for one grey image, unsigned orientations.

    Returns (weights H x W x 2, bins H x W x 2): each gradient magnitude split linearly between two
    neighbouring orientation bins, as OpenCV stores it.
    """
    g = grey.astype(np.float32)
    p = np.pad(g, 1, mode="reflect")  # numpy's "reflect" is OpenCV's BORDER_REFLECT_101
    dx = p[1:-1, 2:] - p[1:-1, :-2]
    dy = p[2:, 1:-1] - p[:-2, 1:-1]
    mag = np.sqrt(dx * dx + dy * dy).astype(np.float32)
    angle = _fast_atan_deg(dy, dx) * np.float32(math.pi / 180)  # cartToPolar in radians
    a = angle * np.float32(NBINS / math.pi) - np.float32(0.5)
    hidx = np.floor(a).astype(np.int64)
    frac = (a - hidx).astype(np.float32)
    weights = np.stack([mag * (np.float32(1) - frac), mag * frac], axis=-1)
    h0 = np.where(hidx < 0, hidx + NBINS, np.where(hidx >= NBINS, hidx - NBINS, hidx))
    h1 = np.where(h0 + 1 < NBINS, h0 + 1, 0)
    return weights, np.stack([h0, h1], axis=-1)


def _l2hys(hist: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """OpenCV's L2-Hys block normalisation (float32)."""
    sz = np.float32(hist.size)
    scale = np.float32(1) / (np.sqrt(np.sum(hist * hist, dtype=np.float32)) + sz * np.float32(0.1))
    hist = np.minimum(hist * scale, np.float32(threshold))
    scale = np.float32(1) / (np.sqrt(np.sum(hist * hist, dtype=np.float32)) + np.float32(1e-3))
    return (hist * scale).astype(np.float32)


def hog_orientation_sums_reference(grey: np.ndarray) -> np.ndarray:
    """The official ``hog()`` histogram (36 sums) of one grey patch, with OpenCV 4's HOG re-implemented."""
    ycells, xcells = grey.shape[0] // CELL, grey.shape[1] // CELL
    if ycells < BLOCK_CELLS or xcells < BLOCK_CELLS:
        raise DerainError(f"LDGP patches must be at least {CELL * BLOCK_CELLS} pixels")
    weights, bins = _hog_gradients_reference(grey)
    gauss, cell = _block_tables()
    size = CELL * BLOCK_CELLS
    nbx, nby = xcells - BLOCK_CELLS + 1, ycells - BLOCK_CELLS + 1
    # The descriptor is block-major with blocks in column order (x outer), cells [cx][cy][bin] inside.
    descriptor = np.zeros((nbx, nby, BLOCK_CELLS, BLOCK_CELLS, NBINS), dtype=np.float32)
    for bx in range(nbx):
        for by in range(nby):
            y0, x0 = by * CELL, bx * CELL
            w = weights[y0:y0 + size, x0:x0 + size] * gauss[..., None]
            b = bins[y0:y0 + size, x0:x0 + size]
            per_pixel = np.zeros((size, size, NBINS), dtype=np.float32)  # orientation histogram of each pixel
            rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            np.add.at(per_pixel, (rows, cols, b[..., 0]), w[..., 0])
            np.add.at(per_pixel, (rows, cols, b[..., 1]), w[..., 1])
            # hist[cx, cy, k] = sum_ij cell[j, cx] cell[i, cy] per_pixel[i, j, k]
            hist = np.einsum("jc,id,ijk->cdk", cell, cell, per_pixel).astype(np.float32)
            descriptor[bx, by] = _l2hys(hist.ravel()).reshape(hist.shape)
    # The official averaging: reshaped to [by, bx, cx, cy], cell (cx, cy) of block (by, bx) is credited to
    # grid position (by + cx, bx + cy): x and y of the cell are swapped, kept as the code has it.
    r = descriptor.transpose(1, 0, 2, 3, 4)
    ave = np.zeros((ycells, xcells, NBINS))
    count = np.zeros((ycells, xcells, 1))
    for i in range(BLOCK_CELLS):
        for j in range(BLOCK_CELLS):
            ave[i:nby + i, j:nbx + j] += r[:, :, i, j, :]
            count[i:nby + i, j:nbx + j] += 1
    ave /= count
    return ave.sum(axis=(0, 1))


def grey_opencv4_reference(rgb: np.ndarray) -> np.ndarray:
    """OpenCV 4's RGB->grey of uint8 images: 14-bit fixed-point weights 4899/9617/1868, rounded.

    (OpenCV 5 switched to 15-bit weights, which changes about 0.3% of the grey values by one.)
    """
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).astype(np.uint8)


def warp_affine_opencv4_reference(image: np.ndarray, m: np.ndarray, out_w: int, out_h: int,
                                  border: int = 255) -> np.ndarray:
    """OpenCV 4's ``warpAffine`` (bilinear, constant border) of a uint8 image, in numpy.

    OpenCV 4 maps each output pixel with 10-bit fixed-point coordinates, keeps 1/32-pixel positions and
    interpolates with 15-bit integer weights; OpenCV 5 interpolates in floating point instead, which changes
    about 5% of the pixels of a rotated image by 1 to 3 grey levels.
    """
    import cv2

    inv = cv2.invertAffineTransform(m)
    xs, ys = np.arange(out_w), np.arange(out_h)
    adelta = np.rint(inv[0, 0] * xs * 1024).astype(np.int64)
    bdelta = np.rint(inv[1, 0] * xs * 1024).astype(np.int64)
    x0 = np.rint((inv[0, 1] * ys + inv[0, 2]) * 1024).astype(np.int64) + 16  # + half a 1/32 step
    y0 = np.rint((inv[1, 1] * ys + inv[1, 2]) * 1024).astype(np.int64) + 16
    fx_all = (x0[:, None] + adelta[None]) >> 5
    fy_all = (y0[:, None] + bdelta[None]) >> 5
    ix, fx, iy, fy = fx_all >> 5, fx_all & 31, fy_all >> 5, fy_all & 31
    h, w = image.shape[:2]
    src = image.astype(np.int64).reshape(h, w, -1)
    acc = np.zeros((out_h, out_w, src.shape[2]), np.int64)
    for dy, wy in ((0, 32 - fy), (1, fy)):
        for dx, wx in ((0, 32 - fx), (1, fx)):
            yy, xx = iy + dy, ix + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            values = np.where(inside[..., None], src[yy.clip(0, h - 1), xx.clip(0, w - 1)], border)
            acc += values * (wy * wx * 32)[..., None]  # weights sum to 32768
    out = ((acc + (1 << 14)) >> 15).astype(np.uint8)
    return out.reshape(out_h, out_w, *image.shape[2:])


def patch_angles_reference(rgb: np.ndarray, patch_size: int = 80, opencv4: bool = True) -> list[int]:
    """Dominant angle (degrees, multiple of 5) of every patch, in the official order (x outer, y inner)."""
    import cv2

    grey = grey_opencv4_reference(rgb) if opencv4 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    patch_size = effective_patch(h, w, patch_size)
    angles = []
    for x in range(w // patch_size):
        for y in range(h // patch_size):
            patch = grey[patch_size * y:patch_size * (y + 1), patch_size * x:patch_size * (x + 1)]
            angles.append(5 * int(np.argmax(hog_orientation_sums_reference(patch))))
    return angles


def _rotate_reference(image: np.ndarray, theta: int, opencv4: bool) -> np.ndarray:
    import cv2

    m, bw, bh = rotation_matrix(image.shape[0], image.shape[1], theta)
    if opencv4:
        return warp_affine_opencv4_reference(image, m, bw, bh)
    border = (255, 255, 255) if image.ndim == 3 else 255
    return cv2.warpAffine(image, m, (bw, bh), borderValue=border)


def ldgp_reference(rgb: np.ndarray, variant: str = "icassp", patch_size: int = 80, kernel_size: int = 10,
                   opencv4: bool = True) -> LdgpResult:
    """LDGP as the official script computes it: OpenCV's threshold and morphology, OpenCV 4's HOG, grey
    conversion and rotation re-implemented in numpy (``opencv4=False`` uses the installed OpenCV's grey and
    rotation instead)."""
    import cv2

    rgb = _check_image(rgb)
    h, w = rgb.shape[:2]
    raw = most_frequent(patch_angles_reference(rgb, patch_size, opencv4))
    theta = map_angle(raw, variant)
    rotated = _rotate_reference(rgb, theta, opencv4)
    rotated = grey_opencv4_reference(rotated) if opencv4 else cv2.cvtColor(rotated, cv2.COLOR_RGB2GRAY)
    bw = cv2.adaptiveThreshold(rotated, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 5, 0)
    length = opening_length(variant, bw.shape[0], kernel_size)
    element = cv2.getStructuringElement(cv2.MORPH_RECT, (1, length))
    opened = cv2.dilate(cv2.erode(bw, element), element)
    back = _rotate_reference(opened, -theta, opencv4)
    ch, cw = crop_offsets(h, w, theta)
    return LdgpResult(np.ascontiguousarray(back[ch:ch + h, cw:cw + w]), theta, raw)


# ----------------------------------------------------------------------------------------------------------
# Rain2Avoid's pseudo ground truths, per pixel


def icassp_candidates_loop(mask: np.ndarray, ks: int = 7) -> dict[tuple[int, int], list[int]]:
    """{(y, x): candidate offsets (ks * row + column of the window)} for every rain pixel the official
    ``pgt.py`` fills, visiting pixels in its order and stopping a row where it ``break``s."""
    pad = ks // 2
    inverted = np.pad(255 - mask, pad)  # non-rain = 255; the zero border is rain
    out: dict[tuple[int, int], list[int]] = {}
    h, w = mask.shape
    for j in range(pad, h + pad):
        for i in range(pad, w + pad):
            if inverted[j, i] < 255:
                window = inverted[j - pad:j + pad + 1, i - pad:i + pad + 1]
                neighbours = [ks * a + b for a in range(ks) for b in range(ks) if window[a, b] == 255]
                if not neighbours:
                    break
                out[(j - pad, i - pad)] = neighbours
    return out


def icassp_pseudo_gt_loop(image: np.ndarray, mask: np.ndarray, num: int = 50, ks: int = 7,
                          rng: np.random.RandomState | None = None) -> np.ndarray:
    """num x H x W x 3 uint8: the official ``pgt.py`` filling, pixel by pixel."""
    rng = rng or np.random.RandomState()
    pad = ks // 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    outputs = np.repeat(padded[None], num, axis=0)
    for (y, x), neighbours in icassp_candidates_loop(mask, ks).items():
        sample = rng.choice(neighbours, num)
        for n in range(num):
            outputs[n, y + pad, x + pad] = padded[y + pad + sample[n] // ks - pad, x + pad + sample[n] % ks - pad]
    return outputs[:, pad:pad + mask.shape[0], pad:pad + mask.shape[1]]


def _nss_window(image: np.ndarray, binary: np.ndarray, j: int, i: int, size: int, centre: bool
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """The official ``get_mask_and_size``: (patch, 1 - rain mask, size), size grown while all rain."""
    h, w = binary.shape
    while True:
        half = size // 2
        window = binary[max(j - half, 0):min(j + half + 1, h), max(i - half, 0):min(i + half + 1, w)]
        if not np.all(window > 0) or size > 2 * max(h, w) + 1:
            break
        size += 2
    half = size // 2
    rain = np.zeros((size, size))
    patch = np.zeros((size, size, 3))
    for a in range(size):
        for b in range(size):
            gj, gi = a - half + j, b - half + i
            if 0 <= gj < h and 0 <= gi < w:
                patch[a, b] = image[gj, gi]
                if centre:
                    rain[a, b] = binary[gj, gi]
    return patch, 1 - rain, size


def nss_candidates_loop(image: np.ndarray, ldgp_mask: np.ndarray, big: int = 7, small: int = 3, eta: float = 0.5,
                        threshold: int = 10) -> dict[tuple[int, int], tuple[list[tuple[int, int]], np.ndarray]]:
    """{(y, x): (candidate pixels, float32 probabilities)} for every processed rain pixel, as the official
    ``sdr.py`` ``compute_similarity`` forms them (pixels without candidate are left out)."""
    binary = (ldgp_mask > 0).astype(np.uint8)
    h, w = binary.shape
    out = {}
    half_big = max(big, 3) // 2
    for j in range(h):
        for i in range(w):
            if ldgp_mask[j, i] <= threshold:
                continue
            centre, keep, size = _nss_window(image, binary, j, i, small, True)
            centre_vec = (centre * keep[..., None]).ravel()
            neighbours, weights = [], []
            for qj in range(max(j - half_big, 0), min(j + half_big + 1, h)):
                for qi in range(max(i - half_big, 0), min(i + half_big + 1, w)):
                    if binary[qj, qi] == 0:
                        neighbours.append((qj, qi))
                        patch, _, _ = _nss_window(image, binary, qj, qi, size, False)
                        d = np.sum(np.abs(centre_vec - (patch * keep[..., None]).ravel()))
                        weights.append(1 / max(d ** eta, 1e-4))
            if neighbours:
                p = np.array(weights).astype(np.float32)
                out[(j, i)] = (neighbours, p / p.sum())
    return out


def nss_pseudo_gt_loop(image: np.ndarray, ldgp_mask: np.ndarray, num: int = 50,
                       candidates: dict[tuple[int, int], tuple[list[tuple[int, int]], np.ndarray]] | None = None,
                       **kwargs) -> np.ndarray:
    """num x H x W x 3 uint8: the official ``sdr.py`` sampling, reseeding numpy with 0 at every pixel
    (``candidates``: the output of :func:`nss_candidates_loop`, when already computed)."""
    outputs = np.repeat(image[None], num, axis=0)
    candidates = candidates if candidates is not None else nss_candidates_loop(image, ldgp_mask, **kwargs)
    for (j, i), (neighbours, p) in candidates.items():
        np.random.seed(0)
        sample = np.random.choice(len(neighbours), num, p=p)
        for n in range(num):
            outputs[n, j, i] = image[neighbours[sample[n]]]
    return outputs
