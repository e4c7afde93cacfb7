"""DMSR (ICME 2025): a multi-input multi-output U-Net with multi-scale spatial and frequency refinement.

Written from the official ``models/DMSR.py`` semantics (see ``docs/METHODS.md`` section 4), including where
the code differs from the paper's figure, so the official checkpoints load with ``strict=True``
(35,472,543 trainable parameters at ``num_res=16``). The network (MIMO-UNet skeleton, base b = 48):

    x ----------------------> feat_extract[0] -> Encoder[0] (b) --------------------------- res1
    x/2 (nearest) -> SCM2 --> feat_extract[1] (s2) -> FAM2 -> Encoder[1] (2b) ------------ res2
    x/4 (nearest) -> SCM1 --> feat_extract[2] (s2) -> FAM1 -> Encoder[2] (4b)
                                                                  |
    out_1/4 = ConvsOut[0](Decoder[0] (4b)) + x/4  <---------------+
    up (feat_extract[3]) ++ res2 -> Convs[0] -> Decoder[1] (2b) -> ConvsOut[1] + x/2 = out_1/2
    up (feat_extract[4]) ++ res1 -> Convs[1] -> Decoder[2] (b)  -> feat_extract[5] + x = out_full

Each Encoder/Decoder stage is ``num_res - 1`` plain residual blocks and one DDSAM ResBlock, whose two
branches are MPSRM (pooled pyramid with spatial/pixel-guided attention) and FDSM (depthwise branches plus a
Fourier unit). The forward pass returns ``[out_full, out_1/2, out_1/4]``; inference uses the first.

Sizes: besides the /4 skeleton, MPSRM's 4-2-1 pooling pyramid inside the 1/4-scale stage needs that
stage's side divisible by 4 again, so H and W must be multiples of 16 (the registry pads to 16), and its
7x7 reflect-padded attention needs the 1/16 map to be at least 4 pixels: sides of at least 64 (the
recipe's patch). The official test protocol instead cuts images into 128x128 windows:
:func:`window_forward`, or the model option ``test_window=128``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.blocks import FourierUnit, SpatialAttention


class BasicConv(nn.Module):
    """Conv (or transposed conv) -> optional BatchNorm -> optional GELU (named ``relu`` in the official code)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, bias: bool = True,
                 norm: bool = False, relu: bool = True, transpose: bool = False) -> None:
        super().__init__()
        bias = bias and not norm
        if transpose:
            conv: nn.Module = nn.ConvTranspose2d(in_channel, out_channel, kernel_size, stride=stride,
                                                 padding=kernel_size // 2 - 1, bias=bias)
        else:
            conv = nn.Conv2d(in_channel, out_channel, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        layers = [conv]
        if norm:
            layers.append(nn.BatchNorm2d(out_channel))
        if relu:
            layers.append(nn.GELU())
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class PixelAttention(nn.Module):
    """Sigmoid map from the pairs (x_c, g_c): a grouped 7x7 conv over [x0, g0, x1, g1, ...] (one group per c)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pa2 = nn.Conv2d(2 * dim, dim, 7, padding=3, padding_mode="reflect", groups=dim, bias=True)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        pairs = torch.stack([x, guide], dim=2).flatten(1, 2)  # B, 2C, H, W interleaved per channel
        return torch.sigmoid(self.pa2(pairs))


class SPGA(nn.Module):
    """Spatial pixel-guided attention, as coded (not as drawn).

    x' = ReLU(GELU(conv2(x))); guide = sa(x') * dwconv(x'); output = pa(x, guide) + x'. The official code
    adds the sigmoid map to x' rather than multiplying x by it; kept so official weights mean the same.
    """

    def __init__(self, dim: int, kernel_size: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = BasicConv(dim, dim, kernel_size, bias=True)
        self.sa = SpatialAttention()
        self.pa = PixelAttention(dim)
        self.dwconv = nn.Sequential(
            nn.Conv2d(dim, dim, 1, bias=bias),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias),
            nn.GELU(),
            nn.Conv2d(dim, dim, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act1(self.conv2(x))
        guide = self.sa(feat) * self.dwconv(feat)
        return self.pa(x, guide) + feat


class MPSRM(nn.Module):
    """Multi-scale progressive spatial refinement: SPGA on 1/4, 1/2 and full-size average pools, coarse to fine.

    Each finer level adds the (bilinear x2) output of the coarser one before its own SPGA; every level's output
    is resized to the input size and summed with the input, then GELU and a 3x3 conv (``conv_sum``).
    """

    def __init__(self, k: int, k_out: int, pool_sizes: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        self.pools_sizes = list(pool_sizes)
        self.pools = nn.ModuleList(nn.AvgPool2d(kernel_size=s, stride=s) for s in self.pools_sizes)
        self.convs = nn.ModuleList(nn.Conv2d(k, k, 3, 1, 1, bias=False) for _ in self.pools_sizes)
        self.dynas = nn.ModuleList(SPGA(k, kernel_size=1) for _ in self.pools_sizes)
        self.relu = nn.GELU()
        self.conv_sum = nn.Conv2d(k, k_out, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        up = None
        for i, (pool, conv, spga) in enumerate(zip(self.pools, self.convs, self.dynas)):
            pooled = pool(x) if up is None else pool(x) + up
            y = spga(conv(pooled))
            total = total + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
            if i < len(self.pools_sizes) - 1:
                up = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
        return self.conv_sum(self.relu(total))


class FDSM(nn.Module):
    """Frequency-domain spectral modulation, as coded: depthwise 3x3 / 5x5 on the two channel halves,
    then ``x0 + FourierUnit(x0)`` -> BatchNorm -> ReLU.

    ``conv_mid`` is defined but never used by the official forward; it is kept so its checkpoints load.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv_init_1 = nn.Sequential(nn.Conv2d(dim, dim, 3, padding="same", groups=dim), nn.GELU())
        self.conv_init_2 = nn.Sequential(nn.Conv2d(dim, dim, 5, padding="same", groups=dim), nn.GELU())
        self.conv_mid = nn.Sequential(nn.Conv2d(dim * 2, dim, 1), nn.GELU())  # unused (see docstring)
        self.FFC = FourierUnit(dim * 2, dim * 2)  # official name
        self.bn = nn.BatchNorm2d(dim * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, self.dim, dim=1)
        x0 = torch.cat([self.conv_init_1(x1), self.conv_init_2(x2)], dim=1)
        return self.relu(self.bn(self.FFC(x0) + x0))


class ResBlockNone(nn.Module):
    """Plain residual block: 3x3 conv + GELU -> depthwise 3x3 + GELU -> 3x3 conv, plus the input."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.conv1 = BasicConv(channel, channel, 3, relu=True)
        self.conv2 = BasicConv(channel, channel, 3, relu=False)
        self.proj = nn.Conv2d(channel, channel, 3, 1, 1, groups=channel)
        self.proj_act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.proj_act(self.proj(self.conv1(x)))) + x


class ResBlock(nn.Module):
    """DDSAM block: the plain block's stem, then MPSRM and FDSM side by side, concatenated and fused."""

    def __init__(self, channel: int, pool_sizes: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        self.conv1 = BasicConv(channel, channel, 3, relu=True)
        self.conv2 = BasicConv(channel * 2, channel, 3, relu=False)
        self.MPSRM = MPSRM(channel, channel, pool_sizes)  # official names
        self.FDSM = FDSM(channel // 2)
        self.proj = nn.Conv2d(channel, channel, 3, 1, 1, groups=channel)
        self.proj_act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.proj_act(self.proj(self.conv1(x)))
        return self.conv2(torch.cat([self.MPSRM(out), self.FDSM(out)], dim=1)) + x


class Stage(nn.Module):
    """EBlock/DBlock: ``num_res - 1`` plain blocks, then one DDSAM block (keys ``layers.0..num_res-1``)."""

    def __init__(self, channel: int, num_res: int, pool_sizes: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[ResBlockNone(channel) for _ in range(num_res - 1)],
                                    ResBlock(channel, pool_sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow convolutional module: embeds a downscaled input image for the matching encoder scale."""

    def __init__(self, out_plane: int, image_channels: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(image_channels, out_plane // 4, 3, relu=True),
            BasicConv(out_plane // 4, out_plane // 2, 1, relu=True),
            BasicConv(out_plane // 2, out_plane // 2, 3, relu=True),
            BasicConv(out_plane // 2, out_plane, 1, relu=False),
            nn.InstanceNorm2d(out_plane, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class FAM(nn.Module):
    """Feature attention module, as coded: concatenate the two inputs and merge them with a 3x3 conv."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.merge = BasicConv(channel * 2, channel, 3, relu=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([x1, x2], dim=1))


class DMSR(nn.Module):
    """DMSR with the official attribute names; returns ``[out_full, out_1/2, out_1/4]``.

    ``test_window`` > 0 switches eval-mode forward passes to the official test protocol
    (:func:`window_forward`), which returns ``[out_full]`` only; training always runs whole patches.

    Options beyond the official network (defaults give the official layout): ``image_channels`` is the
    channel count of the input and of the three outputs (e.g. 48 inside a 4x pixel-unshuffle wrapper,
    :mod:`derain.models.unshuffled`); ``pool_sizes`` is MPSRM's pooling pyramid, coarsest first, successive
    factors of 2 ending in 1. Each halving of the pyramid halves the size multiple and the minimum side; inside a
    2x (4x) unshuffle, ``(2, 1)`` (``(1,)``) keeps the coarsest image scale of the official ``(4, 2, 1)``.
    """

    def __init__(self, num_res: int = 16, base_channel: int = 48, test_window: int = 0, image_channels: int = 3,
                 pool_sizes: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        pool_sizes = [int(p) for p in pool_sizes]
        if pool_sizes[-1] != 1 or any(p != 2 * q for p, q in zip(pool_sizes, pool_sizes[1:])):
            raise ValueError(f"pool_sizes must be successive factors of 2 ending in 1, not {pool_sizes}")
        b, c = base_channel, image_channels
        self.test_window = test_window
        # The 1/4-scale stage pools by pool_sizes[0] again: sides must divide by 4 * pool_sizes[0], and its
        # 7x7 reflect-padded attention needs that coarsest map to be at least 4 pixels.
        self.scale_multiple = 4 * pool_sizes[0]
        self.min_side = 4 * self.scale_multiple
        self.Encoder = nn.ModuleList(Stage(b * k, num_res, pool_sizes) for k in (1, 2, 4))
        self.feat_extract = nn.ModuleList([
            BasicConv(c, b, 3, relu=True, stride=1),
            BasicConv(b, b * 2, 3, relu=True, stride=2),
            BasicConv(b * 2, b * 4, 3, relu=True, stride=2),
            BasicConv(b * 4, b * 2, 4, relu=True, stride=2, transpose=True),
            BasicConv(b * 2, b, 4, relu=True, stride=2, transpose=True),
            BasicConv(b, c, 3, relu=False, stride=1),
        ])
        self.Decoder = nn.ModuleList(Stage(b * k, num_res, pool_sizes) for k in (4, 2, 1))
        self.Convs = nn.ModuleList([BasicConv(b * 4, b * 2, 1, relu=True),
                                    BasicConv(b * 2, b, 1, relu=True)])
        self.ConvsOut = nn.ModuleList([BasicConv(b * 4, c, 3, relu=False),
                                       BasicConv(b * 2, c, 3, relu=False)])
        self.FAM1 = FAM(b * 4)
        self.SCM1 = SCM(b * 4, c)
        self.FAM2 = FAM(b * 2)
        self.SCM2 = SCM(b * 2, c)

    @property
    def size_multiple(self) -> int:
        """What inference pads height and width to: 1 with the official test windows (each window is a
        valid size; the image is not padded), else the multiple the scales need (:attr:`scale_multiple`)."""
        return 1 if self.test_window > 0 and not self.training else self.scale_multiple

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.test_window > 0 and not self.training:
            return [window_forward(self.forward_scales, x, self.test_window)]
        return self.forward_scales(x)

    def forward_scales(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network itself: three restored images, full resolution first."""
        h, w = x.shape[-2:]
        m = self.scale_multiple
        if h % m or w % m or min(h, w) < self.min_side:
            raise ValueError(f"DMSR needs sides that are multiples of {m} and at least {self.min_side}, not {h}x{w}")
        # The input pyramid uses F.interpolate's default mode, nearest (not a blur or an average).
        x_2 = F.interpolate(x, scale_factor=0.5)
        x_4 = F.interpolate(x_2, scale_factor=0.5)
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)

        res1 = self.Encoder[0](self.feat_extract[0](x))
        res2 = self.Encoder[1](self.FAM2(self.feat_extract[1](res1), z2))
        z = self.Encoder[2](self.FAM1(self.feat_extract[2](res2), z4))

        z = self.Decoder[0](z)
        out_4 = self.ConvsOut[0](z) + x_4
        z = self.Convs[0](torch.cat([self.feat_extract[3](z), res2], dim=1))
        z = self.Decoder[1](z)
        out_2 = self.ConvsOut[1](z) + x_2
        z = self.Convs[1](torch.cat([self.feat_extract[4](z), res1], dim=1))
        z = self.Decoder[2](z)
        out_1 = self.feat_extract[5](z) + x
        return [out_1, out_2, out_4]


def _window_starts(length: int, window: int) -> list[int]:
    """Offsets of the official windows along one side: a grid from 0, plus one window flush with the end."""
    starts = list(range(0, length - window + 1, window))
    if length % window:
        starts.append(length - window)
    return starts


def window_forward(net: Callable[[torch.Tensor], Any], x: torch.Tensor, window: int = 128,
                   batch: int = 0) -> torch.Tensor:
    """The official DMSR test protocol: non-overlapping ``window`` squares, full-resolution output stitched.

    The image is covered by a grid of windows from the top-left corner; where a side is not a multiple of
    ``window``, one more row/column of windows sits flush with the bottom/right edge and contributes only the
    strip the grid did not cover (as ``window_partitionx``/``window_reversex`` in the official ``layers.py``).
    ``net`` maps a batch of windows to the list of outputs (full resolution first) or to one tensor.
    ``batch`` > 0 runs that many windows at a time (same result in eval mode; all at once when 0, as the
    official script does). Images smaller than a window are reflect-padded up to it (the official code
    needs at least ``window`` pixels per side) and cropped back.
    """
    h, w = x.shape[-2:]
    if h < window or w < window:
        pad_h, pad_w = max(0, window - h), max(0, window - w)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return window_forward(net, padded, window, batch)[..., :h, :w]
    tops, lefts = _window_starts(h, window), _window_starts(w, window)
    boxes = [(t, left) for t in tops for left in lefts]
    crops = torch.cat([x[..., t:t + window, left:left + window] for t, left in boxes], dim=0)
    chunk = batch if batch > 0 else len(crops)
    outs = []
    for i in range(0, len(crops), chunk):
        y = net(crops[i:i + chunk])
        outs.append(y[0] if isinstance(y, (list, tuple)) else y)
    y = torch.cat(outs, dim=0)
    n = x.shape[0]
    result = x.new_zeros((n, y.shape[1], h, w), dtype=y.dtype)
    # Written in reverse, the edge-flush windows go first and the grid windows overwrite them where they
    # overlap: each pixel comes from the grid window covering it, and only the remainder strips from an
    # edge-flush window, which is the official stitching.
    for k, (t, left) in reversed(list(enumerate(boxes))):
        result[..., t:t + window, left:left + window] = y[k * n:(k + 1) * n]
    return result


def build_dmsr(**config: Any) -> DMSR:
    """Registry builder (keyword config as in ``default_config``)."""
    return DMSR(**config)
