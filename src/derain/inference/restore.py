"""Running a restoration network on one image tensor: padding, tiling, self-ensemble, precision.

Everything here works on tensors of shape (1, C, H, W) in [0, 1]; reading and writing files is the job of
:mod:`derain.commands.run`. The network is any ``nn.Module`` mapping an image to an image of the same size whose
height and width must be multiples of ``size_multiple`` (or to a list of images, the first full size).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from derain.errors import DerainError
from derain.inference.ensembles import ensemble_forward, ensemble_name
from derain.inference.fastpath import PreparedModel, choose_fast_path, prepare_model
from derain.inference.hardware import available_memory_bytes
from derain.inference.precision import autocast_context
from derain.inference.tiling import Forward, tile_starts, tiled_forward
from derain.models.capabilities import capabilities_of


@dataclass
class InferenceOptions:
    """How to run a network on an image.

    ``tile``: tile side in pixels, 0 to never tile, None to choose it from the free memory
    (:func:`auto_tile`); images with more than ``tile_threshold`` pixels are
    processed in overlapping tiles of this size, blended with smooth weights (memory stays bounded by the
    tile, not the photo). ``tile_overlap`` should cover the network's receptive field for tiled and whole
    results to agree. ``ensemble`` names a self-ensemble of :data:`derain.inference.ensembles.ENSEMBLES`
    (``True``: ``flips``, the 4 upright transforms, 4x the time; ``False``: ``none``). ``fast`` runs the fast path of
    :mod:`derain.inference.fastpath` (same function, bf16 where native, channels-last, folded layers); ``compile`` adds
    ``torch.compile`` to it. ``tile_batch`` tiles run in one call (None: 4 on GPUs, where it keeps the device busy, 1 on
    the CPU, where it does not pay).

    ``working_side``: photos whose shorter side is longer are shown to the network downscaled to it, and only
    the change the network makes there (the rain layer and the veil) is upscaled and taken from the photo at
    its own resolution (:func:`rescaled_forward`). Rain streaks scale with the photo: on a 12-megapixel photo
    they are ten times wider than in the images a network trains on, where the network does not see them as
    rain. None (or 0): the network sees the photo as it is.
    """

    tile: int | None = None
    tile_overlap: int = 64
    tile_threshold: int = 1024 * 1024
    ensemble: bool | str = False
    precision: str = "auto"
    fast: bool = True
    compile: bool = False
    tile_batch: int | None = None
    working_side: int | str | None = None


# The working side of `derain run` and of derain.derain() with the bundled model
# (measured: docs/journal/general-model.md).
DEFAULT_WORKING_SIDE = 640


def resolve_working_side(options: InferenceOptions, name: str) -> InferenceOptions:
    """``options`` with a ``working_side`` of ``"auto"`` made concrete for network ``name``:
    :data:`DEFAULT_WORKING_SIDE` for rain networks, off for all-in-one ones (noise and blur must be removed at
    the photo's own resolution)."""
    if options.working_side != "auto":
        return options
    from derain.models import get_spec

    side = None if get_spec(name).tasks else DEFAULT_WORKING_SIDE
    return dataclasses.replace(options, working_side=side)


def working_scale(h: int, w: int, working_side: int | str | None) -> float:
    """The factor (<= 1) that brings the shorter side of an h x w image down to ``working_side``
    (``"auto"``, where no caller resolved it: :data:`DEFAULT_WORKING_SIDE`)."""
    side = DEFAULT_WORKING_SIDE if working_side == "auto" else working_side
    if not side or min(h, w) <= int(side):
        return 1.0
    return int(side) / min(h, w)


def rescaled_forward(restore_small: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """``image`` minus the upscaled change that ``restore_small`` makes to its copy downscaled by ``scale``.

    The background keeps its full resolution; what the network removes at the working scale (streaks,
    veil) is removed at the photo's scale, smoothly interpolated (bicubic).
    """
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    change = small - restore_small(small)
    change = F.interpolate(change, size=(h, w), mode="bicubic", align_corners=False)
    return (image - change).clamp_(0, 1)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an explicit GPU that is absent, or another device type (mps,
    xla, meta: untested here), is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DerainError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):  # the two device types the paths here are built and tested on
        raise DerainError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DerainError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DerainError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return device


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom and right so H and W become multiples of ``multiple`` (as the official tests do).

    Reflection needs the pad to be smaller than the side; tiny images fall back to edge replication.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def primary_output(y: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The restored image of a network's output: multi-output networks (DMSR: full, 1/2 and 1/4 resolution)
    return a list whose first element is the full-resolution result."""
    return y[0] if isinstance(y, (list, tuple)) else cast(torch.Tensor, y)  # a Tensor is a Sequence too


def padded_forward(model: nn.Module, multiple: int, device: torch.device,
                   dtype: torch.dtype | None) -> Forward:
    """A function image -> restored image that pads to ``multiple``, runs ``model`` and crops back."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        with torch.no_grad(), autocast_context(device, dtype):
            y = primary_output(model(pad_to_multiple(x.to(device), multiple)))
        return y[..., :h, :w].float()

    return forward


def count_tiles(h: int, w: int, options: InferenceOptions, size_multiple: int = 1) -> int:
    """How many tiles one image of ``h`` x ``w`` is cut into (1 when it runs whole), at the working side."""
    scale = working_scale(h, w, options.working_side)
    if scale < 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    if not needs_tiling(h, w, options):
        return 1
    h, w = h + (-h) % size_multiple, w + (-w) % size_multiple
    assert options.tile is not None  # needs_tiling raised otherwise
    return (len(tile_starts(h, options.tile, options.tile_overlap, size_multiple))
            * len(tile_starts(w, options.tile, options.tile_overlap, size_multiple)))


def needs_tiling(h: int, w: int, options: InferenceOptions) -> bool:
    """Tile when tiling is enabled and the image is over the pixel threshold or larger than a tile."""
    if options.tile is None:
        raise ValueError("the tile side is chosen per model and device: call resolve_tile first")
    return options.tile > 0 and (h * w > options.tile_threshold) and (h > options.tile or w > options.tile)


def prepare_for(model: nn.Module, options: InferenceOptions, device: torch.device) -> nn.Module:
    """``model`` prepared for the path ``options`` ask for on ``device``; a model that is already prepared, or
    has no parameters to prepare (an onnxruntime session), is returned as it is. Prepare once and pass the
    result to :func:`restore` when many images go through one model."""
    if isinstance(model, PreparedModel) or next(model.parameters(), None) is None:
        return model
    path = choose_fast_path(model, device, options.precision, options.fast, options.compile)
    return prepare_model(model, path, device)


# Activation memory of one inference, in bytes per input pixel, for networks that do not declare their own
# ``bytes_per_pixel``: more than any network of the registry measured (official Restormer: about 12,000).
DEFAULT_BYTES_PER_PIXEL = 16_000
# Bytes per image pixel held outside the network while tiling: the float32 input, its padded copy, the
# blended output and its weights, plus the decoded and encoded 8-bit images.
IMAGE_BYTES_PER_PIXEL = 48
# A photo of this many pixels must always fit (24 megapixels, the largest common camera size).
RESERVED_IMAGE_PIXELS = 24_000_000
# Larger tiles stop paying: at 1024 the overlap of 64 costs 11% extra work on a 12-megapixel photo (tile_layout).
MAX_TILE = {"cpu": 1024, "cuda": 2048}


def network_of(model: nn.Module) -> nn.Module:
    """The network itself, under a :class:`PreparedModel` and a ``torch.compile`` wrapper if any."""
    net = model.net if isinstance(model, PreparedModel) else model
    return getattr(net, "_orig_mod", net)


def size_multiple_of(model: nn.Module, fallback: int | None = None) -> int:
    """What ``model``'s height and width must be multiples of: what its network declares (a
    ``size_multiple`` attribute or property, read through a :class:`PreparedModel` or ``torch.compile``
    wrapper), else ``fallback`` (e.g. the registry's value for its name).

    The network's own value comes first because only it knows its configuration: a checkpoint may hold a
    registered network built with other widths or stems than the registry's default (the bundled default
    model does). A network that declares nothing, with no fallback, is one clear error rather than a guess.
    """
    for candidate in (network_of(model), model):
        declared = capabilities_of(candidate).size_multiple
        if declared is not None:
            return declared
    if fallback is not None:
        return int(fallback)
    raise DerainError(f"{type(network_of(model)).__name__} does not declare the size multiple its input "
                      "needs; set its size_multiple attribute, or pass the model's registry name")


def auto_tile(model: nn.Module, size_multiple: int, overlap: int, device: torch.device,
              available: int | None = None) -> int:
    """The tile side for ``model`` on ``device`` from the memory free now, so that a 24-megapixel photo
    never runs out of memory: half of what is left after the image buffers goes to one tile's activations.

    ``model.bytes_per_pixel`` (measured per network, see docs/performance.md) says what a pixel of a tile
    costs; networks without it are assumed to be as hungry as the hungriest measured.
    """
    available = available_memory_bytes(device) if available is None else available
    per_pixel = capabilities_of(network_of(model)).bytes_per_pixel or DEFAULT_BYTES_PER_PIXEL
    reserve = IMAGE_BYTES_PER_PIXEL * RESERVED_IMAGE_PIXELS if device.type == "cpu" else 0
    budget = max(0.0, 0.5 * (available - reserve))
    side = min(int(math.sqrt(budget / per_pixel)), MAX_TILE.get(device.type, 1024))
    smallest = size_multiple * math.ceil((2 * overlap + 64) / size_multiple)  # tiles must be more than overlap
    return max(side - side % size_multiple, smallest)


def resolve_tile(options: InferenceOptions, model: nn.Module, size_multiple: int,
                 device: torch.device) -> InferenceOptions:
    """``options`` with a concrete tile side (:func:`auto_tile` when it is None), checked against the model
    before any image is read: a tile side must be a multiple of ``size_multiple`` and longer than the overlap."""
    if options.tile is None:
        return dataclasses.replace(options, tile=auto_tile(model, size_multiple, options.tile_overlap, device))
    if options.tile > 0 and options.tile % size_multiple:
        raise DerainError(f"tile size {options.tile} must be a multiple of {size_multiple} for this model")
    if options.tile > 0 and options.tile_overlap >= options.tile:
        raise DerainError(f"tile overlap ({options.tile_overlap}) must be smaller than the tile size ({options.tile})")
    return options


def all_in_one_network(model: nn.Module) -> nn.Module | None:
    """The network inside ``model`` (prepared or compiled or not) that takes a task and records what its
    degradation selector chose (``.task``, ``.last_choice``: an all-in-one model), or None."""
    net = network_of(model)
    return net if capabilities_of(net).all_in_one else None


def set_task(model: nn.Module, name: str, task: str | None) -> nn.Module | None:
    """Route an all-in-one ``model`` to ``task`` (None/auto: its selector); returns its network, or None for
    single-task models, where asking for a task is a mistake."""
    routed = all_in_one_network(model)
    if routed is None:
        if task is not None:
            raise DerainError(f"a task applies to all-in-one models (fsdrnet); {name} restores one degradation")
        return None
    # task, last_choice and last_weights are the all-in-one network's own attributes (untyped on nn.Module)
    cast(Any, routed).task = None if task in (None, "auto") else task
    return routed


def describe_choice(routed: nn.Module) -> str:
    """What the selector chose for the last image, e.g. ``haze (0.87)``."""
    last_choice = cast(Any, routed).last_choice
    choice = last_choice[0] if last_choice else "?"
    weights = getattr(routed, "last_weights", None)
    return f"{choice} ({float(weights[0].max()):.2f})" if weights is not None and len(weights) else choice


def restore(model: nn.Module, image: torch.Tensor, size_multiple: int, options: InferenceOptions | None = None,
            device: torch.device | None = None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Restore ``image`` (1 x C x H x W, float in [0, 1]) with ``model``; returns a CPU float32 tensor in [0, 1].

    Pads (reflect) to the size multiple the network declares (:func:`size_multiple_of`; ``size_multiple``
    only for networks that declare none) and crops back, tiles large images, and optionally runs a
    self-ensemble, all under the requested precision. A plain ``nn.Module`` is prepared for the fast path
    (or the reference path) of ``options`` on each call; pass a :class:`PreparedModel` to prepare once.
    """
    options = options or InferenceOptions()
    if image.shape[-2] == 0 or image.shape[-1] == 0:
        raise DerainError(f"the image has no pixels ({image.shape[-1]}x{image.shape[-2]})")
    device = device or next(model.parameters()).device
    scale = working_scale(image.shape[-2], image.shape[-1], options.working_side)
    if scale < 1.0:
        native = dataclasses.replace(options, working_side=None)
        return rescaled_forward(lambda small: restore(model, small, size_multiple, native, device, progress),
                                image, scale)
    model = prepare_for(model, options, device)  # first: a prepared network is in eval mode, as it will run
    size_multiple = size_multiple_of(model, size_multiple)
    options = resolve_tile(options, model, size_multiple, device)
    forward = padded_forward(model, size_multiple, device, None)  # the prepared model handles precision
    if ensemble_name(options.ensemble) != "none":
        forward = ensemble_forward(forward, options.ensemble)
    h, w = image.shape[-2:]
    if not needs_tiling(h, w, options):
        y = forward(image).cpu()
        if progress is not None:
            progress(1)
        return y.clamp(0, 1)
    # Pad the whole image once, so tiles at the border see the same reflected pixels as a whole-image pass.
    padded = pad_to_multiple(image, size_multiple)
    batch = options.tile_batch or (4 if device.type == "cuda" else 1)
    assert options.tile is not None  # needs_tiling raised otherwise
    y = tiled_forward(forward, options.tile, options.tile_overlap, progress, size_multiple, batch)(padded)
    return y[..., :h, :w].clamp(0, 1)
