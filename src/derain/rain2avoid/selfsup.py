"""Self-supervised Rain2Avoid training: the job behind ``derain selfsup``.

For each rainy image: LDGP rain mask -> pseudo ground truths -> a fresh UNet trained with MSE between its output
on the rainy image and the pseudo ground truths -> its output is the derained image. At rain pixels the targets
are random background neighbours that change between pseudo ground truths, so the best prediction there is
their mean; elsewhere the target is the pixel itself (no mask enters the loss, as in the official code).

Recipes (``SelfSupConfig``):

* faithful (default): the official schedules. ICASSP: 5,000 full-image steps (100 epochs over 50 pseudo ground
  truths), batch 1, Adam lr 1e-2, batch-norm in train mode at inference. Later version ("nlss"): the same with
  lr 1e-3 and eval-mode inference. ``torch.manual_seed(3)`` once at the start, as the scripts do.
* ``fast``: for CPUs: batches of random crops (each with its own pseudo ground truth and flip), a warmup +
  cosine schedule over far fewer steps, the half-width UNet with a residual output (it starts as the
  identity, so a short schedule only learns the rain), bf16 autocast where the CPU computes bf16 natively.
  Its defaults are a starting point; the measured trade-off between steps and quality is in docs/journal/methods.md
  once measured.
* ``mode="multiple"``: one UNet trained on all the images (the later version's "Multiple" mode: 64x64 crops,
  random flips, one random pseudo ground truth per sample, batch 64, Adam 1e-3 constant, 2,000 epochs; the
  network stays in train mode at test time), then run on each image.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from derain.data.tensors import tensor_to_image
from derain.errors import DerainError
from derain.files.imageio import expand_inputs, read_image, read_uint8_rgb, write_image
from derain.files.outputs import output_paths, prepare_output_dir
from derain.inference.precision import compute_dtype
from derain.inference.restore import pad_to_multiple, padded_forward, resolve_device
from derain.models.rain2avoid_unet import R2AUNet
from derain.rain2avoid import MODES, VARIANTS
from derain.rain2avoid.ldgp import ldgp
from derain.rain2avoid.pseudo_gt import PseudoGT, pseudo_gt
from derain.train.loop import TrainingLoop
from derain.train.schedules import warmup_cosine

SIZE_MULTIPLE = 16
FAITHFUL_STEPS = 5000
FAST_STEPS = 300


@dataclass
class SelfSupConfig:
    """What to train and how; ``None`` fields take the recipe's value (see :func:`resolve`)."""

    variant: str = "icassp"  # "icassp" (ICASSP 2023) or "nlss" (non-local stochastic sampling, later version)
    mode: str = "per-image"  # or "multiple": one network for all the images
    fast: bool = False
    steps: int | None = None
    lr: float | None = None
    width: int | None = None  # UNet width: 64 is the paper's
    residual: bool | None = None  # output = input + UNet (identity at the start); None: fast recipes only
    batch: int | None = None
    crop: int | None = None  # crop side for batched training; 0 = whole images (the faithful per-image recipe)
    num_pseudo: int = 50
    seed: int = 3
    precision: str = "auto"  # auto: bf16 autocast in fast mode where the hardware has it; fp32; bf16
    device: str = "auto"
    bn_train_at_inference: bool | None = None  # None: ICASSP and multiple mode True, nlss per-image False


@dataclass
class Recipe:
    """The concrete numbers a run uses."""

    steps: int
    lr: float
    width: int
    batch: int
    crop: int
    schedule: str  # "constant" or "cosine"
    bn_train_at_inference: bool
    precision: str
    residual: bool = False


@dataclass
class SelfSupJob:
    """Everything ``derain selfsup`` needs to know."""

    inputs: list[str]
    output_dir: Path
    config: SelfSupConfig = field(default_factory=SelfSupConfig)
    overwrite: bool = False
    save_masks: bool = False
    save_pseudo: bool = False
    quiet: bool = False


