"""The UNet of Rain2Avoid (the same class in both generations of the official code), 4,539,988 parameters.

Four stride-2 encoder convolutions (7x7, 5x5, 5x5, 3x3; no bias; batch-norm from the second on; ReLU), and a
decoder that at each level up-samples x2 (nearest), concatenates the skip and applies a 3x3 convolution with
batch-norm and LeakyReLU(0.2); the image itself is the last skip and the last convolution (with bias) outputs
the image directly, no global residual. Height and width must be multiples of 16 (inference pads to it).

``width`` scales every layer (64 is the paper's; 32 is a 4x cheaper option for CPUs). ``residual=True`` (not
the paper's; the CPU recipe's) adds the input to the output and zero-initialises the last convolution, so the
untrained network is the identity: a short schedule then only has to learn the rain, not the whole image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    """Convolution, optional batch-norm, optional activation: the official "PCBActiv" block."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, bn: bool, activation: str | None,
                 bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        if activation == "relu":
            self.act: nn.Module | None = nn.ReLU()
        elif activation == "leaky":
            self.act = nn.LeakyReLU(0.2)
        else:
            self.act = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x) if self.act is not None else x


class R2AUNet(nn.Module):
    """Rain2Avoid's UNet; ``width=64`` is the published network."""

    size_multiple = 16  # four stride-2 encoders: inference pads height and width to multiples of this

    def __init__(self, in_channels: int = 3, width: int = 64, residual: bool = False):
        super().__init__()
        self.residual = residual
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 8 * width
        self.enc_1 = ConvBlock(in_channels, c1, 7, 2, bn=False, activation="relu")
        self.enc_2 = ConvBlock(c1, c2, 5, 2, bn=True, activation="relu")
        self.enc_3 = ConvBlock(c2, c3, 5, 2, bn=True, activation="relu")
        self.enc_4 = ConvBlock(c3, c4, 3, 2, bn=True, activation="relu")
        self.dec_4 = ConvBlock(c4 + c3, c3, 3, 1, bn=True, activation="leaky")
        self.dec_3 = ConvBlock(c3 + c2, c2, 3, 1, bn=True, activation="leaky")
        self.dec_2 = ConvBlock(c2 + c1, c1, 3, 1, bn=True, activation="leaky")
        self.dec_1 = ConvBlock(c1 + in_channels, in_channels, 3, 1, bn=False, activation=None, bias=True)
        if residual:
            assert self.dec_1.conv.bias is not None  # built with bias=True
            nn.init.zeros_(self.dec_1.conv.weight)
            nn.init.zeros_(self.dec_1.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for enc in (self.enc_1, self.enc_2, self.enc_3, self.enc_4):
            skips.append(enc(skips[-1]))
        h = skips.pop()
        for dec in (self.dec_4, self.dec_3, self.dec_2, self.dec_1):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = dec(torch.cat([h, skips.pop()], dim=1))
        return x + h if self.residual else h
