"""FSDRNet's physically-guided restoration heads (our reconstruction): one per degradation type.

Each head predicts the parameters of a degradation model from the level-1 decoder features ``feat`` and
applies the model's inverse to the full-resolution input image ``I``; the network mixes them with the
selector's weights (:class:`PhysicalHeads`). When the U-Net runs on a pixel-unshuffled image (``scale`` > 1,
the small model), each head's last convolution predicts ``scale^2`` values per parameter and a pixel shuffle
puts them back at full resolution: the heavy filtering runs on few pixels, the physics on every pixel.

    rain      R = directional depthwise bank (1x7, 7x1, two diagonals)(feat)     J = I - R
    haze      t = 0.05 + 0.95 sigmoid(conv(feat)), A = MLP(pool(feat))           J = (I - A) / t + A
    noise     per-pixel K x K kernels w = softmax(conv(feat)) over the window    J = sum_k w_k * shift_k(I)
    blur      r = 1x1 -> depthwise 11x11 -> GELU -> 1x1 (feat)                   J = I + r
    lowlight  L = 0.05 + 0.95 sigmoid(conv(feat)), colour 3x3 matrix M          J = M (I / L)

    output = sum_k pi_k J_k + conv3x3(feat)     (pi: routing weights; the conv is a shared refinement)

Every head starts close to the identity (``J ~ I``), so the untrained network returns roughly its input.
The floors of ``t`` and ``L`` (0.05) bound the gain of the inversions to 20x.
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.fsdrnet.selector import TASKS


def predict(in_channels: int, out_channels: int, scale: int, kernel_size: int = 1) -> nn.Sequential:
    """A conv predicting ``out_channels`` maps at ``scale`` x the resolution of its input (pixel shuffle)."""
    conv = nn.Conv2d(in_channels, out_channels * scale ** 2, kernel_size, padding=kernel_size // 2)
    return nn.Sequential(conv, nn.PixelShuffle(scale)) if scale > 1 else nn.Sequential(conv)


def _conv_bias(module: nn.Module) -> torch.Tensor:
    """The bias of a conv built with the default ``bias=True`` (torch types it Optional), or of the conv
    that starts a ``predict`` block."""
    conv = cast(nn.Conv2d, module[0] if isinstance(module, nn.Sequential) else module)
    assert conv.bias is not None
    return conv.bias


def _shrink_(conv: nn.Module, factor: float) -> None:
    """Scale a layer's initial weights and zero its bias: its output starts near 0 but still learns (a zero
    weight would also zero the gradients of the layers before it)."""
    if isinstance(conv, nn.Sequential):  # a ``predict`` block: its conv
        conv = conv[0]
    layer = cast(nn.Conv2d | nn.Linear, conv)  # Module attributes are typed Tensor | Module
    with torch.no_grad():
        layer.weight.mul_(factor)
        if layer.bias is not None:
            layer.bias.zero_()


class RainHead(nn.Module):
    """Rain layer from a bank of directional depthwise filters (streaks are oriented lines); ``J = I - R``."""

    def __init__(self, channels: int, hidden: int = 32, length: int = 7, scale: int = 1) -> None:
        super().__init__()
        pad = length // 2
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.horizontal = nn.Conv2d(hidden, hidden, (1, length), padding=(0, pad), groups=hidden)
        self.vertical = nn.Conv2d(hidden, hidden, (length, 1), padding=(pad, 0), groups=hidden)
        # The two 45-degree line filters: ``length`` taps per channel on the main and the anti-diagonal of a
        # ``length`` x ``length`` depthwise kernel (the rest of the kernel is zero, so it is not a parameter).
        bound = 1 / length ** 0.5  # a depthwise conv's default init for ``length`` inputs
        self.diagonal_taps = nn.Parameter(torch.empty(2, hidden, length).uniform_(-bound, bound))
        self.to_rain = predict(4 * hidden, 3, scale)
        _shrink_(self.to_rain, 0.1)

    def diagonal_kernels(self) -> torch.Tensor:
        """Depthwise kernels (2 * hidden, 1, L, L): the main-diagonal filters, then the anti-diagonal ones."""
        main = torch.diag_embed(self.diagonal_taps[0])
        anti = torch.diag_embed(self.diagonal_taps[1]).flip(-1)
        return torch.cat([main, anti]).unsqueeze(1)

    def forward(self, image: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        h = self.reduce(feat)
        hidden, length = self.diagonal_taps.shape[1:]
        kernels = self.diagonal_kernels().to(h.dtype)
        diagonals = F.conv2d(torch.cat([h, h], dim=1), kernels, padding=length // 2, groups=2 * hidden)
        rain = self.to_rain(F.gelu(torch.cat([self.horizontal(h), self.vertical(h), diagonals], dim=1)))
        return image - rain


class HazeHead(nn.Module):
    """Inverts the atmospheric scattering model ``I = J t + A (1 - t)``: ``J = (I - A) / t + A``."""

    def __init__(self, channels: int, hidden: int = 32, scale: int = 1) -> None:
        super().__init__()
        self.transmission = predict(channels, 1, scale, 3)
        self.airlight = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, 3))
        _shrink_(self.transmission, 0.1)
        with torch.no_grad():
            _conv_bias(self.transmission).fill_(4.0)  # t ~ 0.98 at the start: almost no dehazing
        _shrink_(self.airlight[-1], 0.1)

    def forward(self, image: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        t = 0.05 + 0.95 * torch.sigmoid(self.transmission(feat).float())
        airlight = torch.sigmoid(self.airlight(feat.float().mean(dim=(2, 3)))).view(-1, 3, 1, 1)
        return (image - airlight) / t + airlight


class NoiseKernelHead(nn.Module):
    """Kernel-prediction denoising: a normalised ``K`` x ``K`` kernel per pixel, applied to the input image
    (shared by its three channels). The output is a convex combination of input pixels, so it cannot
    invent structure, only average noise away where the features say so."""

    def __init__(self, channels: int, kernel_size: int = 5, scale: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        # 1x1: the decoder features already carry the context; a 3x3 conv to K^2 * scale^2 maps costs more
        # than the rest of the head.
        self.kernels = predict(channels, kernel_size ** 2, scale)
        _shrink_(self.kernels, 0.1)
        with torch.no_grad():  # a peaked centre tap: the kernels start close to the identity
            # Output channel c * scale^2 + s of the conv is kernel tap c at sub-pixel s.
            centre = kernel_size ** 2 // 2
            _conv_bias(self.kernels)[centre * scale ** 2:(centre + 1) * scale ** 2] = 6.0

    def forward(self, image: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        weights = self.kernels(feat).float().softmax(dim=1)  # (B, K*K, H, W)
        h, w = image.shape[-2:]
        padded = F.pad(image, (k // 2,) * 4, mode="replicate")
        # A loop over the K*K shifts instead of unfold: the same sum without a K*K-times larger tensor.
        out = torch.zeros_like(image)
        for i in range(k):
            for j in range(k):
                out = out + weights[:, i * k + j: i * k + j + 1] * padded[..., i:i + h, j:j + w]
        return out


class DeblurHead(nn.Module):
    """Residual sharpening from a large-kernel branch (blur spreads a pixel over many, so does its inverse)."""

    def __init__(self, channels: int, hidden: int = 32, kernel_size: int = 11, scale: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden),
            nn.GELU(),
        )
        self.to_residual = predict(hidden, 3, scale)
        _shrink_(self.to_residual, 0.1)

    def forward(self, image: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return image + self.to_residual(self.body(feat))


class LowLightHead(nn.Module):
    """Retinex: the image is reflectance x illumination, so ``J = M (I / L)`` with a colour matrix ``M``."""

    def __init__(self, channels: int, scale: int = 1) -> None:
        super().__init__()
        self.illumination = predict(channels, 1, scale, 3)
        _shrink_(self.illumination, 0.1)
        with torch.no_grad():
            _conv_bias(self.illumination).fill_(4.0)  # L ~ 0.98 at the start: almost no brightening
        self.colour = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.colour.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            _conv_bias(self.colour).zero_()

    def forward(self, image: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        light = 0.05 + 0.95 * torch.sigmoid(self.illumination(feat).float())
        return self.colour(image / light)


class PhysicalHeads(nn.Module):
    """The five heads in :data:`TASKS` order, mixed by routing weights, plus a shared refinement conv.

    ``feat`` is at ``1 / scale`` of the image's resolution (the U-Net's level 1)."""

    def __init__(self, channels: int, hidden: int = 32, kernel_size: int = 5, scale: int = 1) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({
            "rain": RainHead(channels, hidden, scale=scale),
            "haze": HazeHead(channels, hidden, scale=scale),
            "noise": NoiseKernelHead(channels, kernel_size, scale=scale),
            "blur": DeblurHead(channels, hidden, scale=scale),
            "lowlight": LowLightHead(channels, scale=scale),
        })
        assert tuple(self.heads) == TASKS
        self.refine = predict(channels, 3, scale, 3)
        _shrink_(self.refine, 0.1)

    def forward(self, image: torch.Tensor, feat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_k weights[:, k] * head_k(image, feat) + refine(feat)``; weights: (B, len(TASKS))."""
        out = self.refine(feat).float()
        for k, head in enumerate(self.heads.values()):
            w = weights[:, k]
            # A head no image of the batch uses (forced task, top-1) adds exactly 0: skip its cost.
            if not torch.any(w):
                continue
            out = out + w.view(-1, 1, 1, 1) * head(image, feat).float()
        return out
