"""Synthetic degradations for all-in-one restoration: Gaussian noise, haze, motion blur and low light.

Every function takes clean images as a B x 3 x H x W float tensor in [0, 1] and a ``torch.Generator``, draws
all its random numbers from that generator (so the same generator state gives the same degradation), works
on the whole batch at once, and returns images in [0, 1] of the same shape. Parameters are drawn per image
from ranges held in small frozen dataclasses (like :class:`derain.data.synth.RainConfig`); the functions
that have interesting hidden parameters (depth, transmission, kernels, gains) return them too, for tests and
for physically-guided heads that may want them as extra supervision.

Rain is not duplicated here: :func:`derain.data.synth.add_rain` is the rain of the all-in-one tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

Range = tuple[float, float]


def _check_ranges(config: object) -> None:
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
            raise ValueError(f"{type(config).__name__}.{f.name} must be a (low, high) range with low <= high, "
                             f"got {value}")


def _check_images(clean: torch.Tensor, what: str) -> None:
    if clean.ndim != 4 or clean.shape[1] != 3:
        raise ValueError(f"{what} expects B x 3 x H x W images, got shape {tuple(clean.shape)}")


def _uniform(generator: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, generator=generator)


def _log_uniform(generator: torch.Generator, n: int, bounds: Range) -> torch.Tensor:
    return torch.exp(_uniform(generator, n, (math.log(bounds[0]), math.log(bounds[1]))))


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit file (values stay floats)."""
    return torch.round(x * 255.0) / 255.0


# --------------------------------------------------------------------------------------------------- noise
def add_gaussian_noise(clean: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator,
                       clip: bool = True, quantize: bool = False) -> torch.Tensor:
    """``clean`` plus white Gaussian noise of std ``sigma / 255`` (per pixel and channel, independent).

    ``sigma`` is on the 0-255 scale (15, 25 and 50 are the BSD68 levels), one number or one per image.

    Protocols differ on what happens next. The classic denoising protocol (DnCNN, FFDNet, KAIR's test
    scripts) adds the noise to the float image and evaluates on it as is, values outside [0, 1] included.
    The all-in-one line of work whose five-task table FSDRNet reports (AirNet, PromptIR and their data code)
    clips to [0, 255] and truncates to uint8 (``np.clip(x + n * sigma, 0, 255).astype(np.uint8)``). We clip
    by default, because every model and file format here expects [0, 1]; clipping removes part of the noise
    in very dark and very bright areas (the std of noisy - clean on CBSD68 is 3, 4 and 9 % below sigma at
    15, 25 and 50), the same loss the all-in-one protocol has. ``quantize`` also
    truncates to 8-bit levels exactly as that data code does (the synthetic test sets use it; training does
    not need it).
    """
    _check_images(clean, "add_gaussian_noise")
    s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1) / 255.0
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
    if quantize:
        # On the 0-255 scale in float64, with 8-bit inputs snapped to their integer levels, so that the
        # truncation (what .astype(np.uint8) does after np.clip) falls exactly where the uint8 protocol's does.
        v = clean.double() * 255.0
        v = torch.where((v - v.round()).abs() < 1e-3, v.round(), v)
        v = v + (s.double() * 255.0) * noise.double()
        return (torch.floor(v.clamp(0.0, 255.0)) / 255.0).float()
    noisy = clean.float() + s * noise
    return noisy.clamp_(0.0, 1.0) if clip else noisy


# ----------------------------------------------------------------------------------------------------- haze
@dataclass(frozen=True)
class HazeConfig:
    """Ranges of the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    The depth ``d`` is relative, in [0, 1] (the farthest point of the image is at 1), so ``beta`` is the
    optical depth of the farthest point: 0.4 leaves 67 % of the scene radiance there, 2.5 only 8 %. RESIDE
    (whose SOTS test set names files ``<id>_<A>_<beta>``) uses A in [0.8, 1.0] and beta in [0.04, 0.2] per
    metre of real depth; with depths of tens of metres that spans about the same optical depths.
    """

    beta: Range = (0.4, 2.5)
    airlight: Range = (0.7, 1.0)  # grey level of the atmospheric light A
    tint: float = 0.02  # each channel of A deviates from the grey level by up to this much (slightly coloured skies)
    near: Range = (0.0, 0.3)  # relative depth of the nearest point: >0 puts some haze everywhere
    gradient: Range = (0.3, 0.9)  # weight of the depth ramp (against the blobs): scenes recede towards the top
    tilt: float = 30.0  # the ramp's direction deviates from vertical by up to this many degrees
    grid: int = 3  # the coarsest blob octave is a grid x grid random field, upsampled smoothly

    def __post_init__(self) -> None:
        _check_ranges(self)
        if not (self.beta[0] >= 0 and 0 <= self.airlight[0] and self.airlight[1] <= 1 and self.near[0] >= 0
                and self.near[1] < 1 and 0 <= self.gradient[0] and self.gradient[1] <= 1 and self.grid >= 2):
            raise ValueError(f"invalid haze config: {self}")


