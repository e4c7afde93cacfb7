"""MSPFN (Jiang et al., CVPR 2020): multi-scale progressive fusion network, ported from the TensorFlow code.

The network predicts the rain layer of an image scaled to [-1, 1] and subtracts it (``docs/METHODS.md`` section 6):

    x, x/2, x/4 (box averages) -> rnn1 / rnn2 / rnn4: 3x3 conv + PReLU, 64 channels per scale
    residual memory (coarse to fine): conv -> single-step ConvLSTM (hidden 64 / 128 / 256) -> conv, plus
        the scale's features; each finer scale first adds the up-sampled coarser memory
    M = 17 progressive fusion steps; in each, per scale (1/4, then 1/2, then full):
        feature += U(feature + up-sampled coarser features),
        U = stride-2 conv -> N RCABs -> concat(shortcut, RCABs) -> stride-2 transposed conv
    reconstruction: per scale conv(concat(fused, memory)); 1/4 -> 1/2 -> full by transposed convs;
        conv 128 -> 32 (rnn5) -> conv 32 -> 3 (rnn7) = rain;   output = input - rain

``rcabs`` = (N_1/4, N_1/2, N_full): (1, 3, 3) in the training code (20,995,776 parameters, the "21.00M"
usually quoted) and (1, 1, 1) in the released "M17N1" model (15,823,424); ``build("mspfn-released")``.

Port notes (why the code looks as it does):
- Padding follows TensorFlow's ``SAME`` rule (the extra pixel of an even-sized stride-2 conv goes at the
  bottom/right) and the stride-2 transposed convs crop like ``tf.nn.conv2d_transpose`` with an explicit
  output size, so the sampling grid is the TF one and any H, W that are multiples of 4 work.
- Only the RCAB and ConvLSTM convolutions have biases (``tf.layers.conv2d``/``slim``); the others do not.
- Initialisation as in TF: Xavier-uniform kernels, zero biases, PReLU slopes 0 (they start as ReLU),
  ConvLSTM kernels from a truncated normal with std 1e-3.
- Importing TF weights (not provided here): the stride-1 ``deconv_layer`` kernels [kh, kw, out, in] become
  Conv2d weights ``w.permute(2, 3, 0, 1).flip(2, 3)``, stride-2 ones ConvTranspose2d weights
  ``w.permute(3, 2, 0, 1)``; the TF code reads images as BGR, so the first and last layers' colour
  channels would be reversed.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.blocks import ChannelAttention


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one side: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _prelu(channels: int) -> nn.PReLU:
    return nn.PReLU(channels, init=0.0)  # TF's prelu starts at slope 0, i.e. as a ReLU


class ConvAct(nn.Module):
    """3x3 stride-1 conv without bias, then a per-channel PReLU (``act=False``: the conv alone)."""

    def __init__(self, in_ch: int, out_ch: int, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.act = _prelu(out_ch) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Down(nn.Module):
    """3x3 stride-2 conv without bias (TF ``SAME`` padding) + PReLU: halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, bias=False)
        self.act = _prelu(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], 3, 2)
        left, right = _same_pad(x.shape[-1], 3, 2)
        return self.act(self.conv(F.pad(x, (left, right, top, bottom))))


