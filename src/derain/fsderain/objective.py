"""FSDerain's training objective (paired): 1.0 L1 + 0.5 SSIM + 0.1 perceptual + 0.1 contrastive + 0.05 FFT.

- spatial terms: L1 and SSIM between output and clean image, perceptual L1 between their VGG16 features
  (up to the third max-pool, frozen);
- frequency terms: the FFT loss is L1 between the full orthonormal amplitude spectra of output and clean
  image; the contrastive loss compares FrequencyEncoder embeddings of the high-passed amplitude spectra of
  the output (anchor), the clean image (positive) and the rainy input (negative), see
  :mod:`derain.fsderain.contrastive`.

Every weight is configurable and a weight of 0 switches its term off (nothing is built for it: the VGG
weights are only needed when ``perceptual`` > 0). Two switches reproduce the original code's quirks
(both on under ``faithful: true``): ``ssim_grad: false`` computes the SSIM term as scikit-image's SSIM on
detached copies, so it only shifts the loss value and trains nothing; ``mask_shift: false`` applies the
high-pass mask to the unshifted spectrum (see :mod:`derain.fsderain.frequency`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from derain.errors import DerainError
from derain.fsderain.config import LossConfig
from derain.fsderain.contrastive import contrastive_loss
from derain.fsderain.encoder import FrequencyEncoder
from derain.fsderain.frequency import high_pass_amplitude
from derain.losses import FFTLoss, L1Loss, ssim

if TYPE_CHECKING:
    from derain.losses.vgg import Perceptual


def ssim_without_gradient(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The original code's SSIM term: 1 - mean over the batch of scikit-image's default SSIM (7x7 uniform
    window, data range 1, averaged over channels) of clamped, detached copies. A constant: no gradient."""
    from derain.metrics.fullref import ssim_skimage

    p = pred.detach().float().clamp(0, 1).cpu().numpy()
    t = target.detach().float().clamp(0, 1).cpu().numpy()
    values = [np.mean([ssim_skimage(p[b, c], t[b, c], data_range=1.0) for c in range(p.shape[1])])
              for b in range(p.shape[0])]
    return torch.tensor(1.0 - float(np.mean(values)), dtype=torch.float32, device=pred.device)


def build_perceptual(config: LossConfig) -> "Perceptual":
    """The perceptual term with ImageNet VGG16 weights (``config.vgg_weights`` or the torch hub cache)."""
    from derain.losses.vgg import Perceptual, load_vgg16_trunk

    return Perceptual(load_vgg16_trunk(config.vgg_weights, normalize=config.vgg_normalize))


class FSDerainObjective(nn.Module):
    """``forward(output, clean, rainy) -> (total, {term: value})`` for paired fine-tuning.

    Holds the FrequencyEncoder (trainable: its parameters are in :meth:`trainable_parameters`) and the
    frozen VGG trunk. ``perceptual`` may be passed in (tests, or to share one VGG); otherwise it is loaded
    when its weight is positive.
    """

    def __init__(self, config: LossConfig, perceptual: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        for name in ("l1", "ssim", "perceptual", "contrastive", "fft", "low_freq"):
            if getattr(config, name) < 0:
                raise DerainError(f"config key 'loss.{name}': a weight must be >= 0, not {getattr(config, name)}")
        if config.low_freq > 0:
            raise DerainError("config key 'loss.low_freq': the low-frequency consistency term belongs to the "
                              "unpaired mode (--unpaired); set it to 0 for paired fine-tuning")
        self.l1 = L1Loss()
        # Full (two-sided) orthonormal amplitude spectra, as FSDerain compares them.
        self.fft = FFTLoss(mode="amplitude", norm="ortho", onesided=False)
        self.perceptual = None
        if config.perceptual > 0:
            self.perceptual = perceptual if perceptual is not None else build_perceptual(config)
        self.encoder = FrequencyEncoder() if config.contrastive > 0 else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The loss's own trainable parameters (the FrequencyEncoder's), to optimise with the network's."""
        return [p for p in self.encoder.parameters()] if self.encoder is not None else []

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """FrequencyEncoder embedding of the high-passed amplitude spectrum of ``images``."""
        assert self.encoder is not None
        return self.encoder(high_pass_amplitude(images, self.config.mask_radius, shift=self.config.mask_shift))

    def forward(self, output: torch.Tensor, clean: torch.Tensor,
                rainy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        output, clean, rainy = output.float(), clean.float(), rainy.float()
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if cfg.l1 > 0:
            terms["l1"] = (cfg.l1, self.l1(output, clean))
        if cfg.ssim > 0:
            value = 1.0 - ssim(output, clean) if cfg.ssim_grad else ssim_without_gradient(output, clean)
            terms["ssim"] = (cfg.ssim, value)
        if self.perceptual is not None:
            terms["perceptual"] = (cfg.perceptual, self.perceptual(output, clean))
        if self.encoder is not None:
            value = contrastive_loss(self.embed(output), self.embed(clean), self.embed(rainy), margin=cfg.margin,
                                     temperature=cfg.temperature, triplet_weight=cfg.triplet_weight)
            terms["contrastive"] = (cfg.contrastive, value)
        if cfg.fft > 0:
            terms["fft"] = (cfg.fft, self.fft(output, clean))
        return weighted_sum(terms, output)


def weighted_sum(terms: dict[str, tuple[float, torch.Tensor]],
                 like: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """(sum of weight x value, {name: unweighted value}) of ``terms``; zero when there are none."""
    if not terms:
        raise DerainError("every loss term is switched off (all weights 0): nothing to fine-tune for")
    total = like.new_zeros((), dtype=torch.float32)
    parts: dict[str, Any] = {}
    for name, (weight, value) in terms.items():
        total = total + weight * value
        parts[name] = float(value.detach())
    return total, parts


__all__ = ["FSDerainObjective", "build_perceptual", "ssim_without_gradient", "weighted_sum"]
