"""FSDRNet's frequency auxiliary module (FAM), our reconstruction: one per encoder level and the bottleneck.

The FAM looks at the *input* of its level only and turns its Fourier spectrum into guidance for the spatial
(EFMA) blocks of that level. Nothing flows back: the spatial blocks consume the guidance, they never feed
the FAM (frequency -> spatial, one way), except that the next level's FAM sees the next level's input.

    x --LN--> rfft2 --+--> log(1+|F|) --1x1-GELU-1x1--> bounded log-gain --> |F'| --+
                      |                                                           +--> irfft2 --> s
                      +--> phase as (cos, sin) --1x1--> renormalised  ------------+
                      |
                      +--> ring energies: mean log(1+|F|) in ``bands`` radial rings   (B, bands)

    guidance = (map  = sigmoid(conv3x3(s)),                 per pixel, per channel
                gamma, beta = MLP(ring energies))          per channel
    spatial features y  ->  y * (1 + map) * (1 + gamma) + beta

The ring energies are also what the degradation selector reads: noise lifts the outer rings, blur and haze
lower them, rain adds oriented energy at mid frequencies.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from derain.models.restormer import NormalizeChannels


class Guidance(NamedTuple):
    """What the frequency module hands to the spatial blocks of one stage."""

    map: torch.Tensor  # (B, C, H, W) in (0, 1): where and in which channels to emphasise
    gamma: torch.Tensor  # (B, C, 1, 1): per-channel scale from the band energies
    beta: torch.Tensor  # (B, C, 1, 1): per-channel shift from the band energies

    def modulate(self, y: torch.Tensor) -> torch.Tensor:
        """``y * (1 + map) * (1 + gamma) + beta``."""
        return y * (1 + self.map) * (1 + self.gamma) + self.beta


class FrequencyOutput(NamedTuple):
    """A FAM's result: one :class:`Guidance` per consumer width, and the ring energies (B, bands)."""

    guides: tuple[Guidance, ...]
    bands: torch.Tensor


