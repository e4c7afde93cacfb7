"""Model registry: a name maps to a builder, its default configuration and the size multiple it needs.

Builders are referenced as ``"module:function"`` strings and imported only when a model is built, so a
broken or heavy model file never breaks ``import derain`` (the failure mode BasicSR users met for years).
Other parts of the project add their networks with :func:`register`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from derain.data.degradations import TASK_CHOICES
from derain.errors import DerainError

if TYPE_CHECKING:  # torch is imported by the builders, not here: `derain models` lists without it
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What the toolkit needs to know about one network."""

    name: str
    builder: str  # "package.module:function", imported lazily
    size_multiple: int  # input height and width must be multiples of this (inference pads to it)
    default_config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tasks: tuple[str, ...] = ()  # all-in-one networks: the degradations a user may ask for (derain run --task)
    # Parameters of the default configuration, so that `derain models` lists them without importing torch and
    # building every network (tests/test_registry.py checks each against a build); None: counted on demand.
    parameters: int | None = None

    def resolve(self) -> "Callable[..., nn.Module]":
        module_name, _, attr = self.builder.partition(":")
        return getattr(importlib.import_module(module_name), attr)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (re-registering the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; a clear error listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise DerainError(f"unknown model {name!r}; known models: {known}") from None


def same_network(a: str, b: str) -> bool:
    """Whether models ``a`` and ``b`` are one network under two names (e.g. a bundled model's own name)."""
    return a == b or get_spec(a).builder == get_spec(b).builder


def list_specs() -> list[ModelSpec]:
    """All registered models, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def build(name: str, **kwargs: Any) -> "nn.Module":
    """Build model ``name`` from its default config updated with ``kwargs`` (random weights)."""
    spec = get_spec(name)
    config = {**spec.default_config, **kwargs}
    try:
        return spec.resolve()(**config)
    except TypeError as exc:  # wrong keyword: a user mistake, worth one line
        raise DerainError(f"cannot build {name!r} with {sorted(kwargs)}: {exc}") from None


def count_parameters(model: "nn.Module", trainable_only: bool = True) -> int:
    """Number of (trainable) parameter values in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# The built-in networks. Each issue that adds a network adds one line here.
register(ModelSpec(
    name="restormer",
    builder="derain.models.restormer:Restormer",
    size_multiple=8,
    parameters=26_126_644,
    default_config=dict(inp_channels=3, out_channels=3, dim=48, num_blocks=[4, 6, 6, 8],
                        num_refinement_blocks=4, heads=[1, 2, 4, 8], ffn_expansion_factor=2.66,
                        bias=False, LayerNorm_type="WithBias"),
    description="Restormer (CVPR 2022), deraining configuration; loads the official deraining.pth",
))
register(ModelSpec(
    name="fastderain",
    builder="derain.models.fastderain:FastDerain",
    size_multiple=16,
    parameters=3_165_996,
    default_config=dict(in_channels=3, widths=[32, 64, 128, 192], enc_blocks=[2, 2, 2, 2], dec_blocks=[2, 2, 2],
                        unshuffle=2, rep=False),
    description="FastDerain: pixel-unshuffle residual conv U-Net built for CPU speed (the default model's two "
                "experts and its student are FastDerains)",
))
register(ModelSpec(
    name="fastderain-rain100l",
    builder="derain.models.fastderain:FastDerain",
    size_multiple=8,  # three 2x downsamplings and no unshuffle stem (what the network itself declares)
    parameters=2_312_659,
    default_config=dict(in_channels=3, widths=[32, 48, 96, 192], enc_blocks=[1, 1, 2, 2], dec_blocks=[1, 1, 2],
                        unshuffle=1, rep=False, low_precision_residuals=True),
    description="FastDerain trained for Rain100L only (38.67 dB, the default model until 2026-12-07; bundled)",
))
register(ModelSpec(
    name="fastderain-student",
    builder="derain.models.fastderain:FastDerain",
    size_multiple=16,  # a 2x unshuffle stem above three 2x downsamplings
    parameters=4_061_692,
    default_config=dict(in_channels=3, widths=[32, 48, 96, 192], enc_blocks=[1, 2, 3, 4], dec_blocks=[1, 2, 3],
                        unshuffle=2, rep=False, low_precision_residuals=True),
    description="The CPU student of the default's general expert: its levels on a 2x unshuffled image (3.9x fewer "
                "multiply-adds); the default on x86 CPUs without native bf16 (bundled)",
))
register(ModelSpec(
    name="fastderain-experts",
    builder="derain.models.experts:RainExperts",
    size_multiple=8,  # both experts: three 2x downsamplings, no unshuffle stem
    parameters=6_387_375,
    default_config=dict(
        light=dict(in_channels=3, widths=[32, 48, 96, 192], enc_blocks=[1, 1, 2, 2], dec_blocks=[1, 1, 2],
                   unshuffle=1, rep=False, low_precision_residuals=True),
        general=dict(in_channels=3, widths=[32, 48, 96, 192], enc_blocks=[1, 2, 3, 4], dec_blocks=[1, 2, 3],
                     unshuffle=1, rep=False, low_precision_residuals=True),
        gate_width=24, gate_scale=4),
    description="The default model: a light-rain and a general FastDerain mixed per pixel by a learned gate "
                "(light, heavy and real rain; bundled)",
))
register(ModelSpec(
    name="dmsr",
    builder="derain.models.dmsr:build_dmsr",
    # MPSRM pools the 1/4-scale features by 4 again and up-samples by exact factors of 2: sides of 16k.
    size_multiple=16,
    parameters=35_472_543,
    default_config=dict(num_res=16, base_channel=48, test_window=0),
    description="DMSR (ICME 2025), official layout (loads its checkpoints); whole-image inference, full-size output",
))
register(ModelSpec(
    name="dmsr-win128",
    builder="derain.models.dmsr:build_dmsr",
    size_multiple=1,  # the windows are always 128x128: the image itself is not padded, as in the official test
    parameters=35_472_543,
    default_config=dict(num_res=16, base_channel=48, test_window=128),
    description="DMSR with the official test protocol: non-overlapping 128x128 windows, edge windows flush",
))
register(ModelSpec(
    name="mspfn",
    builder="derain.models.mspfn:build_mspfn",
    size_multiple=4,
    parameters=20_995_776,
    default_config=dict(channels=64, iterations=17, rcabs=[1, 3, 3], lstm_hidden=[64, 128, 256]),
    description="MSPFN (CVPR 2020), PyTorch port of the TF training graph: M=17, RCABs (1,3,3)",
))
register(ModelSpec(
    name="mspfn-released",
    builder="derain.models.mspfn:build_mspfn",
    size_multiple=4,
    parameters=15_823_424,
    default_config=dict(channels=64, iterations=17, rcabs=[1, 1, 1], lstm_hidden=[64, 128, 256]),
    description="MSPFN as released (M17N1): one RCAB per scale and fusion step",
))
register(ModelSpec(
    name="rain2avoid-unet",
    builder="derain.models.rain2avoid_unet:R2AUNet",
    size_multiple=16,
    parameters=4_539_988,
    default_config=dict(in_channels=3, width=64),
    description="Rain2Avoid's UNet (ICASSP 2023 / TMM), trained per image by `derain selfsup`; width=32 for CPUs",
))

# Small variants for the equal-cost CPU comparison (issue 12): each runs its own blocks on a pixel-unshuffled
# image, sized so that CPU inference costs about as much as FastDerain's (configs/equal_cost_*.yaml).
_SMALL = "small variant for the equal-cost CPU comparison: pixel-unshuffle x{f} stem, "
register(ModelSpec(
    name="restormer-small",
    builder="derain.models.unshuffled:build_restormer_small",
    size_multiple=32,  # Restormer's 8 x the unshuffle factor 4
    parameters=1_576_267,
    default_config=dict(factor=4, dim=16, num_blocks=[1, 2, 2, 4], num_refinement_blocks=1, heads=[1, 2, 4, 8],
                        ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias"),
    description=_SMALL.format(f=4) + "Restormer dim 16, blocks 1/2/2/4 + 1 refinement",
))
register(ModelSpec(
    name="dmsr-small",
    builder="derain.models.unshuffled:build_dmsr_small",
    # DMSR with a one-level MPSRM needs sides of 4k (and at least 16), x the unshuffle factor 4. The official
    # pools (4, 2, 1) would need 64k image sides, so no 96-pixel training patch; at 4x unshuffle the stages
    # already run at 1/4, 1/8 and 1/16 of the image, the scales the official pyramid reaches by pooling.
    # (A 2x stem with pools (2, 1) fits too, but costs 1.5x FastDerain even at base 8.)
    size_multiple=16,
    parameters=2_248_998,
    default_config=dict(factor=4, num_res=2, base_channel=24, pool_sizes=[1]),
    description=_SMALL.format(f=4) + "DMSR base 24, 2 blocks per stage, one-level MPSRM (pool 1)",
))
register(ModelSpec(
    name="mspfn-small",
    builder="derain.models.unshuffled:build_mspfn_small",
    size_multiple=16,  # MSPFN's 4 x the unshuffle factor 4
    parameters=3_321_432,
    default_config=dict(factor=4, channels=48, iterations=5, rcabs=[1, 1, 1], lstm_hidden=[48, 96, 96]),
    description=_SMALL.format(f=4) + "MSPFN 48 channels, 5 fusion steps, RCABs (1, 1, 1), ConvLSTMs 48/96/96",
))

# FSDRNet (issue 15): the authors published no code; this is our reconstruction of their design
# (docs/METHODS.md section 5.2), all-in-one over derain.models.fsdrnet.TASKS.
register(ModelSpec(
    name="fsdrnet",
    builder="derain.models.fsdrnet.network:FSDRNet",
    size_multiple=8,  # three 2x downsamplings
    parameters=15_709_920,
    # dim 42 rather than the spec's 40: 15.71M parameters, like the published 15.68M (dim 40 gives 14.27M).
    default_config=dict(inp_channels=3, dim=42, num_blocks=[2, 3, 3, 4], num_refinement_blocks=2,
                        heads=[1, 2, 4, 8], ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias",
                        bands=8, selector_hidden=128, head_hidden=32, kernel_size=5, unshuffle=1,
                        routing="soft", task=None,
                        selector_crop=128),  # auto routing classifies 128x128 crops: the all-in-one training patch
    description="FSDRNet (our reconstruction; no public code): all-in-one (rain, haze, noise, blur, low light) "
                "U-Net of EFMA blocks with one-way frequency guidance, a degradation selector and physical heads",
    tasks=TASK_CHOICES,
))
register(ModelSpec(
    name="fsdrnet-small",
    builder="derain.models.fsdrnet.network:FSDRNet",
    size_multiple=32,  # three 2x downsamplings x the unshuffle factor 4
    parameters=3_663_092,
    # Sized to stay well within 2x FastDerain's CPU inference time (benchmarks/train_step.py): the level-1
    # frequency module keeps the full-resolution spectrum on a 4-channel embedding, and the per-pixel
    # denoising kernels are 3x3 (5x5 ones cost a quarter of the network: 25 x 16 maps to pixel-shuffle).
    default_config=dict(inp_channels=3, dim=24, num_blocks=[1, 1, 2, 2], num_refinement_blocks=1,
                        heads=[1, 2, 4, 8], ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias",
                        bands=8, selector_hidden=64, head_hidden=16, kernel_size=3, unshuffle=4,
                        full_channels=4, routing="soft", task=None,
                        selector_crop=96),  # auto routing classifies crops of its training patch (96x96)
    description="FSDRNet (our reconstruction; no public code): small CPU configuration, the same design on a "
                "pixel-unshuffled x4 U-Net with the level-1 frequency module and the heads at full resolution",
    tasks=TASK_CHOICES,
))
