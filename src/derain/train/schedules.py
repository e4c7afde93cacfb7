"""Learning-rate schedules as pure functions of the step.

A schedule is ``lr(step) -> float``: it holds no state, so resuming a run only needs the step number, and a
run cut into pieces follows exactly the same curve as one uninterrupted run.
"""
from __future__ import annotations

import math
from typing import Callable

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
    """Multiply the lr by ``gamma`` every ``step_size`` steps (MSPFN's exponential staircase)."""
    return lambda step: base_lr * gamma ** (step // step_size)


def make_schedule(config: ScheduleConfig, base_lr: float, total_steps: int) -> Schedule:
    """The schedule named in ``config``."""
    if config.name == "cosine":
        return warmup_cosine(base_lr, total_steps, config.warmup_steps, config.min_lr)
    if config.name == "restormer":
        return cosine_restart_cyclic(base_lr, config.periods, config.restart_weights, config.eta_mins)
    if config.name == "step":
        return step_decay(base_lr, config.gamma, config.step_size)
    if config.name == "constant":
        return lambda step: base_lr
    raise DerainError(f"config key 'schedule.name': unknown schedule {config.name!r} "
                      "(choose cosine, restormer, step or constant)")
