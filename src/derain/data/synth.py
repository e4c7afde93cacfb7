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

Real photos need more than that (``PRESETS["real"]``, fitted to the real rainy photos:
docs/journal/general-model.md). Each of these is off unless its probability is above zero, and draws its random numbers
after everything above, so the presets that do not use them give exactly the rain they always gave:

- a **near layer** of out-of-focus drops close to the lens: few, wide, long, very soft and faint streaks;
- **illumination**: the streak amplitude follows a smooth random light map (rain is only visible where light
  falls on it), and **night** scenes: the background is darkened (gain and gamma, brighter under the same
  light map: street lights) while the streaks keep their brightness; the target is the dark scene;
- a **depth veil**: rain accumulation, ``t = exp(-beta d)`` over a smooth random depth map ``d`` (far at the
  top, :func:`derain.data.degrade.random_depth`), ``veil`` being the opacity ``1 - t`` at the farthest point;
- sensor **noise** and **JPEG** compression of the rainy image (real photos are JPEGs; the target is not).

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
import torch.nn.functional as F

from derain.data.tensors import image_to_tensor, tensor_to_uint8

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
    # --- realism (all off by default; see the module docstring)
    near_probability: float = 0.0  # fraction of images with a near, out-of-focus layer
    near_density: Range = (0.00005, 0.0003)
    near_length: Range = (40.0, 90.0)
    near_width: Range = (3.0, 7.0)
    near_blur: Range = (1.0, 2.5)
    near_brightness: Range = (0.06, 0.2)
    light_probability: float = 0.0  # fraction of images whose streaks follow a random light map
    light_floor: Range = (0.2, 0.8)  # the light map's darkest value (1: uniform light)
    night_probability: float = 0.0  # fraction of images turned into night scenes (implies a light map)
    night_gain: Range = (0.15, 0.45)
    night_gamma: Range = (1.4, 2.4)
    veil_depth: bool = False  # the veil follows a random depth map (rain accumulation) instead of being uniform
    noise_probability: float = 0.0
    noise: Range = (0.002, 0.02)  # std of Gaussian sensor noise on [0, 1]
    jpeg_probability: float = 0.0
    jpeg_quality: Range = (55.0, 95.0)

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
            (all(0.0 <= q <= 1.0 for q in (self.near_probability, self.light_probability, self.night_probability,
                                           self.noise_probability, self.jpeg_probability)),
             "the *_probability parameters must be in [0, 1]"),
            (self.near_density[0] > 0 and self.near_density[1] < 1, "near_density must lie in (0, 1)"),
            (self.near_length[0] > 0 and self.near_width[0] > 0 and self.near_blur[0] >= 0,
             "near_length and near_width must be positive, near_blur >= 0"),
            (0.0 <= self.light_floor[0] and self.light_floor[1] <= 1.0, "light_floor must be in [0, 1]"),
            (0.0 < self.night_gain[0] and self.night_gain[1] <= 1.0 and self.night_gamma[0] >= 1.0,
             "night_gain must be in (0, 1], night_gamma >= 1"),
            (self.noise[0] >= 0 and 1.0 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100.0,
             "noise must be >= 0 and jpeg_quality in [1, 100]"),
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

    def near_kernel_size(self) -> int:
        """Side of the square support of the near layer's kernels (odd)."""
        sigma = math.hypot(_AA_SIGMA, self.near_blur[1])
        along = self.near_length[1] / 2 + 2.5 * max(sigma, self.taper * self.near_length[1])
        return 2 * math.ceil(math.hypot(along, self.near_width[1] / 2 + 2.5 * sigma)) + 1

    def changes_scene(self) -> bool:
        """Whether the target differs from the clean input (night scenes darken it)."""
        return self.night_probability > 0


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
    # Real photos (fitted to the 117 real rainy photos outside the held-out 30: docs/journal/general-model.md,
    # measured with scripts/rain_realism.py): from light to very dense rain in up to four depth layers whose angles
    # differ, thin far streaks to soft near drops, rain accumulation (a depth veil) on most heavy images, light maps,
    # night scenes, sensor noise and JPEG.
    "real": RainConfig(layers=4, density=(0.0001, 0.003), length=(5.0, 30.0), width=(0.9, 2.5),
                       angle=(-30.0, 30.0), angle_jitter=12.0, brightness=(0.15, 0.6), brightness_spread=0.7,
                       blur=(0.0, 0.8), depth_scale=0.7, depth_gradient=(0.0, 0.5), veil=(0.1, 0.6),
                       veil_probability=0.8, airlight=(0.6, 1.0), veil_depth=True, near_probability=0.3,
                       light_probability=0.5, night_probability=0.12, noise_probability=0.4, noise=(0.002, 0.015),
                       jpeg_probability=0.6, jpeg_quality=(60.0, 95.0)),
    # The dense tail of real rain, which `real` draws rarely: a downpour of short drops and splashes, many per
    # patch, bright against dark scenes, with near out-of-focus drops on half the images (issue 36: dense fine
    # rain was what the first general model left on real photos).
    "dense": RainConfig(layers=3, density=(0.002, 0.008), length=(3.0, 16.0), width=(0.8, 2.2),
                        angle=(-30.0, 30.0), angle_jitter=15.0, brightness=(0.2, 0.6), brightness_spread=0.8,
                        blur=(0.0, 0.8), depth_scale=0.6, depth_gradient=(0.0, 0.4), veil=(0.05, 0.4),
                        veil_probability=0.6, airlight=(0.6, 1.0), veil_depth=True, near_probability=0.5,
                        near_density=(0.0002, 0.001), near_length=(10.0, 40.0), near_width=(2.5, 6.0),
                        light_probability=0.5, night_probability=0.12, noise_probability=0.4, noise=(0.002, 0.015),
                        jpeg_probability=0.6, jpeg_quality=(60.0, 95.0)),
}


