"""Unpaired fine-tuning on real rain without ground truth. OUR EXTENSION, not part of FSDerain's code.

FSDerain's training script only reads paired data; its "unpaired" results are inference on unpaired
photos (see docs/METHODS.md section 3.3). This module is our design for actually training on rainy photos that
have no clean counterpart.

Design
------
A batch holds B rainy crops x (real photos, the CLI's DATA) and B clean crops c drawn independently from a
pool of clean images (``data.clean_pool``, e.g. CBSD68 + Kodak24); c and x show different scenes. With
y = net(x) and E the FrequencyEncoder applied to the high-passed amplitude spectrum (the same
:func:`~derain.fsderain.frequency.high_pass_amplitude` as the paired mode):

- **contrastive** (weight ``loss.contrastive``, default 0.1): anchors a_i = E(y_i), positives p_j = E(c_j),
  negatives n_k = E(x_k). Because no clean image belongs to a particular output, the positive is the
  *clean class*, not one image:

  * a multi-positive InfoNCE (:func:`~derain.fsderain.contrastive.clean_class_nce`): each anchor against all
    B clean embeddings (positives) and all B rainy embeddings (negatives), temperature ``loss.temperature``;
  * ``loss.triplet_weight`` x triplet(a_i, mean_j p_j, n_i, ``loss.margin``): closer to the clean prototype
    than to its own rainy input. The rainy input being a negative penalises the identity mapping.

- **low-frequency consistency** (weight ``loss.low_freq``, default 1.0): L1 between the centred spectra
  (real and imaginary parts, so phase as well as amplitude) of y and x inside the disc of radius
  ``loss.mask_radius`` x H, i.e. the frequencies the high-pass removes. Rain streaks are thin and live mostly
  above that radius; colours, shading and layout live below it. This term keeps the output the same
  picture as its input, so the contrastive term can only change the high frequencies, where the rain is.

- **perceptual content consistency** (weight ``loss.perceptual``, default 0, optional): L1 between the VGG16
  pool3 features of y and of x, i.e. the paired mode's perceptual term with the input in place of the
  missing ground truth. Off by default because it needs ImageNet VGG16 weights (see
  :mod:`derain.losses.vgg`) and because it also pulls towards the rain the input contains; a small weight
  can keep textures that the low-frequency term does not constrain.

The L1, SSIM and FFT terms need ground truth and must be 0 in this mode.

- **the encoder is a critic, trained on its own term** (``critic`` in the log, same weight): clean anchors
  (half of the clean crops) against the other clean crops as positives and the rainy inputs as negatives,
  i.e. it learns what separates clean spectra from rainy ones. It reads log1p(H x amplitude) of the
  high-passed spectrum rather than the raw amplitude (see ``embed``). The network's contrastive term reads the
  encoder with its weights detached, so only the network moves towards the clean class. Measured
  2026-12-01: when the encoder was instead trained by the network's own term (as in the paired method), it
  collapsed within 10 steps to identical embeddings for every image, where the term is the constant
  ln 2 + 0.1 x 0.3 = 0.7233 and gives the network no signal: an output that starts as its rainy input
  cannot be pulled away from it by an encoder that is free to stop telling them apart.

Without a paired validation set there is no PSNR to drive a plateau schedule, so the unpaired defaults use a
constant learning rate; judge runs with NIQE on held-out photos (``derain eval --no-reference``) and by looking
at them.
"""
from __future__ import annotations

import torch
from torch import nn

from derain.errors import DerainError
from derain.fsderain.config import LossConfig
from derain.fsderain.contrastive import clean_class_nce, triplet
from derain.fsderain.encoder import FrequencyEncoder
from derain.fsderain.frequency import high_pass_amplitude, low_pass_spectrum
from derain.fsderain.objective import build_perceptual, weighted_sum


class UnpairedObjective(nn.Module):
    """``forward(output, rainy, clean) -> (total, {term: value})``; ``clean`` are unrelated clean crops."""

    def __init__(self, config: LossConfig, perceptual: nn.Module | None = None) -> None:
        super().__init__()
        for term in ("l1", "ssim", "fft"):
            if getattr(config, term) != 0:
                raise DerainError(f"config key 'loss.{term}': unpaired mode has no ground truth; set it to 0")
        if min(config.contrastive, config.low_freq, config.perceptual) < 0:
            raise DerainError("config: loss.contrastive, loss.low_freq and loss.perceptual must be >= 0")
        self.config = config
        self.perceptual = None
        if config.perceptual > 0:
            self.perceptual = perceptual if perceptual is not None else build_perceptual(config)
        self.encoder = FrequencyEncoder() if config.contrastive > 0 else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The FrequencyEncoder's parameters (trained jointly with the network)."""
        return list(self.encoder.parameters()) if self.encoder is not None else []

    def embed(self, images: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """FrequencyEncoder embeddings of ``images``; ``frozen``: no gradient reaches the encoder's weights."""
        assert self.encoder is not None
        # Log-compressed (x H, so that a crop's size does not change the scale): the raw orthonormal amplitudes
        # are ~1e-2 except a few, and on them the encoder's embeddings start almost identical and did not
        # separate clean from rainy in 60 critic steps; on log1p(H x amplitude) the critic loss fell from
        # ln 3 = 1.099 to 0.889 in those steps (measured 2026-12-01, 128x128 crops, batch 8, Adam 2e-4).
        amp = high_pass_amplitude(images, self.config.mask_radius, shift=self.config.mask_shift)
        spectrum = torch.log1p(amp * images.shape[-2])
        if not frozen:
            return self.encoder(spectrum)
        weights = {name: value.detach() for name, value in self.encoder.named_parameters()}
        return torch.func.functional_call(self.encoder, weights, (spectrum,))

    def forward(self, output: torch.Tensor, rainy: torch.Tensor,
                clean: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        output, rainy = output.float(), rainy.float()
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if self.encoder is not None:
            if clean is None:
                raise DerainError("the unpaired contrastive term needs clean images (data.clean_pool)")
            p, n = self.embed(clean.float()), self.embed(rainy)
            # Critic: clean anchors (first half) near the other clean crops, far from the rainy inputs.
            # (A last, partial batch of one image has no second clean crop: the critic skips that step.)
            half = clean.shape[0] // 2
            if half > 0:
                terms["critic"] = (cfg.contrastive, clean_class_nce(p[:half], p[half:], n, cfg.temperature))
            # Network: its outputs, seen by the encoder with detached weights, pulled into the clean class.
            a, p, n = self.embed(output, frozen=True), p.detach(), n.detach()
            prototype = p.mean(dim=0, keepdim=True).expand_as(a)
            value = (cfg.triplet_weight * triplet(a, prototype, n, cfg.margin)
                     + clean_class_nce(a, p, n, cfg.temperature))
            terms["contrastive"] = (cfg.contrastive, value)
        if cfg.low_freq > 0:
            diff = low_pass_spectrum(output, cfg.mask_radius) - low_pass_spectrum(rainy, cfg.mask_radius)
            terms["low_freq"] = (cfg.low_freq, diff.abs().mean())
        if self.perceptual is not None:
            terms["perceptual"] = (cfg.perceptual, self.perceptual(output, rainy))
        return weighted_sum(terms, output)