def random_depth(batch: int, height: int, width: int, config: HazeConfig,
                 generator: torch.Generator) -> torch.Tensor:
    """Smooth random relative depth maps, B x 1 x H x W in [near, 1].

    A tilted linear ramp (far at the top, as in most outdoor photos) mixed with two octaves of low-frequency
    noise (a coarse random grid upsampled bicubically: blobs the size of objects and hills), normalised per
    image. Depth is smooth everywhere, which real depth is not at object edges; haze removal networks
    trained on such maps still learn the airlight/transmission relation, which is what the task needs.
    """
    g = config.grid
    coarse = torch.rand(batch, 1, g, g, generator=generator)
    fine = torch.rand(batch, 1, 2 * g, 2 * g, generator=generator)
    u = torch.rand(batch, 3, generator=generator)
    size = (height, width)
    blobs = (F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
             + 0.5 * F.interpolate(fine, size=size, mode="bicubic", align_corners=False))
    angle = torch.deg2rad(config.tilt * (2 * u[:, 0] - 1))[:, None, None, None]
    rows = torch.linspace(1.0, 0.0, height)[:, None]  # 1 at the top: far away
    cols = torch.linspace(-0.5, 0.5, width)[None, :]
    ramp = rows * torch.cos(angle) + cols * torch.sin(angle)
    w = (config.gradient[0] + (config.gradient[1] - config.gradient[0]) * u[:, 1])[:, None, None, None]

    def normalise(x: torch.Tensor) -> torch.Tensor:
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-6)

    depth = normalise(w * normalise(ramp) + (1 - w) * normalise(blobs))
    near = (config.near[0] + (config.near[1] - config.near[0]) * u[:, 2])[:, None, None, None]
    return near + (1 - near) * depth