def preset(name: str) -> RainConfig:
    """The named preset (``light``, ``heavy``, ``real`` or ``dense``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown rain preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass
class Rain:
    """One batch of sampled rain, before compositing."""

    streaks: torch.Tensor  # B x 1 x H x W in [0, 1]
    veil: torch.Tensor  # B haze opacities (0: no veil)
    airlight: torch.Tensor  # B atmospheric light values
    # Realism (None where the config does not use it):
    transmission: torch.Tensor | None = None  # B x 1 x H x W depth veil transmission (replaces the uniform veil)
    night: torch.Tensor | None = None  # B x 1 x H x W multiplier of the scene's light (1: day) ...
    night_gamma: torch.Tensor | None = None  # ... after this gamma (B; 1: day)
    noise: torch.Tensor | None = None  # B x 3 x H x W sensor noise added to the rainy image
    jpeg_quality: torch.Tensor | None = None  # B qualities of the rainy image's JPEG round trip (0: none)


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
    rain = Rain(streaks.contiguous(), veil, airlight)
    _add_realism(rain, config, generator, wrap)
    return rain


def _smooth_field(batch: int, height: int, width: int, grid: int, generator: torch.Generator) -> torch.Tensor:
    """B x 1 x H x W smooth random field in [0, 1]: a grid x grid random grid upsampled bicubically."""
    coarse = torch.rand(batch, 1, grid, grid, generator=generator)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    lo, hi = field.amin(dim=(2, 3), keepdim=True), field.amax(dim=(2, 3), keepdim=True)
    return (field - lo) / (hi - lo).clamp_min(1e-6)


def _near_layer(batch: int, height: int, width: int, config: RainConfig, generator: torch.Generator,
                wrap: bool) -> torch.Tensor:
    """B x 1 x H x W streaks of out-of-focus drops near the lens (every image; the caller masks)."""
    u = torch.rand(batch, 6, generator=generator)
    angle = _uniform(u[:, 0], config.angle)
    kernels = line_kernels(_uniform(u[:, 1], config.near_length), _uniform(u[:, 2], config.near_width), angle,
                           _uniform(u[:, 3], config.near_blur), config.near_kernel_size(), config.taper)
    kernels = kernels * _uniform(u[:, 4], config.near_brightness)[:, None, None]
    density = _log_uniform(u[:, 5], config.near_density)
    k = config.near_kernel_size()
    if wrap:
        grid_h, grid_w = _fft_size(max(height, k)), _fft_size(max(width, k))
        fft_h, fft_w = grid_h, grid_w
    else:
        grid_h, grid_w = height + k - 1, width + k - 1
        fft_h, fft_w = _fft_size(grid_h), _fft_size(grid_w)
    noise = torch.rand(batch, grid_h, grid_w, generator=generator)
    p = density[:, None, None]
    seeds = torch.where(noise < p, 0.5 + 0.5 * (noise / p), torch.zeros(()))
    full = torch.fft.irfft2(torch.fft.rfft2(seeds, s=(fft_h, fft_w)) * torch.fft.rfft2(kernels, s=(fft_h, fft_w)),
                            s=(fft_h, fft_w))
    top = 0 if wrap else k - 1
    return full[:, None, top:top + height, top:top + width]


def _add_realism(rain: Rain, config: RainConfig, generator: torch.Generator, wrap: bool) -> None:
    """Draw and attach the realism options of ``config`` (in place). Draws nothing when none is on.

    Every draw happens whatever the values drawn, so the generator advances the same way for every image.
    """
    batch, _, height, width = rain.streaks.shape
    u = torch.rand(batch, 8, generator=generator) if _uses_realism(config) else None
    if u is None:
        return
    streaks = rain.streaks
    if config.near_probability > 0:
        near = _near_layer(batch, height, width, config, generator, wrap)
        on = (u[:, 0] < config.near_probability).float()[:, None, None, None]
        streaks = streaks + on * near
    if config.light_probability > 0 or config.night_probability > 0:
        night = u[:, 1] < config.night_probability
        lit = night | (u[:, 2] < config.light_probability)
        field = _smooth_field(batch, height, width, 4, generator)
        # Night light is peaked (lamps), day light broad (clouds, shade).
        shape = torch.where(night, torch.full((batch,), 3.0), torch.ones(batch))[:, None, None, None]
        floor = _uniform(u[:, 3], config.light_floor) * torch.where(night, 0.25, 1.0)
        light = floor[:, None, None, None] + (1 - floor[:, None, None, None]) * field ** shape
        streaks = streaks * torch.where(lit[:, None, None, None], light, torch.ones(()))
        gain = _uniform(u[:, 4], config.night_gain)[:, None, None, None]
        rain.night = torch.where(night[:, None, None, None], gain * (0.35 + 0.65 * light), torch.ones(()))
        rain.night_gamma = torch.where(night, _uniform(u[:, 5], config.night_gamma), torch.ones(()))
    if config.veil_depth:
        from derain.data.degrade import HazeConfig, random_depth

        depth = random_depth(batch, height, width, HazeConfig(near=(0.0, 0.5)), generator)
        rain.transmission = (1.0 - rain.veil)[:, None, None, None].clamp_min(1e-3) ** depth
    if config.noise_probability > 0:
        sigma = torch.where(u[:, 6] < config.noise_probability, _uniform(torch.rand(batch, generator=generator),
                                                                       config.noise), torch.zeros(()))
        rain.noise = sigma[:, None, None, None] * torch.randn(batch, 3, height, width, generator=generator)
    if config.jpeg_probability > 0:
        quality = torch.round(_uniform(torch.rand(batch, generator=generator), config.jpeg_quality))
        rain.jpeg_quality = torch.where(u[:, 7] < config.jpeg_probability, quality, torch.zeros(()))
    rain.streaks = streaks.clamp_(0.0, 1.0).contiguous()


def _uses_realism(config: RainConfig) -> bool:
    return (config.near_probability > 0 or config.light_probability > 0 or config.night_probability > 0
            or config.veil_depth or config.noise_probability > 0 or config.jpeg_probability > 0)


def _jpeg_round_trip(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (B x 3 x H x W in [0, 1]) through JPEG at its quality (0: left alone)."""
    import cv2
    import numpy as np

    out = x.clone()
    for i, q in enumerate(quality.tolist()):
        if q <= 0:
            continue
        bgr = np.ascontiguousarray(tensor_to_uint8(x[i], "half_up")[..., ::-1])
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if ok:
            back = cv2.imdecode(data, cv2.IMREAD_COLOR)
            assert back is not None  # the bytes imencode just wrote
            decoded = back[..., ::-1].astype(np.float32) / 255.0
            out[i] = image_to_tensor(decoded)[0]
    return out