@dataclass
class SelfSupReport:
    """What a run wrote, skipped, and how long each stage took per image (seconds)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    recipe: Recipe | None = None


def resolve(config: SelfSupConfig, num_images: int = 1) -> Recipe:
    """Fill the ``None`` fields of ``config`` from its recipe; check the values."""
    if config.variant not in VARIANTS:
        raise DerainError(f"unknown variant {config.variant!r}; choose one of {', '.join(VARIANTS)}")
    if config.mode not in MODES:
        raise DerainError(f"unknown mode {config.mode!r}; choose one of {', '.join(MODES)}")
    # The fast recipe trains at 1e-3 for both variants: with its residual UNet, 1e-2 scored 0.65 dB lower on
    # the first three Rain100L crops (benchmarks/rain2avoid_quality.py, docs/journal/methods.md).
    lr = config.lr if config.lr is not None else (1e-2 if config.variant == "icassp" and not config.fast else 1e-3)
    if config.mode == "multiple":
        lr = config.lr if config.lr is not None else 1e-3
        batch = config.batch or (16 if config.fast else 64)
        epochs_steps = 2000 * math.ceil(max(1, num_images) / batch)
        steps = config.steps or (FAST_STEPS * 4 if config.fast else epochs_steps)
        crop = config.crop if config.crop is not None else 64
        schedule = "cosine" if config.fast else "constant"
        bn_train = True if config.bn_train_at_inference is None else config.bn_train_at_inference
    else:
        batch = config.batch or (8 if config.fast else 1)
        steps = config.steps or (FAST_STEPS if config.fast else FAITHFUL_STEPS)
        crop = config.crop if config.crop is not None else (96 if config.fast else 0)
        schedule = "cosine" if config.fast else "constant"
        default_bn = config.variant == "icassp"
        bn_train = default_bn if config.bn_train_at_inference is None else config.bn_train_at_inference
    width = config.width or (32 if config.fast else 64)
    if steps < 1 or batch < 1 or width < 1 or lr <= 0 or config.num_pseudo < 1:
        raise DerainError("steps, batch, width, lr and the number of pseudo ground truths must be positive")
    if crop % SIZE_MULTIPLE or crop < 0:
        raise DerainError(f"--crop must be a multiple of {SIZE_MULTIPLE} (or 0 for whole images), got {crop}")
    if crop == 0 and batch != 1:
        raise DerainError("whole-image training (crop 0) uses batch 1")
    precision = config.precision
    if precision == "auto":
        precision = "auto" if config.fast else "fp32"
    if precision not in ("auto", "fp32", "bf16"):
        raise DerainError(f"unknown precision {config.precision!r}; choose auto, fp32 or bf16")
    residual = config.fast if config.residual is None else config.residual
    return Recipe(steps, lr, width, batch, crop, schedule, bn_train, precision, residual)


# ----------------------------------------------------------------------------------------------------------
# one image's prior and pseudo ground truths


@dataclass
class Prepared:
    """A rainy image with its rain mask and pseudo ground truths."""

    rainy: torch.Tensor  # 3 x H x W uint8
    mask: np.ndarray  # H x W uint8, 255 = rain
    pseudo: PseudoGT


def prepare(rgb: np.ndarray, variant: str, num: int = 50, generator: torch.Generator | None = None,
            timings: dict[str, float] | None = None) -> Prepared:
    """LDGP mask and pseudo ground truths of one H x W x 3 uint8 RGB image."""
    start = time.perf_counter()
    mask = ldgp(rgb, variant).mask
    mid = time.perf_counter()
    rainy = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()
    pseudo = pseudo_gt(variant, rainy, mask, num, generator=generator)
    if timings is not None:
        timings["ldgp"] = mid - start
        timings["pseudo_gt"] = time.perf_counter() - mid
    return Prepared(rainy, mask, pseudo)


# ----------------------------------------------------------------------------------------------------------
# training


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _crop_batch(items: list[Prepared], recipe: Recipe, gen: torch.Generator,
                picks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) B x 3 x c x c: a random crop and flip of image ``picks[b]`` and of one of its pseudo
    ground truths drawn at random. Images smaller than the crop are edge-padded first."""
    c = recipe.crop
    xs, ys = [], []
    for i in picks:
        item = items[i]
        k = int(torch.randint(len(item.pseudo), (1,), generator=gen))
        pair = torch.cat([item.rainy, item.pseudo.image(k)])[None].float()
        h, w = pair.shape[-2:]
        if h < c or w < c:
            pair = F.pad(pair, (0, max(0, c - w), 0, max(0, c - h)), mode="replicate")
            h, w = pair.shape[-2:]
        y0 = int(torch.randint(h - c + 1, (1,), generator=gen))
        x0 = int(torch.randint(w - c + 1, (1,), generator=gen))
        pair = pair[..., y0:y0 + c, x0:x0 + c]
        if torch.rand(1, generator=gen).item() < 0.5:
            pair = pair.flip(-1)
        xs.append(pair[:, :3])
        ys.append(pair[:, 3:])
    return torch.cat(xs) / 255.0, torch.cat(ys) / 255.0


