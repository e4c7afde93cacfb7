"""Typed configuration of an FSDerain fine-tuning run (``configs/fsderain_*.yaml``).

Loaded with the training engine's strict loader (:func:`derain.train.config.from_dict`): every key must be
a field below and have its type, and ``--set key=value`` overrides use the same dotted keys. The optimiser
and schedule sections are the engine's own dataclasses.

Defaults are the paired recipe. Two switches change them:

- ``unpaired: true`` (or ``derain finetune --unpaired``) fills in other defaults underneath whatever the file
  and the overrides set: no ground truth, so the L1/SSIM/perceptual/FFT terms are off, the unpaired
  contrastive and low-frequency terms on, no validation and a constant lr (the perceptual term, when
  switched on, compares with the input instead);
- ``faithful: true`` reproduces the original code and therefore *forces* its four settings over anything
  else: ``data.sampling: resize``, ``data.patch: 64`` (64x64 whole-image resizes), ``loss.ssim_grad: false``
  (SSIM without gradient) and ``loss.mask_shift: false`` (high-pass mask without the spectrum shift).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from derain.errors import DerainError
from derain.train.config import OptimConfig, ScheduleConfig, from_dict, read_config_mapping


@dataclass
class LossConfig:
    """Weights of the terms (0 switches one off) and their settings; see :mod:`derain.fsderain.objective`."""

    l1: float = 1.0
    ssim: float = 0.5
    perceptual: float = 0.1
    contrastive: float = 0.1
    fft: float = 0.05
    low_freq: float = 0.0  # unpaired mode only: L1 between the low-frequency spectra of output and input
    ssim_grad: bool = True  # false: the original's SSIM term on detached copies (no gradient)
    mask_shift: bool = True  # false: the original's high-pass mask on the unshifted spectrum
    mask_radius: float = 0.1  # disc radius as a fraction of the image height
    margin: float = 0.3  # triplet margin
    temperature: float = 0.1  # InfoNCE temperature
    triplet_weight: float = 0.1  # inside the contrastive term: triplet_weight x triplet + InfoNCE
    vgg_weights: str | None = None  # torchvision's vgg16-397923af.pth; None: the torch hub cache
    vgg_normalize: bool = False  # ImageNet mean/std before the VGG; the original feeds raw [0, 1]


@dataclass
class DataConfig:
    """Training data (``train`` is the CLI's DATA), validation and sampling.

    ``sampling: crop`` draws random ``patch`` x ``patch`` crops (with the project's random flips/rotations);
    ``resize`` resizes every whole image to ``patch`` x ``patch`` once (bilinear, antialiased as PIL does),
    without augmentation, as the original code does. Validation uses ``val`` (a paired set) when given,
    otherwise the last ``val_holdout`` training pairs are held out for it (paired mode).
    ``clean_pool`` (unpaired mode) is one or more comma-separated folders of clean images, searched
    recursively, whose crops are the contrastive positives.
    """

    train: str | None = None
    val: str | None = None
    val_holdout: int = 20
    val_max_images: int | None = None
    train_max_images: int | None = None
    sampling: str = "crop"
    patch: int = 128
    batch: int = 8
    clean_pool: str | None = None  # e.g. ../shared/data/clean; configs/fsderain_unpaired.yaml names it


@dataclass
class FinetuneConfig:
    """One fine-tuning run; ``model`` names the network for checkpoints that do not (``deraining.pth``)."""

    name: str = "fsderain"
    unpaired: bool = False
    faithful: bool = False
    model: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam", lr=2e-4, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="plateau", factor=0.5, patience=3,
                                                                             min_lr=0.0))
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (quick checks)
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast where the processor has native bf16; bf16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None
    log_every: int = 10
    out_dir: str = "runs"
    time_budget_minutes: float | None = None

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


UNPAIRED_DEFAULTS: dict[str, Any] = {
    "name": "fsderain_unpaired",
    "data": {"val_holdout": 0},
    "schedule": {"name": "constant"},
    "loss": {"l1": 0.0, "ssim": 0.0, "perceptual": 0.0, "fft": 0.0, "contrastive": 0.1, "low_freq": 1.0},
}
FAITHFUL_SETTINGS: dict[str, Any] = {
    "data": {"sampling": "resize", "patch": 64},
    "loss": {"ssim_grad": False, "mask_shift": False},
}
_GROUND_TRUTH_TERMS = ("l1", "ssim", "fft")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_finetune_config(path: str | Path | None, overrides: Iterable[str] = (),
                         unpaired: bool = False) -> FinetuneConfig:
    """Read a YAML config, apply ``key=value`` overrides and the presets, validate everything."""
    data = read_config_mapping(path, overrides)
    if unpaired:
        data["unpaired"] = True
    # Start from every default written out, so that a partial section (``optim: {lr: 1e-4}``) keeps the
    # recipe's other values rather than the engine dataclass's own defaults.
    base = FinetuneConfig().to_dict()
    if data.get("unpaired") is True:
        base = _merge(base, UNPAIRED_DEFAULTS)
    merged = _merge(base, data)
    if data.get("faithful") is True:
        merged = _merge(merged, FAITHFUL_SETTINGS)  # exact reproduction: these win over the file
    config = from_dict(FinetuneConfig, merged)
    validate(config)
    return config


def validate(config: FinetuneConfig) -> None:
    """Value checks that the types alone do not express (one line each)."""
    d, o, lo = config.data, config.optim, config.loss
    checks = [
        (config.epochs > 0, "epochs must be positive"),
        (config.max_steps is None or config.max_steps > 0, "max_steps must be positive (or null)"),
        (d.patch > 0 and d.batch > 0, "data.patch and data.batch must be positive"),
        (d.sampling in ("crop", "resize"), f"data.sampling must be crop or resize, not {d.sampling!r}"),
        (d.val_holdout >= 0, "data.val_holdout must be >= 0"),
        (o.name in ("adam", "adamw"), f"optim.name must be adam or adamw, not {o.name!r}"),
        (o.lr > 0, "optim.lr must be positive"),
        (len(o.betas) == 2, "optim.betas needs two values"),
        (o.accumulate == 1, "optim.accumulate is not supported by derain finetune (use 1)"),
        (config.precision in ("auto", "bf16", "fp32"),
         f"precision must be auto, bf16 or fp32, not {config.precision!r}"),
        (config.log_every > 0, "log_every must be positive"),
        (0.0 < lo.mask_radius < 1.0, "loss.mask_radius must be in (0, 1)"),
        (lo.temperature > 0, "loss.temperature must be positive"),
    ]
    if config.unpaired:
        checks.append((not config.faithful, "faithful reproduces the original paired training code, which has no "
                                            "unpaired mode: drop one of faithful and unpaired"))
        checks.append((d.sampling == "crop", "unpaired mode trains on random crops: data.sampling must be crop"))
        for term in _GROUND_TRUTH_TERMS:
            checks.append((getattr(lo, term) == 0,
                           f"loss.{term} compares with ground truth, which unpaired mode has none of: set it to 0"))
        checks.append((lo.contrastive == 0 or bool(d.clean_pool),
                       "unpaired mode takes its contrastive positives from data.clean_pool: set it "
                       "(e.g. ../shared/data/clean) or loss.contrastive: 0"))
    for ok, message in checks:
        if not ok:
            raise DerainError(f"config: {message}")
