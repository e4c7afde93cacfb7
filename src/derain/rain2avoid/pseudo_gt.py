"""Pseudo ground truths of Rain2Avoid: each rain pixel replaced by a sampled non-rain pixel nearby.

* ICASSP random sampling (:func:`icassp_pseudo_gt`): for every rain pixel, 50 draws, uniform with replacement,
  among the non-rain pixels of its 7x7 window (the zero-padded border counts as rain).
* Non-local stochastic sampling of the later version (:func:`nss_pseudo_gt`): the candidates are the non-rain
  pixels of the 7x7 window; each is weighted by 1 / d^0.5, d the L1 distance between its k x k RGB patch and the
  rain pixel's, both seen through the rain pixel's non-rain mask (k starts at 3 and grows by 2 while the rain
  pixel's window holds only rain). The official script reseeds numpy with 0 before every pixel, so every rain
  pixel uses the same 50 uniforms; ``shared_uniforms=True`` reproduces that, False draws fresh ones.

Both are vectorised with tensor ops. The per-pixel Python loops that define them (following the official code,
including its quirks) live with the tests in ``tests/rain2avoid_oracles.py``, which check that the vectorised
versions have the same candidate sets and weights.

Conventions: images are 3 x H x W uint8 tensors (RGB), masks H x W uint8 (LDGP output, > 0 = rain).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from derain.errors import DerainError


@dataclass
class PseudoGT:
    """``num`` pseudo ground truths of one image, stored as the pixels they replace.

    ``target`` holds the flat indices (y * W + x) of the replaced pixels, ``source[k]`` the flat index each of
    them copies in pseudo ground truth k; every other pixel is the rainy image itself.
    """

    rainy: torch.Tensor  # 3 x H x W uint8
    target: torch.Tensor  # N, int64
    source: torch.Tensor  # num x N, int64

    def __len__(self) -> int:
        return self.source.shape[0]

    def image(self, k: int) -> torch.Tensor:
        """Pseudo ground truth ``k`` (3 x H x W uint8)."""
        flat = self.rainy.reshape(3, -1)
        out = flat.clone()
        out[:, self.target] = flat[:, self.source[k]]
        return out.reshape(self.rainy.shape)

    def stack(self) -> torch.Tensor:
        """All pseudo ground truths (num x 3 x H x W uint8)."""
        return torch.stack([self.image(k) for k in range(len(self))])

    def fused(self) -> torch.Tensor:
        """Mean of the pseudo ground truths (3 x H x W float32 in 0..255), the later version's fused image."""
        flat = self.rainy.reshape(3, -1).float()
        out = flat.clone()
        if self.target.numel():
            out[:, self.target] = flat[:, self.source].mean(dim=1)
        return out.reshape(self.rainy.shape)