class Up(nn.Module):
    """3x3 stride-2 transposed conv without bias to an explicit size (as ``tf.nn.conv2d_transpose``) + PReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, bias=False)
        self.act = _prelu(out_ch)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        # Unpadded, output pixel 2i + k receives input i through tap k; TF then drops the padding its
        # forward SAME conv would have added before the image (the top/left part of the pad).
        y = self.conv(x)
        top, left = _same_pad(size[0], 3, 2)[0], _same_pad(size[1], 3, 2)[0]
        return self.act(y[..., top:top + size[0], left:left + size[1]])


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (TF ``BasicConvLSTMCell``): one 3x3 conv over [input, h] gives gates i, j, f, o.

    c' = c * sigmoid(f + 1) + sigmoid(i) * tanh(j);  h' = tanh(c') * sigmoid(o).
    MSPFN runs a single step from the zero state, so the cell acts as a gated conv block; ``state=None``
    means that zero state, and then only the input part of the kernel is convolved (h = 0 adds nothing).
    """

    def __init__(self, in_ch: int, hidden: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.in_ch, self.hidden, self.forget_bias = in_ch, hidden, forget_bias
        self.conv = nn.Conv2d(in_ch + hidden, 4 * hidden, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if state is None:
            gates = F.conv2d(x, self.conv.weight[:, :self.in_ch], self.conv.bias, padding=1)
        else:
            gates = self.conv(torch.cat([x, state[1]], dim=1))
        i, j, f, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(j)
        if state is not None:
            c = c + state[0] * torch.sigmoid(f + self.forget_bias)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (c, h)


class RCAB(nn.Module):
    """Residual channel attention block: x + f * CA(f), f = conv(PReLU(conv(x))), both 3x3 with bias."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = _prelu(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = ChannelAttention(channels, reduction, act=_prelu(channels // reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv2(self.act(self.conv1(x)))
        return x + f * self.attention(f)


class UUnit(nn.Module):
    """One fusion unit: stride-2 conv, RCABs, concat with the shortcut, stride-2 transposed conv back."""

    def __init__(self, channels: int, n_rcab: int) -> None:
        super().__init__()
        self.down = Down(channels, channels)
        self.rcabs = nn.Sequential(*[RCAB(channels) for _ in range(n_rcab)])
        self.up = Up(channels * 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.down(x)
        return self.up(torch.cat([short, self.rcabs(short)], dim=1), x.shape[-2:])


class FusionStep(nn.Module):
    """One of the M progressive fusion iterations (TF scopes ``URAB*_n`` / ``BCM*_n``)."""

    def __init__(self, channels: int, rcabs: Sequence[int]) -> None:
        super().__init__()
        self.branch4 = UUnit(channels, rcabs[0])
        self.up4_2 = Up(channels, channels)
        self.branch2 = UUnit(channels, rcabs[1])
        self.up4_1 = Up(channels, channels)
        self.up2_1 = Up(channels, channels)
        self.branch1 = UUnit(channels, rcabs[2])

    def forward(self, f4: torch.Tensor, f2: torch.Tensor, f1: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4 = f4 + self.branch4(f4)
        u4_2 = self.up4_2(f4, f2.shape[-2:])
        f2 = f2 + self.branch2(f2 + u4_2)
        # The 1/4 -> full path up-samples the 1/4 -> 1/2 tensor again (not the 1/2 features).
        u4_1 = self.up4_1(u4_2, f1.shape[-2:])
        u2_1 = self.up2_1(f2, f1.shape[-2:])
        f1 = f1 + self.branch1(f1 + u4_1 + u2_1)
        return f4, f2, f1


class ResidualMemory(nn.Module):
    """RMM, coarse to fine: conv -> one ConvLSTM step -> conv, plus the scale's shallow features."""

    def __init__(self, channels: int, hidden: Sequence[int]) -> None:
        super().__init__()
        mid = channels // 2
        h4, h2, h1 = hidden
        self.rain4_res1, self.lstm_group4, self.rain4_res2 = (
            ConvAct(channels, mid), ConvLSTMCell(mid, h4), ConvAct(h4, channels))
        self.upRMM4_2 = Up(channels, channels)  # TF scope names
        self.rain2_res1, self.lstm_group2, self.rain2_res2 = (
            ConvAct(channels, mid), ConvLSTMCell(mid, h2), ConvAct(h2, channels))
        self.upRMM4_1 = Up(channels, channels)
        self.upRMM2_1 = Up(channels, channels)
        self.rain_res1, self.lstm_group, self.rain_res2 = (
            ConvAct(channels, mid), ConvLSTMCell(mid, h1), ConvAct(h1, channels))

    def forward(self, f4: torch.Tensor, f2: torch.Tensor, f1: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m4 = self.rain4_res2(self.lstm_group4(self.rain4_res1(f4))[0]) + f4
        u4_2 = self.upRMM4_2(m4, f2.shape[-2:])
        m2 = self.rain2_res2(self.lstm_group2(self.rain2_res1(f2 + u4_2))[0]) + f2
        # As in the TF code, the full scale gets the 1/4 memory through a second up-sampling of u4_2.
        up = self.upRMM4_1(u4_2, f1.shape[-2:]) + self.upRMM2_1(m2, f1.shape[-2:])
        m1 = self.rain_res2(self.lstm_group(self.rain_res1(f1 + up))[0]) + f1
        return m4, m2, m1


class MSPFN(nn.Module):
    """MSPFN on images in [0, 1] (scaled to [-1, 1] inside, as the TF code feeds it); H, W multiples of 4.

    ``image_channels`` (default 3, the official layout) is the channel count of the input and of the predicted
    rain layer, e.g. 12 inside a 2x pixel-unshuffle wrapper (:mod:`derain.models.unshuffled`). The [-1, 1]
    scaling is per value, so it means the same on rearranged pixels; the BGR note for TF weights concerns
    the official 3-channel layout only.
    """

    size_multiple = 4  # the 1/2 and 1/4 scale branches: inference pads height and width to multiples of this

    def __init__(self, channels: int = 64, iterations: int = 17, rcabs: Sequence[int] = (1, 3, 3),
                 lstm_hidden: Sequence[int] = (64, 128, 256), image_channels: int = 3,
                 zero_init_rain: bool = False) -> None:
        super().__init__()
        if len(rcabs) != 3 or len(lstm_hidden) != 3:
            raise ValueError("rcabs and lstm_hidden need one entry per scale (1/4, 1/2, full)")
        c = image_channels
        self.rnn1, self.rnn2, self.rnn4 = ConvAct(c, channels), ConvAct(c, channels), ConvAct(c, channels)
        self.residual_memory = ResidualMemory(channels, lstm_hidden)
        self.fusion = nn.ModuleList(FusionStep(channels, rcabs) for _ in range(iterations))
        self.rnn_recon4 = ConvAct(channels * 2, channels)
        self.rnn_recon2 = ConvAct(channels * 2, channels)
        self.rnn_recon = ConvAct(channels * 2, channels)
        self.up4_2 = Up(channels, channels)
        self.up2_1 = Up(channels * 2, channels)
        self.rnn5 = ConvAct(channels * 2, channels // 2)
        self.rnn7 = ConvAct(channels // 2, c, act=False)
        self._init_like_tf()
        if zero_init_rain:
            # Start as the identity. Early in training every network here sits for some hundred steps at
            # "output = input" (the L1 of the rain is the loss); with a random rain layer at the start, MSPFN
            # gets there by driving all of rnn5's pre-activations negative, and since its PReLU starts as a
            # ReLU, that layer never recovers (measured on mspfn-small: dead by step 50, identity for good).
            nn.init.zeros_(self.rnn7.conv.weight)

    def _init_like_tf(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():  # the LSTM gates start almost closed to input (slim's initialiser)
            if isinstance(module, ConvLSTMCell):
                nn.init.trunc_normal_(module.conv.weight, std=1e-3, a=-2e-3, b=2e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rain = x * 2.0 - 1.0
        # Fixed box-average pyramid (the paper says Gaussian; the code averages K x K blocks).
        f1 = self.rnn1(rain)
        f2 = self.rnn2(F.avg_pool2d(rain, 2))
        f4 = self.rnn4(F.avg_pool2d(rain, 4))
        m4, m2, m1 = self.residual_memory(f4, f2, f1)
        for step in self.fusion:
            f4, f2, f1 = step(f4, f2, f1)
        f4 = self.rnn_recon4(torch.cat([f4, m4], dim=1))
        f2 = self.rnn_recon2(torch.cat([f2, m2], dim=1))
        f1 = self.rnn_recon(torch.cat([f1, m1], dim=1))
        up = self.up2_1(torch.cat([self.up4_2(f4, f2.shape[-2:]), f2], dim=1), f1.shape[-2:])
        residual = self.rnn7(self.rnn5(torch.cat([f1, up], dim=1)))
        return (rain - residual.to(rain.dtype) + 1.0) / 2.0


def build_mspfn(**config: Any) -> MSPFN:
    """Registry builder (keyword config as in ``default_config``)."""
    return MSPFN(**config)
