"""Every training loss term, and a weighted sum built from config.

All losses take ``(pred, target)`` tensors of shape (B, C, H, W) in [0, 1] and return a scalar; they compute
in float32 (under bf16 autocast the network output is cast up first, so small differences are not lost).

Multi-output networks (DMSR) return a list of images, full resolution first. A term sees only the first one
unless its options say ``outputs: all``: then it is summed over every output, each against the target
resized (bilinear) to that output's size, as DMSR's recipe does.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from derain.errors import DerainError
from derain.metrics.fullref import _Y_DENOM_MILLI, _Y_WEIGHTS_MILLI


class L1Loss(nn.Module):
    """Mean absolute error."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target.float()).abs().mean()


class MSELoss(nn.Module):
    """Mean squared error: the loss PSNR measures. Early in training it moves much faster than L1, whose
    constant-size gradient on the many rain-free pixels holds a residual rain predictor near zero output."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target.float()
        return (diff * diff).mean()


class PSNRLoss(nn.Module):
    """Mean over the batch of each sample's ``10 log10(MSE + eps)``: minus its PSNR (peak 1), as HINet and NAFNet
    train. A benchmark's score is the mean of per-image PSNRs, so a fixed squared error costs more dB in an image
    restored well than in one restored badly; pooled MSE weighs every pixel alike and lets the worst samples
    dominate the gradient. The log puts each sample's error on the benchmark's scale."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target.float()
        per_sample = (diff * diff).flatten(1).mean(dim=1)
        return (10.0 / math.log(10.0)) * torch.log(per_sample + self.eps).mean()


