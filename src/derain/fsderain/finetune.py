"""The fine-tuning loop behind ``derain finetune``: FSDerain (paired) and our unpaired extension.

Any checkpoint the registry loads is the starting point (our self-describing files, a run folder, or a bare
or BasicSR-wrapped state dict such as the official Restormer ``deraining.pth`` together with ``model:
restormer``). Every parameter of the network is trained and its architecture is unchanged; the
FrequencyEncoder is trained jointly (one Adam over both) and left out of the saved weights, so
``derain run --weights RUN_DIR/last.safetensors`` needs nothing else.

One epoch is ceil(N / batch) optimiser steps over the N training images (the last batch of an epoch takes
what is left, as a PyTorch DataLoader without ``drop_last`` does). After every epoch the network is
validated (``matlab-y`` PSNR/SSIM at full resolution) when a validation set exists, the plateau schedule
sees the PSNR, and ``last.safetensors`` is written; ``best.safetensors`` holds the best validation score.
Run folder files: those two, ``train.log`` and ``config.yaml``. There is no resume: a time budget ends the
run cleanly with the weights reached so far.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from derain.data.datasets import PairedPatches, load_pairs, to_tensor
from derain.data.pairs import find_pairs, is_dataset
from derain.errors import DerainError
from derain.fsderain.config import FinetuneConfig, load_finetune_config
from derain.fsderain.objective import FSDerainObjective
from derain.fsderain.unpaired import UnpairedObjective
from derain.inference.precision import compute_dtype
from derain.inference.restore import primary_output, resolve_device
from derain.models import get_spec
from derain.train.loop import Batch, Progress, TrainingLoop, validate
from derain.train.rundir import BEST, LAST, Logger, claim_run_dir, weights_path_for
from derain.train.schedules import PlateauSchedule

Pairs = list[tuple[str, np.ndarray, np.ndarray]]


# ----- the starting network -----------------------------------------------------------------------------
def load_source(checkpoint: str | Path, model: str | None = None) -> tuple[nn.Module, str, dict[str, Any]]:
    """(network, registry name, its configuration) of the checkpoint to fine-tune, or one clear line.

    ``checkpoint`` may be a run folder (its ``last.safetensors``); ``model`` names the network when the
    file does not (e.g. ``restormer`` for the official ``deraining.pth``).
    """
    from derain.files.checkpoints import FORMAT_TAG, read_checkpoint
    from derain.weights.load import load_model

    try:
        path = weights_path_for(checkpoint)
        net, name = load_model(model, path)
        # The configuration to save with the fine-tuned weights: the one load_model built the network with.
        obj = read_checkpoint(path)
        described = obj.get("format") == FORMAT_TAG and obj.get("model") == name
        config = {**get_spec(name).default_config, **(dict(obj.get("config") or {}) if described else {})}
    except DerainError as exc:
        raise DerainError(f"cannot fine-tune from {checkpoint}: {exc}") from None
    for p in net.parameters():
        p.requires_grad_(True)  # every parameter is fine-tuned, none frozen
    return net, name, config


# ----- data ---------------------------------------------------------------------------------------------
class ResizedPairs:
    """Whole images resized once to ``size`` x ``size`` (PIL bilinear, antialiased: what torchvision's
    ``Resize`` does to PIL images), visited in shuffled epochs, without augmentation: the original recipe."""

    def __init__(self, pairs: Pairs, size: int, seed: int = 0) -> None:
        def shrink(a: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))

        self.inputs = np.stack([shrink(p[1]) for p in pairs])
        self.targets = np.stack([shrink(p[2]) for p in pairs])
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(pairs))
        self.position = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def sample(self, batch: int, patch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch`` images of the current epoch order (a new order when it is used up)."""
        index = []
        for _ in range(batch):
            if self.position >= len(self.order):
                self.order, self.position = self.rng.permutation(len(self.inputs)), 0
            index.append(int(self.order[self.position]))
            self.position += 1
        return to_tensor(self.inputs[index]), to_tensor(self.targets[index])


