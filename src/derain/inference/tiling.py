"""Tiling: a large image cut into overlapping tiles of one shape, each run alone, blended back with smooth
weights (memory stays bounded by the tile, not the photo)."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from derain.errors import DerainError

Forward = Callable[[torch.Tensor], torch.Tensor]


def tile_layout(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """``(side, starts)``: the tiles along one axis of ``length`` pixels, each ``side`` long (at most ``tile``),
    sharing at least ``overlap`` pixels with the next.

    As few tiles as the overlap allows, spread evenly, and each as short as that count of tiles allows: the
    last tile ends exactly at the border and no pixel is computed more often than the overlaps need (tiles of
    the full ``tile`` side would overlap more; on a 4288-pixel side, 5 tiles of 1024 compute 5,120 pixels where
    5 tiles of 912 compute 4,560). Sides and starts are multiples of ``multiple`` (the network's size multiple;
    ``length`` and ``tile`` are multiples of it too): a network that downsamples by 16 computes the same thing
    in a tile as in the whole image only when the tile sits on its 16-pixel grid.
    """
    if length <= tile:
        return length, [0]
    if overlap >= tile:
        raise DerainError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    count = math.ceil((length - overlap) / (tile - overlap))
    while True:
        shortest = min(tile, multiple * math.ceil((length + (count - 1) * overlap) / (count * multiple)))
        for side in range(shortest, tile + 1, multiple):
            step = (length - side) / (count - 1)
            starts = [round(i * step / multiple) * multiple for i in range(count)]
            if all(b - a <= side - overlap for a, b in zip(starts, starts[1:])):  # snapping kept the overlap
                return side, starts
        count += 1


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of the tiles of :func:`tile_layout` along one axis."""
    return tile_layout(length, tile, overlap, multiple)[1]


def _ramp(length: int, start_fade: bool, end_fade: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D blending weight of one tile side: ~0 on a guard band at faded ends, then a raised cosine up to 1.

    The guard band (a quarter of the overlap) hides the pixels a network computes wrongly near a tile's cut
    edge (its zero padding reaches them); the neighbouring tile has full weight there. Weights stay
    strictly positive so every pixel's total weight is positive.
    """
    w = torch.ones(length, device=device)
    if overlap <= 0:
        return w
    n = min(overlap, length)
    guard = n // 4
    rise = n - guard
    ramp = torch.full((n,), 1e-6, device=device)
    ramp[guard:] = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(rise, device=device) + 0.5) / rise)
    ramp.clamp_(min=1e-6)
    if start_fade:
        w[:n] = torch.minimum(w[:n], ramp)
    if end_fade:
        w[length - n:] = torch.minimum(w[length - n:], ramp.flip(0))
    return w


def iter_tiles(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, height, width) of every tile of an ``h`` x ``w`` image (all of one shape)."""
    tile_h, tops = tile_layout(h, tile, overlap, multiple)
    tile_w, lefts = tile_layout(w, tile, overlap, multiple)
    for top in tops:
        for left in lefts:
            yield top, left, tile_h, tile_w


def tiled_forward(forward: Forward, tile: int, overlap: int,
                  progress: Callable[[int], None] | None = None, multiple: int = 1, batch: int = 1) -> Forward:
    """Apply ``forward`` to overlapping tiles and blend them with smooth weights.

    ``batch`` tiles of the same shape go through ``forward`` together (GPUs are busier with several tiles
    per call). Outputs are accumulated on the CPU in float32, so the peak memory is one batch's activations
    plus three image-sized buffers, whatever the photo's size.
    """

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = torch.zeros((x.shape[0], x.shape[1], h, w), dtype=torch.float32)
        weight = torch.zeros((1, 1, h, w), dtype=torch.float32)
        tops, lefts = tile_starts(h, tile, overlap, multiple), tile_starts(w, tile, overlap, multiple)
        for group in _same_shape_groups(list(iter_tiles(h, w, tile, overlap, multiple)), batch):
            crops = [x[..., top:top + th, left:left + tw] for top, left, th, tw in group]
            outputs = forward(torch.cat(crops) if len(crops) > 1 else crops[0]).cpu().split(x.shape[0])
            for (top, left, th, tw), y in zip(group, outputs):
                # Only edges shared with a neighbour fade; the image border keeps full weight.
                wy = _ramp(th, top > 0, top != tops[-1], overlap, y.device)
                wx = _ramp(tw, left > 0, left != lefts[-1], overlap, y.device)
                mask = (wy[:, None] * wx[None, :])[None, None]
                out[..., top:top + th, left:left + tw] += y * mask
                weight[..., top:top + th, left:left + tw] += mask
            if progress is not None:
                progress(len(group))
        return out / weight

    return wrapped


def _same_shape_groups(tiles: list[tuple[int, int, int, int]], batch: int) -> Iterator[list[tuple[int, int, int, int]]]:
    """Consecutive runs of at most ``batch`` tiles that share a height and width."""
    group: list[tuple[int, int, int, int]] = []
    for t in tiles:
        if group and (len(group) == batch or group[-1][2:] != t[2:]):
            yield group
            group = []
        group.append(t)
    if group:
        yield group