def scene(clean: torch.Tensor, rain: Rain) -> torch.Tensor:
    """The rain-free target of ``clean`` under ``rain``: ``clean`` itself, or its night version."""
    if rain.night is None or rain.night_gamma is None:
        return clean
    x = clean.float().clamp(0.0, 1.0) ** rain.night_gamma.to(clean.device)[:, None, None, None]
    return (x * rain.night.to(clean.device)).clamp_(0.0, 1.0).to(clean.dtype)


def composite(clean: torch.Tensor, rain: Rain, mode: str = "additive") -> torch.Tensor:
    """``clean`` (B x C x H x W in [0, 1]) with ``rain`` added, then veiled; same shape, dtype and device.

    With realism options the rain falls on :func:`scene` (``clean`` at night) and noise and JPEG come last.
    """
    device = clean.device
    streaks = rain.streaks.to(device, torch.float32)
    x = scene(clean, rain).float()
    x = (x + streaks).clamp_(0.0, 1.0) if mode == "additive" else 1.0 - (1.0 - x) * (1.0 - streaks)
    airlight = rain.airlight.to(device)[:, None, None, None]
    if rain.transmission is not None:
        t = rain.transmission.to(device)
        x = x * t + airlight * (1.0 - t)
    else:
        a = rain.veil.to(device)[:, None, None, None]
        if bool((a > 0).any()):
            x = x * (1.0 - a) + a * airlight
    if rain.noise is not None:
        x = x + rain.noise.to(device)
    x = x.clamp_(0.0, 1.0)
    if rain.jpeg_quality is not None and bool((rain.jpeg_quality > 0).any()):
        x = _jpeg_round_trip(x.cpu(), rain.jpeg_quality).to(device)
    return x.to(clean.dtype)


