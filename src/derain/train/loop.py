"""The training loop: one place that steps, logs, validates, checkpoints and resumes exactly.

:class:`TrainingLoop` is the loop every training in the toolkit runs: a network minimises an
:class:`Objective` over the batches of a :class:`DataSource` (``sample(step)``). Its configurations:
:class:`Trainer` (``derain train``: :class:`SupervisedObjective` over :class:`StagedBatches`, with the run
folder below), FSDerain's fine-tuning (:class:`derain.fsderain.finetune.FineTuner`: the paired/unpaired
losses over epochs) and Rain2Avoid's self-supervision (:func:`derain.rain2avoid.selfsup.train_network`: a
fresh UNet on pseudo ground truths).

Files in the run folder (``<out_dir>/<name>/``):

- ``last.safetensors``: the weights to use (EMA weights when ``ema_decay`` > 0), written by
  :func:`derain.files.checkpoints.save_checkpoint` with the model name and config in its metadata, so
  ``derain run --weights`` needs nothing else;
- ``last.state.pt``: the resume state (raw weights, optimiser, EMA, schedule, RNG and sampler states of every
  process, step), a torch file because it holds Python objects as well as tensors;
- ``best.safetensors``: the weights that scored best on the validation set, **for monitoring only**: when
  the validation set is a test set (Rain100L), picking this file would be selection on the test set;
- ``train.log`` (plain text), ``config.yaml`` (the resolved config), ``tensorboard/`` when enabled.

All randomness is in saved generators and the schedule's state is saved, so a run cut into pieces
(``time_budget_minutes``, then ``resume``) ends with the same weights as an uninterrupted run.

Under ``torchrun`` (see :mod:`derain.train.distributed`) the model is wrapped in DistributedDataParallel:
every process starts from the same weights, draws its own patches (sampler seed ``seed + rank``) and
gradients are averaged, so the effective batch is ``data.batch x world_size x optim.accumulate``. Rank 0
alone logs, validates and writes files; the others wait for it at a barrier.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, cast

import numpy as np
import torch
import yaml
from tqdm import tqdm

from derain.data.datasets import load_pairs
from derain.data.tensors import image_to_tensor, tensor_to_uint8
from derain.errors import DerainError
from derain.inference.precision import autocast_context, compute_dtype
from derain.inference.restore import InferenceOptions, restore
from derain.losses import build_loss
from derain.models import build, get_spec
from derain.models.capabilities import capabilities_of
from derain.train import distributed
from derain.train.batches import make_batches
from derain.train.config import Stage, TrainConfig, load_config
from derain.train.ema import EMA
from derain.train.rundir import BEST, LAST, STATE_SUFFIX, Logger, claim_run_dir, state_path_for, weights_path_for
from derain.train.schedules import PlateauSchedule, make_schedule

# The running loss averages about 50 steps: before that a few batches weigh too much to judge by (one easy
# batch under a squared error can sit 20x below the typical loss).
DIVERGENCE_SETTLE_STEPS = 50


def uses_channels_last(memory_format: str, model: torch.nn.Module) -> bool:
    """Whether training keeps ``model`` and its batches channels-last under ``memory_format``."""
    if memory_format == "auto":
        return capabilities_of(model).channels_last_training
    return memory_format == "channels_last"


def _tensorboard_writer(folder: Path, create: bool) -> Any:
    """A SummaryWriter in ``folder`` (only where ``create``); checks everywhere that the package exists."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: not a dependency of derain
    except ImportError:
        raise DerainError("tensorboard: true needs the 'tensorboard' package: pip install tensorboard "
                          "(or set tensorboard: false)") from None
    return SummaryWriter(str(folder)) if create else None


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (time budget and warm start ignored)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in ("time_budget_minutes", "warm_start", "tensorboard"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


Batch = tuple[Any, ...]  # what a data source hands the objective: the network's input first (tensors or None)


class DataSource(Protocol):
    """Where each step's batch comes from; the step may decide its shape (stages, the end of an epoch)."""

    def sample(self, step: int) -> Batch: ...


class Objective(Protocol):
    """What a step minimises: ``objective(forward, batch) -> (loss, its named terms)``, where ``forward`` runs
    the network under the loop's autocast (the objective computes its loss in float32)."""

    def __call__(self, forward: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


class SupervisedObjective:
    """``derain train``'s objective: the configured loss of the output against the target; an all-in-one
    model's selector logits feed the loss's selector term (batches ``(input, target[, task])``)."""

    def __init__(self, loss: torch.nn.Module) -> None:
        self.loss = loss

    def __call__(self, forward: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0], batch[1]
        selector = None
        if self.loss.needs_selector:
            result = forward(x, details=True)
            out, selector = result.image, (result.logits, batch[2] if len(batch) > 2 else None)
        else:
            out = forward(x)
        # Multi-output networks (DMSR) return a list of images, full resolution first.
        out = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
        return self.loss(out, y, selector)


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage (patch and batch) in force at ``step``; ``stages`` sorted by start, the first at 0."""
    return [s for s in stages if s.start <= step][-1]


class StagedBatches:
    """``derain train``'s data source: batches of the patch and size of the stage the step is in."""

    def __init__(self, batches: Any, stages: list[Stage]) -> None:
        self.batches, self.stages = batches, stages

    def sample(self, step: int) -> Batch:
        stage = stage_at(self.stages, step)
        return self.batches.sample(stage.batch, stage.patch)


@torch.no_grad()
def validate(model: torch.nn.Module, pairs: list[tuple[str, np.ndarray, np.ndarray]], size_multiple: int,
             device: torch.device, dtype: torch.dtype | None) -> tuple[float, float]:
    """Mean ``matlab-y`` PSNR/SSIM of ``model`` on whole ``pairs`` (padded to its size multiple), on the
    reference inference path in the precision it trains in."""
    from derain.metrics import psnr_ssim

    was_training = model.training
    model.eval()
    options = InferenceOptions(tile=0, precision="bf16" if dtype == torch.bfloat16 else "fp32", fast=False)
    scores = []
    for _, inp, tgt in pairs:
        x = image_to_tensor(inp)
        y = restore(model, x, size_multiple, options, device=device)
        scores.append(psnr_ssim(tensor_to_uint8(y), tgt, protocol="matlab-y"))
    model.train(was_training)
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


@dataclass
class Progress:
    """Where a run stands after a step: the running loss, the step's loss terms and lr, how many steps this
    run has made and their mean seconds, wall-clock (with validation and checkpoints) and training only."""

    running: float
    parts: dict[str, float]
    lr: float
    steps: int
    wall_per_step: float
    train_per_step: float


class TrainingLoop:
    """The one training step: a network minimises an objective over batches of a data source, with an
    optimiser whose lr follows a schedule; optionally gradient accumulation and clipping, an EMA of the
    weights and DDP (``net``). :class:`Trainer` (``derain train``), FSDerain's fine-tuning and Rain2Avoid's
    self-supervision are configurations of it."""

    # The running loss's weights (past, new): 0.98 averages about 50 steps.
    smoothing = (0.98, 0.02)

    def __init__(self, model: torch.nn.Module, objective: Objective, data: DataSource,
                 optimizer: torch.optim.Optimizer, schedule: Callable[[int], float], device: torch.device,
                 dtype: torch.dtype | None = None, *, memory_format: torch.memory_format | None = None,
                 accumulate: int = 1, grad_clip: float = 0.0, ema: EMA | None = None,
                 dist: distributed.DistInfo | None = None, started: float | None = None) -> None:
        self.model, self.objective, self.data = model, objective, data
        self.optimizer, self.schedule = optimizer, schedule
        # memory_format: the layout batches are put in (the model's); None keeps the data source's layout, on
        # which FSDerain's and Rain2Avoid's recipes were measured (another layout sums in another order).
        self.device, self.dtype, self.memory_format = device, dtype, memory_format
        self.accumulate, self.grad_clip, self.ema = accumulate, grad_clip, ema
        self.dist = dist or distributed.DistInfo()
        self.net: torch.nn.Module = model  # the DistributedDataParallel wrapper under torchrun
        self.step = 0
        self.started = time.monotonic() if started is None else started  # a time budget counts from here

    def forward(self, x: torch.Tensor, **kwargs: Any) -> Any:
        """The network's output for ``x`` under the loop's autocast."""
        with autocast_context(self.device, self.dtype):
            return self.net(x, **kwargs)

    def _to_device(self, batch: Batch) -> Batch:
        layout = self.memory_format
        return tuple(t if t is None else t.to(self.device).contiguous(memory_format=layout)
                     if t.dim() == 4 and layout is not None else t.to(self.device) for t in batch)

    def train_step(self) -> tuple[float, dict[str, float], float]:
        """One optimiser step (with accumulation); returns the loss, its terms and the lr used.

        The loss of each micro-batch is divided by ``accumulate`` so the summed gradients are those of the
        mean loss over all micro-batches: accumulating N batches of B gives the update of one batch of N x B.
        """
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        parts: dict[str, Any] = {}
        for i in range(self.accumulate):
            batch = self._to_device(self.data.sample(self.step))
            # Under DDP, gradients are all-reduced only on the last micro-batch (no_sync skips the others).
            last_micro = i == self.accumulate - 1
            ddp = cast(torch.nn.parallel.DistributedDataParallel, self.net)  # the wrapper when distributed
            sync = ddp.no_sync() if self.dist.enabled and not last_micro else contextlib.nullcontext()
            with sync:
                loss, parts = self.objective(self.forward, batch)
                (loss / self.accumulate).backward()
            total += float(loss.detach()) / self.accumulate
        total = distributed.mean_scalar(total, self.device)  # every rank sees (and stops on) the same loss
        if not math.isfinite(total):
            raise RuntimeError(f"loss is {total} at step {self.step}; lower optim.lr or set optim.grad_clip")
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return total, parts, lr

    def after_step(self, progress: Progress, done: bool, out_of_time: bool) -> None:
        """What a configuration does after each step of :meth:`run` (logs, validation, checkpoints)."""

    def run(self, end_step: int, budget_s: float | None = None, stop_at: int | None = None) -> bool:
        """Step until ``end_step``, the time budget (``budget_s`` since :attr:`started`, stopping before a step
        that would not fit) or ``stop_at``, with :meth:`after_step` after each step; returns whether it stopped
        before ``end_step``."""
        first, loop_start, train_seconds = self.step, time.monotonic(), 0.0
        running: float | None = None
        while self.step < end_step:
            t = time.monotonic()
            loss, parts, lr = self.train_step()
            train_seconds += time.monotonic() - t
            past, new = self.smoothing
            running = loss if running is None else past * running + new * loss
            steps = self.step - first
            progress = Progress(running, parts, lr, steps, (time.monotonic() - loop_start) / steps,
                                train_seconds / steps)
            done = self.step >= end_step
            out_of_time = budget_s is not None and time.monotonic() - self.started + progress.wall_per_step > budget_s
            if budget_s is not None:  # clocks differ between processes: rank 0 decides for all
                out_of_time = bool(distributed.broadcast_object(out_of_time))
            out_of_time = out_of_time or (stop_at is not None and self.step >= stop_at)
            self.after_step(progress, done, out_of_time)
            if out_of_time and not done:
                return True
        return False


class Trainer(TrainingLoop):
    """``derain train``: builds everything a config describes and runs the loop (see the module docstring)."""

    _logged: tuple[float, int]  # (time, step) of the last log line; set when the loop starts
    _lowest: float  # the lowest settled running loss

    def __init__(self, config: TrainConfig, resume: str | None = None) -> None:
        self.config = config
        self.started = time.monotonic()
        if config.threads:
            torch.set_num_threads(config.threads)
        # Joins the torchrun process group when the environment describes one (a no-op otherwise).
        self.dist, self.device, self._owns_group = distributed.setup(config.device)
        self.is_main = self.dist.is_main
        self.dtype = compute_dtype(config.precision, self.device)
        self.spec = get_spec(config.model.name)
        self.model_config = {**self.spec.default_config, **config.model.options}
        self._seed(config.seed)  # the same seed on every rank: identical initial weights everywhere
        self.model = build(config.model.name, **config.model.options).to(self.device)
        self.memory_format = (torch.channels_last if uses_channels_last(config.memory_format, self.model)
                              else torch.contiguous_format)
        self.model = self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # torch stubs lack it

        self.run_dir = config.run_dir()
        self.log = Logger(self.run_dir / "train.log", enabled=self.is_main)
        # Each rank draws its own patches (and synthetic rain): its samplers are seeded with seed + rank. Only
        # rank 0 caches teacher targets (data.teacher) in the run folder; the others compute the same ones.
        self.batches = make_batches(config.data, seed=config.seed + self.dist.rank,
                                    cache_dir=self.run_dir if self.is_main else None, device=self.device, log=self.log)
        for stage in self._stages():
            self.batches.check_patch(stage.patch)
            if stage.patch % self.spec.size_multiple:
                raise DerainError(f"patch size {stage.patch} must be a multiple of {self.spec.size_multiple} "
                                  f"for model {config.model.name!r}")
        # Only rank 0 validates, so only it holds the validation images.
        self.has_val = bool(config.data.val)
        self.val_pairs = (load_pairs(config.data.val, config.data.val_max_images)
                          if config.data.val and self.is_main else [])

        opt_cls = torch.optim.AdamW if config.optim.name == "adamw" else torch.optim.Adam
        betas = (config.optim.betas[0], config.optim.betas[1])  # the config checks there are two
        self.optimizer = opt_cls(self.model.parameters(), lr=config.optim.lr, betas=betas,
                                 weight_decay=config.optim.weight_decay, fused=config.optim.fused or None)
        self.schedule = make_schedule(config.schedule, config.optim.lr, config.total_steps)
        self.loss = build_loss(config.loss).to(self.device)
        if self.loss.needs_selector and not (config.data.tasks and capabilities_of(self.model).has_selector):
            raise DerainError(f"loss term 'selector' needs data.tasks and an all-in-one model with a degradation "
                              f"selector (e.g. fsdrnet), not {config.model.name!r}")
        ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        super().__init__(self.model, SupervisedObjective(self.loss), StagedBatches(self.batches, self._stages()),
                         self.optimizer, self.schedule, self.device, self.dtype, memory_format=self.memory_format,
                         accumulate=config.optim.accumulate, grad_clip=config.optim.grad_clip or 0.0, ema=ema,
                         dist=self.dist, started=self.started)
        self.saved_step = -1
        self.best_psnr = -math.inf

        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tb = _tensorboard_writer(self.run_dir / "tensorboard", self.is_main) if config.tensorboard else None
        if resume:
            self._load_state(resume)
        elif config.warm_start:
            self._warm_start(config.warm_start)
        # DDP broadcasts rank 0's weights at construction, so all ranks start equal even after a warm start.
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # FastDerain's 1x1 branch kernels get gradients whose size-1 dimensions carry other strides than
            # DDP's buckets: the same memory layout, but DDP warns on every process. Nothing to fix.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if self.is_main:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    def close(self) -> None:
        """Flush TensorBoard and leave the process group if this trainer joined it."""
        if self.tb is not None:
            self.tb.close()
        distributed.teardown(self._owns_group)

    # ----- setup helpers -------------------------------------------------------------------------------
    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _stages(self) -> list[Stage]:
        stages = sorted(self.config.data.stages, key=lambda s: s.start)
        if not stages or stages[0].start > 0:
            stages.insert(0, Stage(0, self.config.data.patch, self.config.data.batch))
        return stages

    def _stage_at(self, step: int) -> Stage:
        return stage_at(self._stages(), step)

    def _warm_start(self, path: str) -> None:
        from derain.files.checkpoints import load_weights
        from derain.weights.load import load_model

        weights = weights_path_for(path)
        source, name = load_model(self.config.model.name, weights)
        if name != self.config.model.name:
            raise DerainError(f"warm_start {path} holds model {name!r}, the config trains {self.config.model.name!r}")
        state = source.state_dict()
        if hasattr(self.model, "grown_state_dict"):  # e.g. FastDerain grown by a full-resolution level
            state, added = cast(Any, self.model).grown_state_dict(state)
            if added:
                self.log(f"warm start adds new modules (starting at their initial values): {', '.join(added)}")
        load_weights(self.model, state, what=f"warm_start {path}")
        if self.ema is not None:
            self.ema = EMA(self.model, self.config.ema_decay)
        self.log(f"warm start from {weights}")

    def _rank_state(self) -> dict[str, Any]:
        """This process's randomness: its batch sampler and the global generators."""
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"batches": self.batches.state_dict(), "rng": rng}

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _load_state(self, resume: str) -> None:
        from derain.files.checkpoints import load_weights

        path = state_path_for(resume)
        if not path.is_file():
            raise DerainError(f"cannot resume: no training state at {path} (written beside {LAST} by derain train)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a truncated or foreign file: say which, in one line
            raise DerainError(f"cannot resume: {path} is not a readable training state "
                              f"({type(exc).__name__})") from None
        if not isinstance(state, dict) or "model" not in state or "step" not in state:
            raise DerainError(f"cannot resume: {path} is not a training state written by derain train")
        if state.get("model_name") != self.config.model.name:
            raise DerainError(f"cannot resume: {path} is a checkpoint of model {state.get('model_name')!r}, "
                              f"the config trains {self.config.model.name!r}")
        load_weights(self.model, state["model"], what=f"cannot resume: {path.name}")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise DerainError(f"cannot resume: {path} has no EMA state but the config sets ema_decay")
            self.ema.load_state_dict(state["ema"])
        if hasattr(self.schedule, "load_state_dict") and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        # Older states hold one process's sampler and generators at the top level.
        ranks = state.get("ranks") or [{"batches": state["sampler"], "rng": state["rng"]}]
        if len(ranks) != self.dist.world_size:
            self.log(f"note: the run was saved by {len(ranks)} process(es), resuming with {self.dist.world_size}: "
                     "the data order is not an exact continuation")
        if self.dist.rank < len(ranks):
            self._load_rank_state(ranks[self.dist.rank])
        self.step = self.saved_step = int(state["step"])
        changed = _changed_keys(state.get("config", {}), self.config.to_dict())
        if changed:  # allowed (e.g. a longer run), but an exact continuation needs the same recipe
            self.log(f"note: resuming with changed config keys: {', '.join(changed)}")
        self.best_psnr = float(state.get("best_psnr", -math.inf))
        self.log(f"resumed from {path} at step {self.step}")

    # ----- checkpoints ---------------------------------------------------------------------------------
    def export_model(self) -> torch.nn.Module:
        """The weights to ship: a copy holding the EMA average, or the model itself without EMA."""
        if self.ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model)
        return model

    def _save_weights(self, path: Path, model: torch.nn.Module, kind: str) -> None:
        from derain.files.checkpoints import save_checkpoint

        extra = {"step": self.step, "kind": kind, "train_config": self.config.to_dict()}
        save_checkpoint(path, model, self.config.model.name, self.model_config, extra=extra)  # atomic

    def save(self) -> Path:
        """Write ``last.safetensors`` and its resume state (rank 0; every rank must call this)."""
        ranks = distributed.gather_objects(self._rank_state())  # collective: every rank takes part
        last = self.run_dir / LAST
        if self.is_main:
            self._save_weights(last, self.export_model(), "last")
            state = {
                "step": self.step,
                "model_name": self.config.model.name,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "schedule": self.schedule.state_dict() if hasattr(self.schedule, "state_dict") else None,
                "ranks": ranks,
                "best_psnr": self.best_psnr,
                "config": self.config.to_dict(),
            }
            _atomic_torch_save(state, state_path_for(last))
        self.saved_step = self.step
        distributed.barrier()
        return last

    # ----- validation ----------------------------------------------------------------------------------
    def validate(self) -> tuple[float, float]:
        """Mean PSNR/SSIM (matlab-y) of the exported weights on the validation pairs (monitoring only)."""
        return validate(self.export_model(), self.val_pairs, self.spec.size_multiple, self.device, self.dtype)

    def _validate_and_log(self) -> None:
        """Rank 0 validates while the others wait; the PSNR then reaches every rank (for ``plateau``)."""
        psnr = None
        if self.is_main:
            t = time.monotonic()
            psnr, ssim = self.validate()
            note = ""
            if psnr > self.best_psnr:
                self.best_psnr = psnr
                self._save_weights(self.run_dir / BEST, self.export_model(), "best on validation (monitoring only)")
                note = f" (best so far; {BEST} is for monitoring, not for selection)"
            self.log(f"step {self.step} val {len(self.val_pairs)} pairs matlab-y PSNR {psnr:.3f} SSIM {ssim:.4f} "
                     f"[{time.monotonic() - t:.0f}s]{note}")
            if self.tb is not None:
                self.tb.add_scalar("val/psnr", psnr, self.step)
                self.tb.add_scalar("val/ssim", ssim, self.step)
        psnr = distributed.broadcast_object(psnr)
        if isinstance(self.schedule, PlateauSchedule) and self.schedule.observe(psnr):
            self.log(f"step {self.step} PSNR below its best ({self.schedule.best:.3f}) for "
                     f"{self.config.schedule.patience + 1} validation(s) in a row: lr lowered to "
                     f"{self.schedule(self.step):.3e}")

    # ----- the loop ------------------------------------------------------------------------------------
    def _stop_if_diverged(self, running: float, lowest: float) -> None:
        """Raise when the running loss has grown past ``divergence_factor`` times its lowest (positive losses)."""
        factor = self.config.divergence_factor
        if factor and 0 < lowest < math.inf and running > factor * lowest:
            saved = (f"its last checkpoint is from step {self.saved_step}" if self.saved_step >= 0
                     else "no checkpoint was saved")
            message = (f"training diverged at step {self.step}: the running loss {running:.4g} is over {factor:g} "
                       f"times its lowest, {lowest:.4g} ({saved}); lower optim.lr or set optim.grad_clip "
                       "(divergence_factor: 0 turns this check off)")
            self.log(message)
            raise DerainError(message)

    def after_step(self, progress: Progress, done: bool, out_of_time: bool) -> None:
        """The divergence check, progress bar and log line; validation and checkpoints when due."""
        cfg = self.config
        if progress.steps >= DIVERGENCE_SETTLE_STEPS:
            self._lowest = min(self._lowest, progress.running)
            self._stop_if_diverged(progress.running, self._lowest)
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{progress.running:.4f}", lr=f"{progress.lr:.2e}")
        if self.step % cfg.log_every == 0:
            now = time.monotonic()
            recent = (now - self._logged[0]) / (self.step - self._logged[1])
            self._logged = (now, self.step)
            eta = progress.wall_per_step * (cfg.end_step - self.step)  # the mean speed: steadier than the recent
            parts = progress.parts
            terms = " ".join(f"{k} {v:.4f}" for k, v in parts.items()) if len(parts) > 1 else ""
            self.log(f"step {self.step}/{cfg.total_steps} loss {progress.running:.5f} {terms} lr {progress.lr:.3e} "
                     f"{recent * 1000:.0f} ms/step ETA {eta / 60:.1f} min".replace("  ", " "))
            if self.tb is not None:
                self.tb.add_scalar("train/loss", progress.running, self.step)
                self.tb.add_scalar("train/lr", progress.lr, self.step)
        # Validate before saving, so the state holds what this validation did to the schedule.
        if self.has_val and (done or self.step % cfg.val_every == 0):
            self._validate_and_log()
        if done or out_of_time or self.step % cfg.checkpoint_every == 0:
            self.save()

    def fit(self, stop_at: int | None = None) -> Path:
        """Train until ``end_step`` (``stop_step``, else ``total_steps``) or the time budget; returns the
        ``last.safetensors`` path.

        ``stop_at`` stops (with a checkpoint) after that step, as a time budget would, but deterministically.
        """
        cfg = self.config
        budget = cfg.time_budget_minutes * 60.0 if cfg.time_budget_minutes else None
        stage = self._stage_at(self.step)
        world = self.dist.world_size
        self.log(f"training {cfg.model.name} ({sum(p.numel() for p in self.model.parameters()) / 1e6:.2f}M params) "
                 f"on {self.batches.describe()}, steps {self.step}->{cfg.end_step}, "
                 f"batch {stage.batch} x {world} process(es) x {cfg.optim.accumulate} accumulated "
                 f"= {stage.batch * world * cfg.optim.accumulate}, "
                 f"precision {'bf16' if self.dtype else 'fp32'}"
                 f"{', channels-last' if self.memory_format == torch.channels_last else ''}, "
                 f"threads {torch.get_num_threads()}"
                 + (f", time budget {cfg.time_budget_minutes:g} min" if budget else ""))
        self.model.train()
        self._bar = tqdm(total=cfg.end_step, initial=self.step, disable=None if self.is_main else True,
                         dynamic_ncols=True, desc="train")
        self._logged = (time.monotonic(), self.step)  # the log's speed is of the steps since its last line
        self._lowest = math.inf  # of the running loss in this process's part of the run, once settled
        stopped_early = self.run(cfg.end_step, budget, stop_at)
        self._bar.close()
        last = self.run_dir / LAST
        if self.saved_step != self.step:  # nothing to train (already at total_steps): still hand back weights
            self.save()
        if stopped_early:
            self.log(f"stopped at step {self.step}/{cfg.end_step}; continue with --resume {self.run_dir}")
        else:
            end = f" (stop_step; the schedule runs to {cfg.total_steps})" if cfg.end_step < cfg.total_steps else ""
            self.log(f"finished {cfg.end_step} steps{end}; weights in {last}")
        return last


def train_from_config(config_path: str | None, overrides: Iterable[str] = (), time_budget_minutes: float | None = None,
                      resume: str | None = None, overwrite: bool = False) -> Path:
    """Train from a YAML config (``overrides``: ``key=value`` with dotted keys); returns ``last.safetensors``.

    ``resume`` continues exactly from an earlier run of the same config: its run folder, ``last.safetensors``
    or ``last.state.pt``; ``resume="auto"`` resumes from the run folder's own state when there is one.
    Without a resume, a run folder that holds an earlier run's checkpoints is an error unless ``overwrite``.
    ``time_budget_minutes`` stops cleanly at a checkpoint before the budget is spent.
    """
    config = load_config(config_path, overrides)
    if time_budget_minutes is not None:
        config.time_budget_minutes = time_budget_minutes
    if resume == "auto":
        candidate = config.run_dir() / ("last" + STATE_SUFFIX)
        resume = str(candidate) if candidate.is_file() else None
    if resume is None:
        claim_run_dir(config.run_dir(), overwrite)
    trainer = Trainer(config, resume=resume)
    try:
        return trainer.fit()
    finally:
        trainer.close()
