"""Synthetic rain: streak layers added to clean images, vectorised in torch and reproducible from a generator.

Each image gets ``layers`` streak layers. A layer is sparse noise (a streak seed with probability
``density`` per pixel, each seed with its own amplitude) convolved with an anti-aliased line kernel of the
layer's length, width, angle and softness: the motion blur of a falling drop. Layers are placed at random
depths; farther layers have shorter, thinner, dimmer and denser streaks, and each has its own small angle
deviation, which stands in for per-streak jitter. All layers of a batch are convolved at once with one FFT
(they are summed in the frequency domain, so only one inverse transform per image is needed).

The streak map is grey (Rain100L's residual rainy - clean has the same value in R, G and B) and is composited
additively (``clean + streaks``, clipped: what Rain100L does) or with a screen blend, then an optional veil
``rainy * (1 - a) + a * A`` with atmospheric light ``A`` imitates the haze of heavy rain.

Every parameter is a range sampled per image from the caller's ``torch.Generator`` (densities log-uniformly,
the rest uniformly), so the same generator state always gives the same rain. The noise is drawn on a grid
larger than the image by the kernel size, so streaks enter from outside the frame and the borders are as
rainy as the centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch

Range = tuple[float, float]
_AA_SIGMA = 0.4  # Gaussian for the 1-pixel box of anti-aliasing: wider than its std 0.29, so thin slanted
# streaks stay continuous lines instead of aliasing into dotted ones


@dataclass(frozen=True)
class RainConfig:
    """Ranges of every rain parameter; each image draws its own values from them.

    Lengths and widths are in pixels of the image, angles in degrees from vertical (positive: the streak's
    lower end lies to the right, ``\\``, rain blown to the right). ``density`` is the probability of a streak
    seed per pixel in the nearest layer; ``brightness`` the value a lone streak adds at its centre.
    """

    layers: int = 2
    density: Range = (0.0002, 0.0013)
    length: Range = (24.0, 52.0)
    width: Range = (1.2, 2.4)
    angle: Range = (-25.0, 25.0)
    angle_jitter: float = 3.0  # each layer deviates from the image's angle by up to this much
    brightness: Range = (0.28, 0.7)
    brightness_spread: float = 0.6  # per-streak amplitude in [1 - spread, 1] x brightness
    blur: Range = (0.0, 0.5)  # extra Gaussian softness across the streak (pixels)
    taper: float = 0.1  # streak ends fade over this fraction of the length
    depth_scale: float = 0.5  # the farthest layer's streaks are (1 - depth_scale) times the size of the nearest
    depth_gradient: Range = (0.0, 0.3)  # streaks dimmer towards the top of the image by up to this fraction
    veil: Range = (0.0, 0.0)  # haze opacity a
    veil_probability: float = 0.0  # fraction of images that get a veil at all
    airlight: Range = (0.8, 1.0)  # atmospheric light A of the veil (grey)
    mode: Literal["additive", "screen"] = "additive"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"rain parameter {f.name} must be a (low, high) range with low <= high, got {value}")
        checks = [
            (self.layers >= 1, "layers must be >= 1"),
            (0.0 < self.density[0] and self.density[1] < 1.0, "density must lie in (0, 1)"),
            (self.length[0] > 0 and self.width[0] > 0, "length and width must be positive"),
            (0.0 <= self.brightness_spread <= 1.0, "brightness_spread must be in [0, 1]"),
            (self.blur[0] >= 0 and self.taper >= 0 and self.angle_jitter >= 0, "blur, taper, angle_jitter >= 0"),
            (0.0 <= self.depth_scale < 1.0, "depth_scale must be in [0, 1)"),
            (0.0 <= self.veil[0] and self.veil[1] <= 1.0, "veil must be in [0, 1]"),
            (0.0 <= self.veil_probability <= 1.0, "veil_probability must be in [0, 1]"),
            (self.mode in ("additive", "screen"), f"mode must be 'additive' or 'screen', got {self.mode!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def kernel_size(self) -> int:
        """Side of the square support that holds every streak kernel this config can draw (odd)."""
        sigma = math.hypot(_AA_SIGMA, self.blur[1])
        along = self.length[1] / 2 + 2.5 * max(sigma, self.taper * self.length[1])
        across = self.width[1] / 2 + 2.5 * sigma
        return 2 * math.ceil(math.hypot(along, across)) + 1


PRESETS: dict[str, RainConfig] = {
    # Rain100L-like, calibrated on the residual rainy - clean of RainTrainL (its 200 training pairs): grey,
    # never negative; per image one direction within about +-30 degrees of vertical (median |angle| 12),
    # streaks 20-40 px long and 2-4 px wide (autocorrelation half-widths); mean 0.022, 99th percentile 0.27,
    # 7 % of pixels above 0.1. `python benchmarks/synth_preview.py` prints real against synthetic.
    "light": RainConfig(),
    # Rain100H-like (not calibrated: no Rain100H here): dense, wider and brighter streaks, more layers, often
    # a veil of haze.
    "heavy": RainConfig(layers=3, density=(0.0005, 0.002), length=(25.0, 60.0), width=(1.5, 3.5),
                        angle=(-35.0, 35.0), angle_jitter=5.0, brightness=(0.4, 0.8), blur=(0.3, 1.0),
                        veil=(0.05, 0.3), veil_probability=0.7, airlight=(0.7, 1.0)),
}


def preset(name: str) -> RainConfig:
    """The named preset (``light`` or ``heavy``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown rain preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass
class Rain:
    """One batch of sampled rain, before compositing."""

    streaks: torch.Tensor  # B x 1 x H x W in [0, 1]
    veil: torch.Tensor  # B haze opacities (0: no veil)
    airlight: torch.Tensor  # B atmospheric light values


def _uniform(u: torch.Tensor, bounds: Range) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _log_uniform(u: torch.Tensor, bounds: Range) -> torch.Tensor:
    return torch.exp(_uniform(u, (math.log(bounds[0]), math.log(bounds[1]))))


def _box_profile(t: torch.Tensor, half: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A box of half-width ``half`` blurred by a Gaussian of std ``sigma``, evaluated at ``t`` (peak <= 1)."""
    scale = 1.0 / (sigma * math.sqrt(2.0))
    return 0.5 * (torch.erf((t + half) * scale) - torch.erf((t - half) * scale))


def line_kernels(length: torch.Tensor, width: torch.Tensor, angle: torch.Tensor, blur: torch.Tensor,
                 size: int, taper: float = 0.1) -> torch.Tensor:
    """Anti-aliased line kernels, one per element of the (equally shaped) parameter tensors: ... x size x size.

    Values are pixel coverage (about 1 on the axis of a line wider than a pixel, less for thinner ones), not
    normalised to sum 1, so a lone streak's brightness does not depend on its length; ends fade over
    ``taper * length``. ``angle`` is in degrees from vertical, positive for ``\\``.
    """
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = r[:, None], r[None, :]
    theta = torch.deg2rad(angle)[..., None, None]
    sin, cos = torch.sin(theta), torch.cos(theta)
    along = x * sin + y * cos
    across = x * cos - y * sin
    sigma = torch.sqrt(_AA_SIGMA ** 2 + blur ** 2)[..., None, None]
    sigma_along = torch.maximum(sigma, taper * length[..., None, None])
    return (_box_profile(along, length[..., None, None] / 2, sigma_along)
            * _box_profile(across, width[..., None, None] / 2, sigma))


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (sizes the FFT handles fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def sample_rain(batch: int, height: int, width: int, config: RainConfig, generator: torch.Generator,
                wrap: bool = True) -> Rain:
    """Rain for ``batch`` images of ``height`` x ``width``, drawn from ``generator`` (float32, CPU).

    ``wrap``: convolve a periodic noise field (fast: no padding, power-of-two sizes for the usual patches).
    The rain is statistically the same, but a streak that leaves the image at one border may continue at
    the opposite one; ``wrap=False`` pads the noise by a kernel size instead (whole photos, slower).
    """
    layers = config.layers
    # All per-image / per-layer draws first, in one call, so the order of draws never depends on the values.
    u = torch.rand(batch, layers, 8, generator=generator)
    depth = (torch.arange(layers, dtype=torch.float32) + u[..., 0]) / layers  # stratified: layers spread out
    depth[:, 0] = 0.0  # the nearest layer is always at full size
    size = 1.0 - config.depth_scale * depth
    angle = _uniform(u[:, :1, 1], config.angle) + config.angle_jitter * (2 * u[..., 2] - 1)
    density = _log_uniform(u[:, :1, 3], config.density) / size ** 2  # smaller streaks farther: more of them
    length = _uniform(u[:, :1, 4], config.length) * size
    streak_width = _uniform(u[..., 5], config.width) * size
    brightness = _uniform(u[:, :1, 6], config.brightness) * (1.0 - 0.5 * config.depth_scale * depth)
    blur = _uniform(u[..., 7], config.blur)
    v = torch.rand(batch, 4, generator=generator)
    veil = torch.where(v[:, 0] < config.veil_probability, _uniform(v[:, 1], config.veil), torch.zeros(()))
    airlight = _uniform(v[:, 2], config.airlight)
    gradient = _uniform(v[:, 3], config.depth_gradient)

    k = config.kernel_size()
    if wrap:  # a periodic noise field (a torus) just big enough for the image and the kernel
        grid_h, grid_w = _fft_size(max(height, k)), _fft_size(max(width, k))
        fft_h, fft_w = grid_h, grid_w
    else:  # noise beyond the borders by a kernel size, and a linear convolution
        grid_h, grid_w = height + k - 1, width + k - 1
        fft_h, fft_w = _fft_size(grid_h), _fft_size(grid_w)
    noise = torch.rand(batch, layers, grid_h, grid_w, generator=generator)
    # One draw gives both the seed (u < p) and its amplitude (u / p is uniform in [0, 1) given a seed).
    p = density[..., None, None]
    spread = config.brightness_spread
    noise = torch.where(noise < p, (1.0 - spread) + spread * (noise / p), torch.zeros(()))

    kernels = line_kernels(length, streak_width, angle, blur, k, config.taper) * brightness[..., None, None]
    spectrum = (torch.fft.rfft2(noise, s=(fft_h, fft_w)) * torch.fft.rfft2(kernels, s=(fft_h, fft_w))).sum(1)
    full = torch.fft.irfft2(spectrum, s=(fft_h, fft_w))
    top = 0 if wrap else k - 1  # without wrap: the 'valid' part of the linear convolution
    streaks = full[:, None, top:top + height, top:top + width]
    rows = torch.linspace(1.0, 0.0, height)[:, None]  # 1 at the top (far away), 0 at the bottom
    streaks = (streaks * (1.0 - gradient[:, None, None, None] * rows)).clamp_(0.0, 1.0)
    return Rain(streaks.contiguous(), veil, airlight)


def composite(clean: torch.Tensor, rain: Rain, mode: str = "additive") -> torch.Tensor:
    """``clean`` (B x C x H x W in [0, 1]) with ``rain`` added, then veiled; same shape, dtype and device."""
    streaks = rain.streaks.to(clean.device, torch.float32)
    x = clean.float()
    x = (x + streaks).clamp_(0.0, 1.0) if mode == "additive" else 1.0 - (1.0 - x) * (1.0 - streaks)
    a = rain.veil.to(clean.device)[:, None, None, None]
    if bool((a > 0).any()):
        x = x * (1.0 - a) + a * rain.airlight.to(clean.device)[:, None, None, None]
    return x.clamp_(0.0, 1.0).to(clean.dtype)


def synthesize(clean: torch.Tensor, config: RainConfig, generator: torch.Generator,
               wrap: bool = True) -> torch.Tensor:
    """Rainy versions of ``clean`` (B x 3 x H x W floats in [0, 1]); the same generator state gives the same rain.

    ``wrap``: see :func:`sample_rain` (keep the default for training patches, ``False`` for whole photos).
    """
    if clean.ndim != 4:
        raise ValueError(f"synthesize expects B x C x H x W images, got shape {tuple(clean.shape)}")
    batch, _, height, width = clean.shape
    return composite(clean, sample_rain(batch, height, width, config, generator, wrap), config.mode)