def load_images(roots: str, what: str, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) of the images under comma-separated folders (recursive), naturally sorted."""
    from derain.files.imageio import IMAGE_SUFFIXES, natural_key, read_uint8_rgb

    files: list[Path] = []
    for part in (r.strip() for r in roots.split(",") if r.strip()):
        root = Path(part)
        if not root.exists():
            raise DerainError(f"{what} not found: {root}")
        files += [root] if root.is_file() else sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        raise DerainError(f"no images in {roots} ({what})")
    return [(str(f), read_uint8_rgb(f)) for f in files[:limit]]


def paired_training_data(root: str, limit: int | None) -> Pairs:
    """The pairs of ``root``; a folder of rainy photos without ground truth is reported as such."""
    folder = Path(root)
    if not folder.is_dir():
        raise DerainError(f"training data folder not found: {folder}")
    if not is_dataset(folder):
        raise DerainError(f"{folder} holds no rainy/clean pairs (input/+target/, rainy/+clean/, input/+gt/ ...): "
                          "for rainy photos without ground truth use derain finetune --unpaired")
    return load_pairs(folder, limit)


def unpaired_training_images(root: str, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """Rainy photos for the unpaired mode: a folder of images, or the inputs of a paired set (its clean
    targets are never used, so they cannot leak into unpaired training)."""
    from derain.files.imageio import read_uint8_rgb

    folder = Path(root)
    if folder.is_dir() and is_dataset(folder):
        pairs = find_pairs(folder)[:limit]
        return [(str(p.input), read_uint8_rgb(p.input)) for p in pairs]
    return load_images(root, "rainy training images", limit)


# ----- the loop's configuration -------------------------------------------------------------------------
class EpochBatches:
    """FSDerain's data source: ceil(N / batch) steps per epoch over the N training images, the last batch of
    an epoch taking what is left (a DataLoader without ``drop_last``); batches ``(input, target)``, or in the
    unpaired mode ``(rainy input, clean-pool patches or None)``."""

    def __init__(self, train: PairedPatches | ResizedPairs, n_train: int, batch: int, patch: int,
                 unpaired: bool = False, clean: PairedPatches | None = None) -> None:
        self.train, self.n_train, self.batch, self.patch = train, n_train, batch, patch
        self.unpaired, self.clean = unpaired, clean
        self.steps_per_epoch = math.ceil(n_train / batch)

    def sample(self, step: int) -> Batch:
        size = min(self.batch, self.n_train - (step % self.steps_per_epoch) * self.batch)
        x, y = self.train.sample(size, self.patch)
        if not self.unpaired:
            return x, y
        return x, self.clean.sample(size, self.patch)[1] if self.clean is not None else None


class FinetuneObjective:
    """FSDerain's losses on the network's (primary) output: paired ``losses(out, target, input)``, unpaired
    ``losses(out, input, clean patches)``."""

    def __init__(self, losses: nn.Module, unpaired: bool) -> None:
        self.losses, self.unpaired = losses, unpaired

    def __call__(self, forward: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, other = batch
        out = primary_output(forward(x)).float()  # the loss is computed in float32 (FFTs, SSIM, small differences)
        return self.losses(out, x, other) if self.unpaired else self.losses(out, other, x)


# ----- the run ------------------------------------------------------------------------------------------
def _describe_terms(config: FinetuneConfig) -> str:
    lo = config.loss
    names = ("l1", "ssim", "perceptual", "contrastive", "fft", "low_freq")
    on = [f"{n} {getattr(lo, n):g}" for n in names if getattr(lo, n) > 0]
    off = [n for n in names if getattr(lo, n) == 0]
    notes = []
    if lo.ssim > 0 and not lo.ssim_grad:
        notes.append("SSIM without gradient (faithful)")
    if not lo.mask_shift:
        notes.append("high-pass mask without fftshift (faithful)")
    return ("loss terms on: " + ", ".join(on) + (f"; off: {', '.join(off)}" if off else "")
            + (f"; {'; '.join(notes)}" if notes else ""))


class FineTuner(TrainingLoop):
    """The training loop configured for one fine-tuning run; :meth:`fit` runs it. See the module docstring."""

    def __init__(self, checkpoint: str | Path, config: FinetuneConfig, run_dir: str | Path | None = None,
                 perceptual: nn.Module | None = None, overwrite: bool = False) -> None:
        self.config = cfg = config
        self.started = time.monotonic()
        if cfg.data.train is None:
            raise DerainError("no training data: pass DATA (a paired set, or rainy photos with --unpaired)")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.dtype = compute_dtype(cfg.precision, self.device)
        self.source = str(checkpoint)
        self.model, self.model_name, self.model_config = load_source(checkpoint, cfg.model)
        self.model.to(self.device)
        self.spec = get_spec(self.model_name)
        if cfg.data.patch % self.spec.size_multiple:
            raise DerainError(f"data.patch {cfg.data.patch} must be a multiple of {self.spec.size_multiple} "
                              f"for model {self.model_name!r}")

        # The loss first: a missing VGG file is reported before any data is read.
        self.losses: nn.Module = (UnpairedObjective(cfg.loss, perceptual=perceptual) if cfg.unpaired
                                  else FSDerainObjective(cfg.loss, perceptual=perceptual))
        self.val_pairs: Pairs = []
        self.clean: PairedPatches | None = None
        if cfg.unpaired:
            rainy = unpaired_training_images(cfg.data.train, cfg.data.train_max_images)
            self.n_train = len(rainy)
            self.train: PairedPatches | ResizedPairs = PairedPatches([(n, a, a) for n, a in rainy], seed=cfg.seed,
                                                                     label="rainy training image")
            if cfg.loss.contrastive > 0:
                assert cfg.data.clean_pool is not None  # validate() guarantees it
                pool = load_images(cfg.data.clean_pool, "clean image pool (data.clean_pool)")
                self.clean = PairedPatches([(n, a, a) for n, a in pool], seed=cfg.seed + 1,
                                           label="clean pool image (data.clean_pool)")
                self.clean.check_patch(cfg.data.patch)
        else:
            pairs = paired_training_data(cfg.data.train, cfg.data.train_max_images)
            if not cfg.data.val and cfg.data.val_holdout:
                if cfg.data.val_holdout >= len(pairs):
                    raise DerainError(f"data.val_holdout {cfg.data.val_holdout} leaves no training pairs "
                                      f"out of {len(pairs)}")
                pairs, self.val_pairs = pairs[:-cfg.data.val_holdout], pairs[-cfg.data.val_holdout:]
            self.n_train = len(pairs)
            self.train = (ResizedPairs(pairs, cfg.data.patch, seed=cfg.seed) if cfg.data.sampling == "resize"
                          else PairedPatches(pairs, seed=cfg.seed))
        if cfg.data.val:
            self.val_pairs = load_pairs(cfg.data.val, cfg.data.val_max_images)
        elif cfg.data.val_max_images is not None:
            self.val_pairs = self.val_pairs[:cfg.data.val_max_images]
        if cfg.data.sampling == "crop" and isinstance(self.train, PairedPatches):  # ResizedPairs only for "resize"
            self.train.check_patch(cfg.data.patch)
        self.losses.to(self.device)

        params = list(self.model.parameters()) + list(self.losses.trainable_parameters())
        opt_cls = torch.optim.AdamW if cfg.optim.name == "adamw" else torch.optim.Adam
        betas = (cfg.optim.betas[0], cfg.optim.betas[1])  # the config checks there are two
        optimizer = opt_cls(params, lr=cfg.optim.lr, betas=betas, weight_decay=cfg.optim.weight_decay)
        data = EpochBatches(self.train, self.n_train, cfg.data.batch, cfg.data.patch, cfg.unpaired, self.clean)
        self.steps_per_epoch = data.steps_per_epoch
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        from derain.train.schedules import make_schedule

        schedule = make_schedule(cfg.schedule, cfg.optim.lr, self.total_steps)
        super().__init__(self.model, FinetuneObjective(self.losses, cfg.unpaired), data, optimizer, schedule,
                         self.device, self.dtype, grad_clip=cfg.optim.grad_clip or 0.0, started=self.started)
        self.best_psnr = -math.inf

        self.run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir()
        claim_run_dir(self.run_dir, overwrite)  # after the source is loaded: it may be this folder's last run
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = Logger(self.run_dir / "train.log")
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # ----- checkpoints and validation --------------------------------------------------------------------
    def save(self, name: str, epoch: int, kind: str) -> Path:
        """The network's weights (no FrequencyEncoder) as a self-describing checkpoint in the run folder."""
        from derain.files.checkpoints import save_checkpoint

        extra = {"step": self.step, "epoch": epoch, "kind": kind, "finetuned_from": self.source,
                 "recipe": "fsderain-unpaired" if self.config.unpaired else "fsderain",
                 "finetune_config": self.config.to_dict()}
        return save_checkpoint(self.run_dir / name, self.model, self.model_name, self.model_config, extra=extra)

    def end_of_epoch(self, epoch: int) -> None:
        """Validate (when there is a validation set), step the plateau schedule, write the checkpoints."""
        if self.val_pairs:
            t = time.monotonic()
            psnr, ssim_value = validate(self.model, self.val_pairs, self.spec.size_multiple, self.device, self.dtype)
            note = ""
            if psnr > self.best_psnr:
                self.best_psnr = psnr
                self.save(BEST, epoch, "best on validation")
                note = f" (best so far, {BEST})"
            self.log(f"epoch {epoch} step {self.step} val {len(self.val_pairs)} pairs matlab-y PSNR {psnr:.3f} "
                     f"SSIM {ssim_value:.4f} [{time.monotonic() - t:.0f}s]{note}")
            if isinstance(self.schedule, PlateauSchedule) and self.schedule.observe(psnr):
                self.log(f"epoch {epoch} validation PSNR below its best ({self.schedule.best:.3f}) for "
                         f"{self.config.schedule.patience + 1} epochs: lr lowered to {self.schedule(self.step):.3e}")
        self.save(LAST, epoch, "last")

    # ----- the loop ------------------------------------------------------------------------------------
    smoothing = (0.9, 0.1)  # the running loss of the log averages about 10 steps

    def after_step(self, progress: Progress, done: bool, out_of_time: bool) -> None:
        """The log line; at the end of each epoch (or of the run), :meth:`end_of_epoch`."""
        epoch = (self.step - 1) // self.steps_per_epoch + 1
        if self.step % self.config.log_every == 0 or done:
            terms = " ".join(f"{k} {v:.4f}" for k, v in progress.parts.items())
            # ms/step of the steps alone, not inflated by validation and checkpoints
            self.log(f"epoch {epoch} step {self.step}/{self.total_steps} loss {progress.running:.5f} ({terms}) "
                     f"lr {progress.lr:.3e} {progress.train_per_step * 1000:.0f} ms/step")
        if done or out_of_time or self.step % self.steps_per_epoch == 0:
            self.end_of_epoch(epoch)

    def fit(self) -> Path:
        """Fine-tune for ``epochs`` (or ``max_steps``, or the time budget); returns ``last.safetensors``."""
        cfg = self.config
        budget = cfg.time_budget_minutes * 60.0 if cfg.time_budget_minutes else None
        mode = "unpaired (our extension)" if cfg.unpaired else "paired"
        sampling = (f"{cfg.data.patch}x{cfg.data.patch} whole-image resizes" if cfg.data.sampling == "resize"
                    else f"random {cfg.data.patch}x{cfg.data.patch} crops")
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(f"fine-tuning {self.model_name} ({n_params / 1e6:.2f}M params, all trained) from {self.source}, "
                 f"FSDerain {mode}{', faithful' if cfg.faithful else ''}: {self.n_train} training images, {sampling}, "
                 f"batch {cfg.data.batch}, {self.steps_per_epoch} steps/epoch, {self.total_steps} steps, "
                 f"{cfg.optim.name} lr {cfg.optim.lr:g}, schedule {cfg.schedule.name}, "
                 f"precision {'bf16' if self.dtype else 'fp32'}, threads {torch.get_num_threads()}"
                 + (f", time budget {cfg.time_budget_minutes:g} min" if budget else ""))
        self.log(_describe_terms(cfg) + (f"; clean pool {len(self.clean)} images" if self.clean else ""))
        if not self.val_pairs:
            self.log("no validation set: the plateau schedule (if any) keeps its lr" if cfg.schedule.name == "plateau"
                     else "no validation set")
        self.model.train()
        self.losses.train()
        stopped = self.run(self.total_steps, budget)
        last = self.run_dir / LAST
        if stopped:
            self.log(f"time budget reached: stopped at step {self.step}/{self.total_steps}; weights in {last}")
        else:
            self.log(f"finished {self.step} steps; weights in {last}")
        return last


def finetune(checkpoint: str | Path, data: str | Path, config_path: str | Path | None = None, unpaired: bool = False,
             run_dir: str | Path | None = None, time_budget_minutes: float | None = None,
             overrides: Iterable[str] = (), model: str | None = None,
             perceptual: nn.Module | None = None, overwrite: bool = False) -> Path:
    """Fine-tune ``checkpoint`` on ``data`` as the config says; returns the run's ``last.safetensors``.

    ``overrides`` are ``key=value`` with dotted keys; ``model`` names the network for checkpoints that do not
    name it; ``perceptual`` replaces the VGG perceptual module (tests); a run folder holding an earlier run's
    checkpoints is an error unless ``overwrite``.
    """
    config = load_finetune_config(config_path, overrides, unpaired=unpaired)
    config.data.train = str(data)
    if model is not None:
        config.model = model
    if time_budget_minutes is not None:
        config.time_budget_minutes = time_budget_minutes
    return FineTuner(checkpoint, config, run_dir=run_dir, perceptual=perceptual, overwrite=overwrite).fit()


__all__: Sequence[str] = ["EpochBatches", "FineTuner", "FinetuneObjective", "ResizedPairs", "finetune", "load_source"]