def _as_image(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(rgb, np.ndarray):
        rgb = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
    if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.dtype != torch.uint8:
        raise DerainError(f"pseudo ground truths need a 3 x H x W uint8 image, got {tuple(rgb.shape)} {rgb.dtype}")
    return rgb


def _as_mask(mask: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    mask = torch.as_tensor(np.array(mask)) if isinstance(mask, np.ndarray) else mask
    if tuple(mask.shape) != tuple(shape):
        raise DerainError(f"mask of size {tuple(mask.shape)} does not fit the image ({shape[0]}x{shape[1]})")
    return mask


def _offsets(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy, dx) of the size x size window in raster order, the order the official loops visit them."""
    r = size // 2
    dy, dx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)


# ----------------------------------------------------------------------------------------------------------
# ICASSP random sampling


def icassp_candidates(mask: torch.Tensor | np.ndarray, ks: int = 7) -> torch.Tensor:
    """(ks*ks) x H x W bool: offset o of pixel p is a candidate when p + o is a non-rain pixel of the image."""
    mask = torch.as_tensor(np.array(mask)) if isinstance(mask, np.ndarray) else mask
    nonrain = (mask == 0).float()[None, None]
    cols = F.unfold(nonrain, ks, padding=ks // 2)  # zero padding: the border is never a candidate
    return (cols[0] > 0.5).reshape(ks * ks, *mask.shape)


def icassp_targets(mask: torch.Tensor, valid: torch.Tensor, row_break: bool = True) -> torch.Tensor:
    """H x W bool: the rain pixels that get replaced.

    With ``row_break`` (the official behaviour) a rain pixel without any candidate stops the rest of its row:
    the official loop ``break``s there, leaving those pixels rainy in every pseudo ground truth.
    """
    rain = mask != 0
    empty = rain & ~valid.any(0)
    targets = rain & ~empty
    if row_break:
        blocked = torch.cummax(empty.to(torch.uint8), dim=1).values.bool()
        targets &= ~blocked
    return targets


def icassp_pseudo_gt(rgb: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, num: int = 50, ks: int = 7,
                     row_break: bool = True, generator: torch.Generator | None = None) -> PseudoGT:
    """ICASSP pseudo ground truths: each rain pixel, in each of ``num`` images, copies a uniformly drawn
    non-rain pixel of its ks x ks window."""
    rgb = _as_image(rgb)
    h, w = rgb.shape[-2:]
    mask = _as_mask(mask, (h, w))
    valid = icassp_candidates(mask, ks)
    targets = icassp_targets(mask, valid, row_break).reshape(-1).nonzero()[:, 0]
    cand = valid.reshape(ks * ks, -1)[:, targets].T  # N x ks*ks
    counts = cand.sum(1, keepdim=True)
    # The r-th candidate (0-based) of a pixel is where the running count of candidates reaches r + 1.
    u = torch.rand(targets.numel(), num, generator=generator, dtype=torch.float64)
    rank = torch.minimum(torch.floor(u * counts).long(), counts - 1)
    which = torch.searchsorted(cand.long().cumsum(1), rank + 1)  # N x num offset indices
    dy, dx = _offsets(ks)
    source = targets[:, None] + dy[which] * w + dx[which]
    return PseudoGT(rgb, targets, source.T.contiguous())


# ----------------------------------------------------------------------------------------------------------
# non-local stochastic sampling (later version)


def nss_similarity_sizes(mask: torch.Tensor, k: int = 3) -> torch.Tensor:
    """H x W int64: the similarity patch size of each pixel: k, grown by 2 while its window (clipped to the
    image) holds only rain; 0 where even the whole image is rain."""
    nonrain = (mask == 0).float()[None, None]
    sizes = torch.zeros(mask.shape, dtype=torch.int64)
    todo = torch.ones(mask.shape, dtype=torch.bool)
    s = k
    limit = 2 * max(mask.shape) + 1
    while todo.any() and s <= limit:
        # zero padding is the clipping: outside pixels never count as non-rain
        seen = F.max_pool2d(nonrain, s, stride=1, padding=s // 2)[0, 0] > 0.5
        found = todo & seen
        sizes[found] = s
        todo &= ~found
        s += 2
    return sizes


def _box_sum(x: torch.Tensor, s: int) -> torch.Tensor:
    """Sums over every s x s window (valid positions) of C x H x W, by shifted adds along each axis (exact for
    the integer-valued inputs here: float32 holds their sums exactly while s <= 64, float64 beyond)."""
    x = x.double() if s > 64 else x
    h, w = x.shape[1] - s + 1, x.shape[2] - s + 1
    # sum() starts from the int 0, so its declared type is int | Tensor; with s >= 1 it is a Tensor
    rows = cast(torch.Tensor, sum(x[:, i:i + h] for i in range(s)))
    return cast(torch.Tensor, sum(rows[:, :, j:j + w] for j in range(s)))


def nss_weights(rgb: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, big: int = 7, small: int = 3,
                eta: float = 0.5, threshold: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets N, weights N x big*big float64): unnormalised NSS weights of the candidates of every
    processed rain pixel (LDGP value > ``threshold``); non-candidates weigh 0. Pixels without candidate are
    left out of ``targets`` (the official code keeps them rainy)."""
    rgb = _as_image(rgb)
    h, w = rgb.shape[-2:]
    mask = _as_mask(mask, (h, w))
    big = max(big, 3)
    r_big = big // 2
    process = (mask > threshold).reshape(-1)
    sizes = nss_similarity_sizes(mask, small).reshape(-1)
    nonrain = mask == 0
    dy, dx = _offsets(big)
    # candidates: non-rain pixels of the window clipped to the image (the padding is never a candidate)
    processed = process.nonzero()[:, 0]
    wp = w + 2 * r_big
    padded = F.pad(nonrain, (r_big, r_big, r_big, r_big)).reshape(-1)
    centre = (processed // w + r_big) * wp + processed % w + r_big
    cand = padded[centre[:, None] + (dy * wp + dx)[None]]  # P x big*big
    keep = cand.any(1) & (sizes[processed] > 0)
    targets, cand = processed[keep], cand[keep]
    dist = torch.zeros(targets.numel(), big * big, dtype=torch.float64)
    image = rgb.float()
    for s in torch.unique(sizes[targets]).tolist():
        rs = s // 2
        sel = (sizes[targets] == s).nonzero()[:, 0]
        ty, tx = targets[sel] // w, targets[sel] % w
        # only the rows and columns these pixels need (large patches are rare and local)
        y0, y1, x0, x1 = int(ty.min()), int(ty.max()) + 1, int(tx.min()), int(tx.max()) + 1
        pad = rs + r_big
        ipad = F.pad(image, (pad, pad, pad, pad))  # zeros outside, as the official patches are
        # The rain pixel's mask: 1 on non-rain pixels and outside the image (its zero-initialised rain grid).
        mpad = F.pad(nonrain.float(), (pad, pad, pad, pad), value=1.0)
        hh, ww = y1 - y0 + 2 * rs, x1 - x0 + 2 * rs  # positions p + u, p in the region, u in the s x s patch
        oy, ox = r_big + y0, r_big + x0
        base = ipad[:, oy:oy + hh, ox:ox + ww]
        m = mpad[oy:oy + hh, ox:ox + ww]
        flat = (ty - y0) * (x1 - x0) + (tx - x0)
        block = torch.empty(big * big, sel.numel())
        for o in range(big * big):  # one offset at a time keeps the working set small
            shifted = ipad[:, oy + int(dy[o]):oy + int(dy[o]) + hh, ox + int(dx[o]):ox + int(dx[o]) + ww]
            diff = (base - shifted).abs().sum(0) * m
            # d_o(p) = sum over the s x s patch of mask * |difference|: a box sum of integers (exact)
            block[o] = _box_sum(diff[None], s).reshape(-1)[flat]
        dist[sel] = block.T.double()
    weights = 1.0 / torch.clamp(dist ** eta, min=1e-4)
    weights = torch.where(cand, weights, torch.zeros_like(weights))
    return targets, weights


def nss_probabilities(weights: torch.Tensor) -> torch.Tensor:
    """Candidate probabilities as the official code forms them: weights cast to float32, divided by their sum."""
    w32 = weights.float()
    return w32 / w32.sum(1, keepdim=True)


def official_uniforms(num: int) -> np.ndarray:
    """The uniforms every pixel uses in the official NSS: ``np.random.seed(0)`` then ``choice`` draws."""
    return np.random.RandomState(0).random_sample(num)


def nss_pseudo_gt(rgb: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, num: int = 50, big: int = 7,
                  small: int = 3, eta: float = 0.5, threshold: int = 10, shared_uniforms: bool = True,
                  generator: torch.Generator | None = None) -> PseudoGT:
    """Stochastic derained references of the later Rain2Avoid (non-local stochastic sampling)."""
    rgb = _as_image(rgb)
    w = rgb.shape[-1]
    targets, weights = nss_weights(rgb, mask, big, small, eta, threshold)
    cdf = nss_probabilities(weights).double().cumsum(1)
    cdf = cdf / cdf[:, -1:]
    if shared_uniforms:
        u = torch.from_numpy(official_uniforms(num))[None].expand(targets.numel(), num).contiguous()
    else:
        u = torch.rand(targets.numel(), num, generator=generator, dtype=torch.float64)
    # numpy's choice: the first index whose cumulative probability exceeds the uniform (side='right')
    which = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[1] - 1)
    dy, dx = _offsets(max(big, 3))
    source = targets[:, None] + dy[which] * w + dx[which]
    return PseudoGT(rgb, targets, source.T.contiguous())


def pseudo_gt(variant: str, rgb: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, num: int = 50,
              generator: torch.Generator | None = None) -> PseudoGT:
    """Pseudo ground truths of ``variant`` ("icassp" or "nlss") with the official parameters."""
    if variant == "icassp":
        return icassp_pseudo_gt(rgb, mask, num, generator=generator)
    if variant == "nlss":
        return nss_pseudo_gt(rgb, mask, num, generator=generator)
    raise DerainError(f"unknown Rain2Avoid variant {variant!r}; choose icassp or nlss")