class PseudoTargets:
    """Rain2Avoid's data source: (rainy input, pseudo ground truth) batches. The faithful recipe (crop 0) takes
    the whole (padded) image with its pseudo ground truths in order; the others random crops (see
    :func:`_crop_batch`) of the one image, or of the images in order, a batch at a time (the official folder
    mode)."""

    def __init__(self, items: list[Prepared], recipe: Recipe, generator: torch.Generator) -> None:
        self.items, self.recipe, self.generator = items, recipe, generator
        if recipe.crop == 0:
            self.padded = pad_to_multiple(_to_float(items[0].rainy)[None], SIZE_MULTIPLE)

    def sample(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        items, batch = self.items, self.recipe.batch
        if self.recipe.crop == 0:
            pseudo = items[0].pseudo
            return self.padded, _to_float(pseudo.image(step % len(pseudo)))[None]
        if len(items) == 1:
            picks = [0] * batch
        else:
            start = (step % math.ceil(len(items) / batch)) * batch
            picks = list(range(start, min(start + batch, len(items))))
        return _crop_batch(items, self.recipe, self.generator, picks)


def pseudo_target_mse(forward: Callable[..., torch.Tensor],
                      batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Rain2Avoid's objective: the MSE between the output and the pseudo ground truth, over the target's
    extent (a whole image's padding is left out)."""
    x, target = batch
    out = forward(x)[..., :target.shape[-2], :target.shape[-1]]
    return F.mse_loss(out.float(), target), {}


def train_network(items: list[Prepared], recipe: Recipe, device: torch.device,
                  progress: Callable[[int, float], object] | None = None,  # its result is ignored
                  generator: torch.Generator | None = None) -> R2AUNet:
    """A fresh UNet trained on ``items`` (one image in per-image mode, all of them in multiple mode)."""
    model = R2AUNet(width=recipe.width, residual=recipe.residual).to(device).train()
    schedule = (warmup_cosine(recipe.lr, recipe.steps, max(1, recipe.steps // 20)) if recipe.schedule == "cosine"
                else (lambda step: recipe.lr))
    data = PseudoTargets(items, recipe, generator or torch.Generator().manual_seed(0))
    loop = TrainingLoop(model, pseudo_target_mse, data, torch.optim.Adam(model.parameters(), lr=recipe.lr), schedule,
                        device, compute_dtype(recipe.precision, device))
    for step in range(recipe.steps):
        loss, _, _ = loop.train_step()
        if progress is not None:
            progress(step, loss)
    return model


def run_network(model: R2AUNet, rainy: torch.Tensor, recipe: Recipe, device: torch.device) -> torch.Tensor:
    """The derained image (3 x H x W float in [0, 1]) of a trained network, batch-norm in the recipe's mode."""
    model.train(recipe.bn_train_at_inference)
    forward = padded_forward(model, SIZE_MULTIPLE, device, None)
    return forward(_to_float(rainy)[None])[0].clamp(0, 1).cpu()


# ----------------------------------------------------------------------------------------------------------
# the job


def _save_extras(job: SelfSupJob, src: Path, item: Prepared) -> None:
    """Masks and pseudo ground truths for inspection; like the results, existing files are kept unless
    ``overwrite``."""
    def save(path: Path, pixels: np.ndarray) -> None:
        if job.overwrite or not path.exists():
            write_image(path, pixels)

    if job.save_masks:
        save(job.output_dir / "masks" / f"{src.stem}.png",
             np.repeat(item.mask[..., None], 3, axis=2).astype(np.float32) / 255.0)
    if job.save_pseudo:
        folder = job.output_dir / "pseudo" / src.stem
        for k in range(len(item.pseudo)):
            save(folder / f"{k}.png", tensor_to_image(item.pseudo.image(k)) / 255.0)
        save(folder / "fused.png", tensor_to_image(item.pseudo.fused()) / 255.0)


def _write_result(dst: Path, src: Path, restored: torch.Tensor) -> None:
    meta = read_image(src)  # keep EXIF and the ICC profile of the input, as `derain run` does
    write_image(dst, tensor_to_image(restored), bit_depth=8, exif=meta.exif, icc_profile=meta.icc_profile)


def selfsup(job: SelfSupJob) -> SelfSupReport:
    """Derain every input of ``job`` with self-supervised Rain2Avoid; existing outputs are kept unless
    ``overwrite``."""
    files = expand_inputs(job.inputs)
    outputs = output_paths(files, job.output_dir, None)  # refuses clashes and outputs that are inputs
    cfg = job.config
    recipe = resolve(cfg, len(files))
    prepare_output_dir(job.output_dir)
    report = SelfSupReport(recipe=recipe)
    todo = [(s, d) for s, d in zip(files, outputs) if job.overwrite or not d.exists()]
    report.skipped = [d for s, d in zip(files, outputs) if (s, d) not in todo]
    if not todo:
        return report
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # once, at the start, as the official scripts do
    gen = torch.Generator().manual_seed(cfg.seed)
    tag = f"{cfg.variant}, {'fast' if cfg.fast else 'faithful'}, {recipe.steps} steps"

    def prepared(src: Path) -> Prepared:
        timings: dict[str, float] = {}
        item = prepare(read_uint8_rgb(src), cfg.variant, cfg.num_pseudo, gen, timings)
        report.seconds.setdefault(src.name, {}).update(timings)
        _save_extras(job, src, item)
        return item

    if cfg.mode == "multiple":  # trained on every input, written where the output is missing (or overwritten)
        items = [prepared(src) for src in tqdm(files, unit="img", leave=False, disable=job.quiet,
                                               desc="LDGP + pseudo GT")]
        start = time.perf_counter()
        bar = tqdm(total=recipe.steps, unit="step", disable=job.quiet, desc=f"selfsup multiple ({tag})")
        model = train_network(items, recipe, device,
                              lambda s, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.2e}")), gen)
        bar.close()
        train_seconds = (time.perf_counter() - start) / len(items)
        for src, dst, item in zip(files, outputs, items):
            report.seconds[src.name]["train"] = train_seconds
            if (src, dst) in todo:
                _write_result(dst, src, run_network(model, item.rainy, recipe, device))
                report.written.append(dst)
        return report

    images = tqdm(todo, unit="img", disable=job.quiet or len(todo) == 1, desc="selfsup")
    for src, dst in images:
        item = prepared(src)
        start = time.perf_counter()
        bar = tqdm(total=recipe.steps, unit="step", leave=False, disable=job.quiet, desc=f"{src.name} ({tag})")
        model = train_network([item], recipe, device,
                              lambda s, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.2e}")), gen)
        bar.close()
        _write_result(dst, src, run_network(model, item.rainy, recipe, device))
        report.seconds[src.name]["train"] = time.perf_counter() - start
        report.written.append(dst)
        if not job.quiet:
            t = report.seconds[src.name]
            tqdm.write(f"derain: {dst.name}: LDGP {t['ldgp']:.2f} s, pseudo GT {t['pseudo_gt']:.2f} s, "
                       f"training {t['train']:.1f} s", file=sys.stderr)
    return report
