"""Learning-rate schedules: ``lr(step) -> float``.

The step-driven schedules (cosine, restormer, step, exponential, constant) are pure functions of the step, so
resuming a run only needs the step number. ``plateau`` also depends on the validation scores seen so far; its small
state (:meth:`PlateauSchedule.state_dict`) is part of the resume state, so a run cut into pieces still
follows exactly the same curve as one uninterrupted run.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from derain.errors import DerainError
from derain.train.config import ScheduleConfig

Schedule = Callable[[int], float]


def warmup_cosine(base_lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> Schedule:
    """Linear warmup from ~0 to ``base_lr``, then half a cosine down to ``min_lr`` at ``total_steps``."""

    def lr(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))

    return lr


def cosine_restart_cyclic(base_lr: float, periods: list[int], restart_weights: list[float],
                          eta_mins: list[float]) -> Schedule:
    """Restormer's ``CosineAnnealingRestartCyclicLR``: in cycle i, cosine from ``base_lr * weight_i`` to
    ``eta_min_i`` over ``periods[i]`` steps. With eta_min_0 = base_lr the first cycle is a constant lr."""
    if not (len(periods) == len(restart_weights) == len(eta_mins)) or not periods:
        raise DerainError("schedule restormer: periods, restart_weights and eta_mins need the same, non-zero length")
    ends = [sum(periods[:i + 1]) for i in range(len(periods))]

    def lr(step: int) -> float:
        i = next((k for k, end in enumerate(ends) if step < end), len(ends) - 1)
        start = ends[i] - periods[i]
        t = min(1.0, (step - start) / periods[i])
        top = base_lr * restart_weights[i]
        return eta_mins[i] + 0.5 * (top - eta_mins[i]) * (1 + math.cos(math.pi * t))

    return lr


def step_decay(base_lr: float, gamma: float, step_size: int) -> Schedule:
    """Multiply the lr by ``gamma`` every ``step_size`` steps (an exponential staircase)."""
    return lambda step: base_lr * gamma ** (step // step_size)


def exponential_decay(base_lr: float, gamma: float, step_size: int, min_lr: float = 0.0) -> Schedule:
    """``base_lr * gamma ** (step / step_size) + min_lr``: a continuous decay with a floor added on top.

    MSPFN's ``tf.train.exponential_decay(5e-4, step, 20000, 0.8, staircase=False) + 1e-6``.
    """
    return lambda step: base_lr * gamma ** (step / step_size) + min_lr


class PlateauSchedule:
    """ReduceLROnPlateau on the validation PSNR (FSDerain's recipe), after an optional linear warmup.

    After every validation, :meth:`observe` gets the PSNR; when it has not beaten the best so far for more
    than ``patience`` validations in a row, the lr is multiplied by ``factor`` (never below ``min_lr``) and
    the count starts again. Higher is better (PSNR), so ``mode`` is fixed to "max".
    """

    def __init__(self, base_lr: float, factor: float, patience: int, min_lr: float = 0.0,
                 warmup_steps: int = 0) -> None:
        if not 0.0 < factor < 1.0:
            raise DerainError(f"schedule plateau: factor must be in (0, 1), not {factor}")
        if patience < 0:
            raise DerainError(f"schedule plateau: patience must be >= 0, not {patience}")
        self.base_lr, self.factor, self.patience = base_lr, factor, patience
        self.min_lr, self.warmup_steps = min_lr, warmup_steps
        self.current = base_lr
        self.best = -math.inf
        self.bad = 0  # validations in a row without improvement

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.current * (step + 1) / self.warmup_steps
        return self.current

    def observe(self, metric: float) -> bool:
        """Record one validation score; returns True when this lowered the lr."""
        if metric > self.best:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad <= self.patience:
            return False
        self.bad = 0
        lowered = max(self.min_lr, self.current * self.factor)
        changed = lowered < self.current
        self.current = lowered
        return changed

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current, self.best, self.bad = float(state["current"]), float(state["best"]), int(state["bad"])


def make_schedule(config: ScheduleConfig, base_lr: float, total_steps: int) -> Schedule:
    """The schedule named in ``config`` (a :class:`PlateauSchedule` for ``plateau``)."""
    if config.name == "cosine":
        return warmup_cosine(base_lr, total_steps, config.warmup_steps, config.min_lr)
    if config.name == "restormer":
        return cosine_restart_cyclic(base_lr, config.periods, config.restart_weights, config.eta_mins)
    if config.name == "step":
        return step_decay(base_lr, config.gamma, config.step_size)
    if config.name == "exponential":
        return exponential_decay(base_lr, config.gamma, config.step_size, config.min_lr)
    if config.name == "constant":
        return lambda step: base_lr
    if config.name == "plateau":
        return PlateauSchedule(base_lr, config.factor, config.patience, config.min_lr, config.warmup_steps)
    raise DerainError(f"config key 'schedule.name': unknown schedule {config.name!r} "
                      "(choose cosine, restormer, step, exponential, plateau or constant)")
