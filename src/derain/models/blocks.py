"""Building blocks shared by several networks: a Fourier unit and two attention maps.

Each block keeps the attribute names of the code it first came from (DMSR's ``attention.py`` and its FFC
unit), so a network that uses it loads that code's checkpoints unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


class FourierUnit(nn.Module):
    """FFC-style spectral transform: a learned 1x1 mixing of the real and imaginary spectra.

    ``rfft2`` (orthonormal) -> channels [c0.re, c0.im, c1.re, c1.im, ...] -> 1x1 conv (no bias) -> BatchNorm
    -> ReLU -> back to complex -> ``irfft2`` at the input size. Amplitude and phase are not separated: every
    output frequency is a learned mix of the same frequency in all input channels, so one 1x1 conv acts
    on the whole image at once (a global receptive field for the cost of a pointwise conv).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        # The FFT runs in float32 even under autocast (half-precision FFTs need power-of-two sizes).
        spec = torch.fft.rfft2(x.float(), norm="ortho")
        # (B, C, H, W', 2) -> (B, C, 2, H, W') -> (B, 2C, H, W'): real and imaginary parts interleaved per channel.
        ri = torch.view_as_real(spec).permute(0, 1, 4, 2, 3).reshape(b, -1, h, spec.shape[-1])
        ri = self.relu(self.bn(self.conv_layer(ri)))
        ri = ri.float().reshape(b, -1, 2, h, spec.shape[-1]).permute(0, 1, 3, 4, 2).contiguous()
        return torch.fft.irfft2(torch.view_as_complex(ri), s=(h, w), norm="ortho")


class SpatialAttention(nn.Module):
    """One spatial logit map from the channel mean and max: 7x7 conv (reflect padding) over [mean, max].

    Returns logits, not a sigmoid: DMSR uses the raw map as a multiplicative gate; callers that want a
    probability apply the sigmoid themselves.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.sa = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, padding_mode="reflect", bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.sa(pooled)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel gate: global average pool -> 1x1 (C -> C/r) -> act -> 1x1 -> sigmoid.

    Returns the (B, C, 1, 1) gate; ``act`` defaults to ReLU (RCAN), MSPFN passes a PReLU.
    """

    def __init__(self, channels: int, reduction: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1, bias=True)
        self.act = act if act is not None else nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(channels // reduction, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.expand(self.act(self.reduce(x.mean(dim=(2, 3), keepdim=True)))))