def ring_index(height: int, width: int, bands: int, device: torch.device) -> torch.Tensor:
    """Band number (0 = DC ring ... bands-1 = highest) of every ``rfft2`` coefficient of an H x W map.

    The radius is the normalised frequency ``sqrt(fy^2 + fx^2)`` (cycles per pixel, at most sqrt(0.5)), so
    a ring covers the same part of the spectrum whatever the image size.
    """
    fy = torch.fft.fftfreq(height, device=device)
    fx = torch.fft.rfftfreq(width, device=device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(0.5)
    return (radius * bands).long().clamp_(max=bands - 1)


def ring_energies(log_amplitude: torch.Tensor, width: int, bands: int) -> torch.Tensor:
    """Mean of ``log_amplitude`` (B, C, H, W//2+1, the rfft2 of an H x ``width`` map) over the channels and
    over each ring: (B, bands). A ring with no coefficient (tiny maps) reads 0.
    """
    b, _, h, _ = log_amplitude.shape
    index = ring_index(h, width, bands, log_amplitude.device).reshape(-1)
    one_hot = F.one_hot(index, bands).to(log_amplitude.dtype)  # (H*W', bands)
    counts = one_hot.sum(0).clamp_(min=1)
    return (log_amplitude.mean(1).reshape(b, -1) @ one_hot) / counts


class GuidanceHead(nn.Module):
    """From the FAM's spatial output and ring energies to one :class:`Guidance` of ``width`` channels."""

    def __init__(self, channels: int, width: int, bands: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.map = nn.Conv2d(channels, width, kernel_size, padding=kernel_size // 2)
        self.film = nn.Sequential(nn.Linear(bands, width), nn.GELU(), nn.Linear(width, 2 * width))
        # Small last layer: the modulation starts close to the identity (gamma, beta ~ 0) while every
        # weight still receives a gradient (a zero init would cut the first layer off).
        last = cast(nn.Linear, self.film[-1])  # Sequential indexing is typed as Module
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()

    def forward(self, spatial: torch.Tensor, bands: torch.Tensor) -> Guidance:
        gamma, beta = self.film(bands).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return Guidance(torch.sigmoid(self.map(spatial)), gamma, beta)


class FrequencyAuxiliary(nn.Module):
    """The FAM: amplitude/phase processing of ``rfft2(LN(x))`` plus radial band energies, turned into one
    :class:`Guidance` per entry of ``out_widths`` (e.g. this level's encoder and decoder widths).

    ``downscale`` > 1 (the small model's full-resolution FAM) pixel-unshuffles the spatial output so the
    guidance lands at the resolution of the blocks it guides; its maps then come from a 1x1 conv, which
    already sees a ``downscale`` x ``downscale`` window of full-resolution pixels.
    """

    def __init__(self, channels: int, out_widths: Sequence[int], bands: int = 8, downscale: int = 1) -> None:
        super().__init__()
        self.bands = bands
        # LayerNorm across channels without an affine part: the FAM only needs spectra free of the features'
        # scale (the 1x1 convs after it rescale anyway), and the fused form is 4-5x faster than
        # Restormer's exact-order ChannelLayerNorm on thin full-resolution maps.
        self.norm = NormalizeChannels(channels, subtract_mean=True)
        # Log-amplitude -> a log-gain bounded by tanh to [-1, 1]: the amplitude can be rescaled by e^{+-1}
        # per coefficient, never blown up by an unbounded exp during training.
        self.amplitude = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU(), nn.Conv2d(channels, channels, 1))
        # The phase enters as its unit phasor (cos, sin): no wrap-around at +-pi and no NaN gradient where
        # |F| = 0, which an explicit angle() would have. Initialised to the identity rotation.
        self.phase = nn.Conv2d(2 * channels, 2 * channels, 1)
        assert self.phase.bias is not None  # built with the default bias=True
        with torch.no_grad():
            self.phase.weight.copy_(torch.eye(2 * channels).view(2 * channels, 2 * channels, 1, 1))
            self.phase.bias.zero_()
        self.unshuffle = nn.PixelUnshuffle(downscale) if downscale > 1 else nn.Identity()
        kernel = 3 if downscale == 1 else 1
        self.guides = nn.ModuleList(GuidanceHead(channels * downscale ** 2, w, bands, kernel) for w in out_widths)

    def forward(self, x: torch.Tensor) -> FrequencyOutput:
        # The spectral path runs in float32 even under autocast: amplitudes span orders of magnitude (8 bits
        # of bf16 mantissa blur the log-amplitudes), half-precision FFTs need power-of-two sizes, and casting
        # full-resolution spectra back and forth costs more than the thin 1x1 convs save.
        with torch.autocast(x.device.type, enabled=False):
            spatial, bands = self.spectral(x.float())
        return FrequencyOutput(tuple(head(spatial, bands) for head in self.guides), bands)

    def spectral(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The processed spectrum back in space (unshuffled to the guided resolution) and the ring energies."""
        _, c, h, w = x.shape
        spec = torch.fft.rfft2(self.norm(x).contiguous(), norm="ortho")
        re, im = spec.real.contiguous(), spec.imag.contiguous()
        amp = torch.sqrt(re * re + im * im + 1e-12)
        log_amp = torch.log1p(amp)

        gain = torch.exp(torch.tanh(self.amplitude(log_amp)))
        inv_amp = 1 / amp
        cos_sin = self.phase(torch.cat([re * inv_amp, im * inv_amp], dim=1))
        cos, sin = cos_sin[:, :c], cos_sin[:, c:]
        # New amplitude over the phasor's length: the phasor is renormalised to unit length.
        scale = amp * gain * torch.rsqrt(cos * cos + sin * sin + 1e-12)
        spatial = torch.fft.irfft2(torch.complex(scale * cos, scale * sin), s=(h, w), norm="ortho")
        return self.unshuffle(spatial), ring_energies(log_amp, w, self.bands)