class CharbonnierLoss(nn.Module):
    """mean(sqrt((pred - target)^2 + eps^2)): a smooth L1 (MPRNet/DMSR use eps = 1e-3)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target.float()
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Differentiable mean SSIM (Gaussian window, per channel, valid region), as in Wang et al. 2004."""
    pred, target = pred.float(), target.float()
    c = pred.shape[1]
    w = _gaussian_window(window, sigma, c, pred.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(pred, w, groups=c)
    mu_y = F.conv2d(target, w, groups=c)
    sxx = F.conv2d(pred * pred, w, groups=c) - mu_x ** 2
    syy = F.conv2d(target * target, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(pred * target, w, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


class SSIMLoss(nn.Module):
    """1 - SSIM."""

    def __init__(self, window: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.window, self.sigma = window, sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim(pred, target, self.window, self.sigma)


class EdgeLoss(nn.Module):
    """Charbonnier distance between Laplacian edge maps.

    ``kernel="gaussian"``: image minus its 5x5 Gaussian blur (MPRNet-style), replicate padding;
    ``kernel="laplacian"``: MSPFN's 3x3 8-neighbour Laplacian (centre 8, neighbours -1) per channel, with
    zero padding as TensorFlow's ``SAME`` convolution.
    """

    kernel: torch.Tensor  # buffer registered in __init__

    def __init__(self, eps: float = 1e-3, kernel: str = "gaussian") -> None:
        super().__init__()
        if kernel not in ("gaussian", "laplacian"):
            raise DerainError(f"edge loss kernel must be gaussian or laplacian, not {kernel!r}")
        self.charbonnier = CharbonnierLoss(eps)
        self.kind = kernel
        if kernel == "gaussian":
            k = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
            weights = k[:, None] * k[None, :]
        else:
            weights = -torch.ones(3, 3)
            weights[1, 1] = 8.0
        self.register_buffer("kernel", weights[None, None], persistent=False)

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        c, size = x.shape[1], self.kernel.shape[-1]
        kernel = self.kernel.to(x.device).expand(c, 1, size, size)
        if self.kind == "laplacian":
            return F.conv2d(x, kernel, padding=size // 2, groups=c)
        pad = size // 2
        blurred = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), kernel, groups=c)
        return x - blurred

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(self.laplacian(pred.float()), self.laplacian(target.float()))


class FFTLoss(nn.Module):
    """L1 distance in the Fourier domain: ``mode="amplitude"`` compares |FFT|, ``"complex"`` the real and
    imaginary parts (which also constrains the phase).

    By default the one-sided orthonormal spectrum (``rfft2``, ``norm="ortho"``); ``onesided=False`` with
    ``norm="backward"`` is the full unnormalised ``fft2`` that MIMO-UNet and DMSR train with.
    """

    def __init__(self, mode: str = "complex", norm: str = "ortho", onesided: bool = True) -> None:
        super().__init__()
        if mode not in ("amplitude", "complex"):
            raise DerainError(f"fft loss mode must be amplitude or complex, not {mode!r}")
        if norm not in ("ortho", "backward", "forward"):
            raise DerainError(f"fft loss norm must be ortho, backward or forward, not {norm!r}")
        self.mode, self.norm, self.onesided = mode, norm, onesided

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fft = torch.fft.rfft2 if self.onesided else torch.fft.fft2
        fp = fft(pred.float(), norm=self.norm)
        ft = fft(target.float(), norm=self.norm)
        if self.mode == "amplitude":
            return (fp.abs() - ft.abs()).abs().mean()
        return (torch.view_as_real(fp) - torch.view_as_real(ft)).abs().mean()


class MultiScale(nn.Module):
    """Apply ``loss`` at several scales (average-pooled by 2 each), weighted by ``weights``."""

    def __init__(self, loss: nn.Module, weights: Iterable[float] = (1.0, 0.5, 0.25)) -> None:
        super().__init__()
        self.loss = loss
        self.weights = list(weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros((), dtype=torch.float32)
        for i, w in enumerate(self.weights):
            if i:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            total = total + w * self.loss(pred, target)
        return total


class LumaOnly(nn.Module):
    """Apply ``loss`` to the BT.601 luma of both images: the channel the `matlab-y` protocol scores.

    Y = (65.481 R + 128.553 G + 24.966 B) / 255 without MATLAB's +16/255 offset, which cancels in every
    difference; the weights are :mod:`derain.metrics.fullref`'s, so that MSE here is the metric's error up to that
    constant."""

    weights: torch.Tensor  # buffer registered in __init__

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss
        weights = torch.tensor(_Y_WEIGHTS_MILLI / _Y_DENOM_MILLI, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("weights", weights, persistent=False)

    def _luma(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[1] != 3:
            raise DerainError(f"loss option channels: y needs RGB images, got {image.shape[1]} channels")
        return (image.float() * self.weights).sum(dim=1, keepdim=True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(self._luma(pred), self._luma(target))


class MultiOutput(nn.Module):
    """Sum ``loss`` over a network's outputs, each against the target resized (bilinear) to its size.

    DMSR's recipe: its 1/2 and 1/4 outputs are compared with ``F.interpolate(target, scale, "bilinear")``,
    which for these exact factors equals resizing to the output's size. A single tensor is one output.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        # a Tensor is one output; only a list or tuple holds several (a Tensor is a Sequence too)
        outputs: list[torch.Tensor] = list(pred) if isinstance(pred, (list, tuple)) else [cast(torch.Tensor, pred)]
        total = target.new_zeros((), dtype=torch.float32)
        for out in outputs:
            scaled = target
            if out.shape[-2:] != target.shape[-2:]:
                scaled = F.interpolate(target.float(), size=out.shape[-2:], mode="bilinear", align_corners=False)
            total = total + self.loss(out, scaled)
        return total


class SelectorCrossEntropy(nn.Module):
    """Cross-entropy of an all-in-one network's degradation selector against the task of each sample
    (FSDRNet: weight 0.01). It reads the selector's logits and the task labels, not the images."""

    needs_selector = True

    def forward(self, logits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), task)


LOSSES: dict[str, type[nn.Module]] = {
    "l1": L1Loss,
    "mse": MSELoss,
    "psnr": PSNRLoss,
    "charbonnier": CharbonnierLoss,
    "ssim": SSIMLoss,
    "edge": EdgeLoss,
    "fft": FFTLoss,
    "selector": SelectorCrossEntropy,
}


def build_term(name: str, options: dict[str, Any] | None = None) -> nn.Module:
    """One loss by name; option ``channels: y`` (default ``rgb``) wraps it in :class:`LumaOnly`, option
    ``scales: [w0, w1, ...]`` in :class:`MultiScale`, option ``outputs: all`` (default ``first``) in
    :class:`MultiOutput`."""
    options = dict(options or {})
    scales = options.pop("scales", None)
    outputs = options.pop("outputs", "first")
    channels = options.pop("channels", "rgb")
    if outputs not in ("first", "all"):
        raise DerainError(f"loss {name!r}: option outputs must be first or all, not {outputs!r}")
    if channels not in ("rgb", "y"):
        raise DerainError(f"loss {name!r}: option channels must be rgb or y, not {channels!r}")
    if name not in LOSSES:
        raise DerainError(f"unknown loss {name!r}; choose from {', '.join(sorted(LOSSES))}")
    try:
        loss = LOSSES[name](**options)
    except TypeError as exc:
        raise DerainError(f"loss {name!r}: bad options {sorted(options)} ({exc})") from None
    loss = LumaOnly(loss) if channels == "y" else loss
    loss = MultiScale(loss, scales) if scales else loss
    return MultiOutput(loss) if outputs == "all" else loss


class WeightedLoss(nn.Module):
    """Weighted sum of named terms; ``forward`` returns the total and each term's value (for the log)."""

    def __init__(self, terms: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.names = [n for n, _, _ in terms]
        self.weights = [w for _, w, _ in terms]
        self.terms = nn.ModuleList(m for _, _, m in terms)

    @property
    def needs_selector(self) -> bool:
        """True when a term reads a degradation selector's logits (all-in-one training)."""
        return any(getattr(term, "needs_selector", False) for term in self.terms)

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
                selector: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total and per-term values; ``selector`` = (logits, task labels) for the ``selector`` term."""
        total = target.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        first = pred[0] if isinstance(pred, (list, tuple)) else pred
        for name, weight, term in zip(self.names, self.weights, self.terms):
            if getattr(term, "needs_selector", False):
                if selector is None:
                    raise DerainError(f"loss {name!r} needs an all-in-one model with a degradation selector "
                                      "and data.tasks")
                value = term(*selector)
            else:
                value = term(pred if isinstance(term, MultiOutput) else first, target)
            parts[name] = float(value.detach())
            total = total + weight * value
        return total, parts


def build_loss(terms: Iterable[Any]) -> WeightedLoss:
    """From config terms (objects with ``name``, ``weight``, ``options``)."""
    return WeightedLoss([(t.name, t.weight, build_term(t.name, t.options)) for t in terms])
