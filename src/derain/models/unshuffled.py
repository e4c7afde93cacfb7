"""Small variants of the reference networks for the equal-cost CPU comparison: a pixel-unshuffle stem.

:class:`Unshuffled` runs an inner network on the image rearranged by ``pixel_unshuffle(x, f)`` (``3 f^2``
channels, ``1/f`` of each side) and ``pixel_shuffle``s its output back. The rearrangement is exact (no
pixel is lost, unlike a strided conv), so thin rain streaks survive, while every layer of the inner network
runs on ``1/f^2`` of the pixels: the same trick that makes FastDerain fast. The inner network keeps its own
blocks and its own global residual, which, in the unshuffled space, is still ``input + residual`` pixel for
pixel.

The builders below make the registry's ``restormer-small``, ``dmsr-small`` and ``mspfn-small``; their widths
and depths were chosen so that CPU inference costs about as much as FastDerain's (see the registry and
``configs/equal_cost_*.yaml``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Output = torch.Tensor | list[torch.Tensor]


class Unshuffled(nn.Module):
    """``pixel_shuffle(inner(pixel_unshuffle(x, factor)), factor)``, for one output or a list of outputs.

    ``inner`` must take and return ``3 * factor ** 2`` channels. A list output (DMSR: full, 1/2 and 1/4
    scales) is kept whole, each element shuffled back to its own size. ``size_multiple`` is the inner
    network's multiple times ``factor``.
    """

    def __init__(self, inner: nn.Module, factor: int, inner_multiple: int = 1) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"unshuffle factor must be at least 1, not {factor}")
        self.inner = inner
        self.factor = factor
        self.size_multiple = inner_multiple * factor

    def forward(self, x: torch.Tensor) -> Output:
        f = self.factor
        y = self.inner(F.pixel_unshuffle(x, f) if f > 1 else x)
        if f == 1:
            return y
        if isinstance(y, (list, tuple)):
            return [F.pixel_shuffle(t, f) for t in y]
        return F.pixel_shuffle(y, f)

    @torch.no_grad()
    def fold(self) -> "Unshuffled":
        """Fold the inner network for inference where it can be (Restormer's norms); a no-op otherwise."""
        fold = getattr(self.inner, "fold", None)
        if callable(fold):
            fold()
        return self


def build_restormer_small(factor: int = 4, **config: Any) -> Unshuffled:
    """Restormer inside a ``factor``x unshuffle; ``config`` as Restormer's (channels are set here)."""
    from derain.models.restormer import Restormer

    channels = 3 * factor ** 2
    return Unshuffled(Restormer(**config, inp_channels=channels, out_channels=channels), factor,
                      Restormer.size_multiple)


def build_dmsr_small(factor: int = 4, **config: Any) -> Unshuffled:
    """DMSR inside a ``factor``x unshuffle; returns three outputs (full, 1/2, 1/4) like DMSR itself."""
    from derain.models.dmsr import DMSR

    inner = DMSR(**config, image_channels=3 * factor ** 2)
    return Unshuffled(inner, factor, inner.scale_multiple)


def build_mspfn_small(factor: int = 4, **config: Any) -> Unshuffled:
    """MSPFN inside a ``factor``x unshuffle; ``config`` as MSPFN's (image channels are set here)."""
    from derain.models.mspfn import MSPFN

    return Unshuffled(MSPFN(**config, image_channels=3 * factor ** 2), factor, MSPFN.size_multiple)