def add_haze(clean: torch.Tensor, generator: torch.Generator,
             config: HazeConfig = HazeConfig()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Hazy versions of ``clean`` by the atmospheric scattering model, and the parameters drawn.

    Returns ``(hazy, {"depth": B1HW, "transmission": B1HW, "airlight": B3, "beta": B})``.
    """
    _check_images(clean, "add_haze")
    b, _, h, w = clean.shape
    depth = random_depth(b, h, w, config, generator)
    beta = _uniform(generator, b, config.beta)
    grey = _uniform(generator, b, config.airlight)
    tint = config.tint * (2 * torch.rand(b, 3, generator=generator) - 1)
    airlight = (grey[:, None] + tint).clamp(0.0, 1.0)
    t = torch.exp(-beta[:, None, None, None] * depth)
    a = airlight[:, :, None, None]
    hazy = (clean.float() * t + a * (1 - t)).clamp_(0.0, 1.0)
    return hazy, {"depth": depth, "transmission": t, "airlight": airlight, "beta": beta}


# ----------------------------------------------------------------------------------------------- motion blur
@dataclass(frozen=True)
class BlurConfig:
    """Random camera-shake trajectories rendered into ``size`` x ``size`` kernels.

    ``length`` is the extent of the trajectory in pixels (twice its largest distance from its centroid);
    ``curvature`` the std of the heading change per step (radians): 0 gives straight linear motion, 0.3
    curved and looping shake. ``speed`` is the range of per-step speeds, so the exposure dwells longer on
    some parts of the path (brighter kernel there), as real shake does at its turning points. GoPro's
    blur (averaged frames of a hand-held camera) ranges from a few pixels to about 30-40.
    """

    size: int = 31
    length: Range = (5.0, 27.0)
    curvature: Range = (0.0, 0.3)
    speed: Range = (0.3, 1.0)
    steps: int = 64

    def __post_init__(self) -> None:
        _check_ranges(self)
        if self.size < 3 or self.size % 2 == 0:
            raise ValueError(f"blur kernel size must be odd and >= 3, got {self.size}")
        if not (0 < self.length[0] and self.length[1] <= self.size - 2 and self.curvature[0] >= 0
                and self.speed[0] > 0 and self.steps >= 2):
            raise ValueError(f"invalid blur config (length must fit in the kernel, size - 2): {self}")


def motion_kernels(batch: int, config: BlurConfig, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random motion-blur kernels, B x K x K, each non-negative and summing to 1.

    The trajectory is a random walk of the heading (a smooth curve, not a jittery walk of positions),
    scaled to the drawn length and centred on its centroid. Points are splatted bilinearly, which keeps the
    kernel's centre of mass exactly at the kernel centre: blurring never shifts the image against its
    ground truth.
    """
    k, n = config.size, config.steps
    heading0 = 2 * math.pi * torch.rand(batch, 1, generator=generator)
    curvature = _uniform(generator, batch, config.curvature)[:, None]
    turns = torch.randn(batch, n, generator=generator) * curvature
    speed = config.speed[0] + (config.speed[1] - config.speed[0]) * torch.rand(batch, n, generator=generator)
    length = _uniform(generator, batch, config.length)
    heading = heading0 + torch.cumsum(turns, dim=1)
    step = torch.stack([torch.cos(heading), torch.sin(heading)], dim=-1) * speed[..., None]
    path = torch.cumsum(step, dim=1)  # B x n x 2 (x, y)
    # Each point weighs the same (equal exposure time per step): slow parts of the path get more energy.
    path = path - path.mean(dim=1, keepdim=True)
    radius = path.norm(dim=-1).amax(dim=1).clamp_min(1e-6)
    scale = length / 2 / radius
    # Never let a point leave the kernel (a curved path's box can exceed its radius in one axis).
    limit = (k - 1) / 2 - 1.0
    scale = torch.minimum(scale, limit / path.abs().amax(dim=(1, 2)).clamp_min(1e-6))
    pts = path * scale[:, None, None] + (k - 1) / 2
    x0, y0 = pts[..., 0].floor(), pts[..., 1].floor()
    fx, fy = pts[..., 0] - x0, pts[..., 1] - y0
    x0, y0 = x0.long(), y0.long()
    kernels = torch.zeros(batch, k * k)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        kernels.scatter_add_(1, (y0 + dy) * k + (x0 + dx), wgt)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    return kernels.reshape(batch, k, k)


def blur_with_kernels(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel (B x C x H x W with B x K x K), one grouped conv2d.

    Borders are reflected (replicated when the image is smaller than half the kernel) so the frame does not
    darken. The kernel is flipped because conv2d computes a correlation and a blur kernel is a PSF.
    """
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(images.float().reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.flip(-1, -2).repeat_interleave(c, dim=0)[:, None].to(x.dtype)
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


def add_motion_blur(clean: torch.Tensor, generator: torch.Generator,
                    config: BlurConfig = BlurConfig()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Motion-blurred versions of ``clean`` (one random trajectory per image) and ``{"kernel": BKK}``.

    The blur is spatially uniform (camera translation); GoPro's real blur also varies across the frame
    (rotation, moving objects), which this does not model.
    """
    _check_images(clean, "add_motion_blur")
    kernels = motion_kernels(clean.shape[0], config, generator)
    return blur_with_kernels(clean, kernels).clamp_(0.0, 1.0), {"kernel": kernels}


# ------------------------------------------------------------------------------------------------- low light
@dataclass(frozen=True)
class LowLightConfig:
    """Ranges of the low-light model ``y = gain * c * x ** gamma + noise``.

    ``gamma`` > 1 crushes the shadows more than the highlights (an under-exposed, tone-mapped photo);
    ``gain`` sets the overall exposure (the defaults give CBSD68 a mean of 0.09, 10th-90th percentile over
    images 0.04-0.16: the darkness of LOL's low images); ``colour`` is a per-channel gain deviation (white
    balance drift of dim scenes). The noise is Poisson-Gaussian in its Gaussian approximation: variance ``y / photons +
    read ** 2``, with ``photons`` the photon count a full-scale pixel would collect (log-uniform).
    """

    gamma: Range = (1.2, 2.5)
    gain: Range = (0.15, 0.5)
    colour: float = 0.05
    photons: Range = (50.0, 500.0)
    read: Range = (0.002, 0.01)
    quantize: bool = True  # dark 8-bit photos have few levels; the rounding is part of the degradation

    def __post_init__(self) -> None:
        _check_ranges(self)
        if not (self.gamma[0] > 0 and self.gain[0] > 0 and self.gain[1] <= 1 and 0 <= self.colour < 1
                and self.photons[0] > 0 and self.read[0] >= 0):
            raise ValueError(f"invalid low-light config: {self}")


def add_low_light(clean: torch.Tensor, generator: torch.Generator,
                  config: LowLightConfig = LowLightConfig()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Dark, noisy versions of ``clean`` and ``{"gamma": B, "gain": B3, "photons": B, "read": B}``.

    Without noise the mapping is monotone in every channel, so the ordering of pixel values is kept in
    expectation (noise and clipping at 0 perturb single pixels).
    """
    _check_images(clean, "add_low_light")
    b = clean.shape[0]
    gamma = _uniform(generator, b, config.gamma)
    drift = 1 + config.colour * (2 * torch.rand(b, 3, generator=generator) - 1)
    gain = _uniform(generator, b, config.gain)[:, None] * drift
    photons = _log_uniform(generator, b, config.photons)
    read = _uniform(generator, b, config.read)
    dark = gain[:, :, None, None] * clean.float().clamp(0.0, 1.0) ** gamma[:, None, None, None]
    var = dark / photons[:, None, None, None] + read[:, None, None, None] ** 2
    noisy = (dark + var.sqrt() * torch.randn(clean.shape, generator=generator)).clamp_(0.0, 1.0)
    if config.quantize:
        noisy = _quantize(noisy)
    return noisy, {"gamma": gamma, "gain": gain, "photons": photons, "read": read}
