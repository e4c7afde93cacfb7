"""EFMA, FSDRNet's "balanced feature mixing attention" (our reconstruction), and the block and stage built on it.

The paper names EFMA without describing it. Our reading of "balanced": two mixers of opposite reach on the
same normalised input, combined by an explicit, normalised trade-off that the network learns:

    x --+--> MDTA (channel-global: attention between channels over the whole image) ---- * a_c --+
        |                                                                                       +--> y
        +--> LocalMixer (spatial-local: depthwise 7x7 -> GELU -> 1x1, spatial gate) -------- * a_s --+

    (a_c, a_s) = softmax(w), w in R^2 initialised to 0 (equal shares)
    y -> Guidance.modulate(y) (frequency -> spatial) -> 1x1 projection

An :class:`EFMABlock` is a Restormer block with EFMA in place of MDTA (the GDFN feed-forward is unchanged).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.blocks import SpatialAttention
from derain.models.fsdrnet.frequency import Guidance
from derain.models.restormer import GDFN, MDTA, ChannelLayerNorm


class LocalMixer(nn.Module):
    """Spatial-local mixing: depthwise ``k`` x ``k`` -> GELU -> 1x1, gated per pixel by a sigmoid map computed
    from the channel mean and max of its own output (7x7 conv, :class:`~derain.models.blocks.SpatialAttention`).
    """

    def __init__(self, dim: int, kernel_size: int = 7, bias: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)
        self.pwconv = nn.Conv2d(dim, dim, 1, bias=bias)
        self.gate = SpatialAttention(7)
        # Zero rather than reflect padding: reflect needs maps of at least 4 x 4, and the small model's
        # bottleneck is 3 x 3 on a 96-pixel training patch.
        self.gate.sa.padding_mode = "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv(F.gelu(self.dwconv(x)))
        return y * torch.sigmoid(self.gate(y))


class EFMA(nn.Module):
    """Balanced mix of channel-global (MDTA) and spatial-local attention, modulated by frequency guidance."""

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        self.channel_mixer = MDTA(dim, num_heads, bias)
        self.spatial_mixer = LocalMixer(dim, bias=bias)
        self.balance = nn.Parameter(torch.zeros(2))  # softmax -> (a_c, a_s), equal at the start
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def shares(self) -> torch.Tensor:
        """The current (channel-global, spatial-local) weights; they sum to 1."""
        return self.balance.softmax(0)

    def forward(self, x: torch.Tensor, guide: Guidance | None = None) -> torch.Tensor:
        a_c, a_s = self.shares()
        y = a_c * self.channel_mixer(x) + a_s * self.spatial_mixer(x)
        if guide is not None:
            y = guide.modulate(y)
        return self.project_out(y)


class EFMABlock(nn.Module):
    """``x + EFMA(LN(x), guide)`` then ``x + GDFN(LN(x))``: a Restormer block with EFMA as its attention."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, norm: str) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, norm)
        self.attn = EFMA(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, norm)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor, guide: Guidance | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), guide)
        return x + self.ffn(self.norm2(x))


class GuidedStage(nn.ModuleList):
    """``n`` EFMA blocks at one level; every block receives the same guidance."""

    def __init__(self, n: int, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, norm: str) -> None:
        super().__init__(EFMABlock(dim, num_heads, ffn_expansion_factor, bias, norm) for _ in range(n))

    def forward(self, x: torch.Tensor, guide: Guidance | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, guide)
        return x