def synthesize(clean: torch.Tensor, config: RainConfig, generator: torch.Generator,
               wrap: bool = True) -> torch.Tensor:
    """Rainy versions of ``clean`` (B x 3 x H x W floats in [0, 1]); the same generator state gives the same rain.

    ``wrap``: see :func:`sample_rain` (keep the default for training patches, ``False`` for whole photos).
    """
    return synthesize_pair(clean, config, generator, wrap)[0]


def synthesize_pair(clean: torch.Tensor, config: RainConfig, generator: torch.Generator,
                    wrap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rainy, target)`` for ``clean``: the target is ``clean`` unless the config makes night scenes."""
    if clean.ndim != 4:
        raise ValueError(f"synthesize expects B x C x H x W images, got shape {tuple(clean.shape)}")
    batch, _, height, width = clean.shape
    rain = sample_rain(batch, height, width, config, generator, wrap)
    return composite(clean, rain, config.mode), scene(clean, rain)


def add_rain(clean: torch.Tensor, generator: torch.Generator, preset_name: str = "light",
             wrap: bool = True) -> torch.Tensor:
    """Synthetic rain of preset ``preset_name`` (``light`` is calibrated on RainTrainL) on a clean batch, in
    [0, 1]: the rain degradation of the all-in-one tasks (:mod:`derain.data.degrade` holds the others)."""
    return synthesize(clean, preset(preset_name), generator, wrap=wrap).float().clamp_(0.0, 1.0)
