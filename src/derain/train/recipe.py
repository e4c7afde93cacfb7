"""Recipes: the stages of one model's training, run in order by one command.

A recipe file lists training configs; each stage warm-starts from the stage before it::

    recipe:
      - config: configs/general_stage1.yaml
      - config: configs/general_stage2.yaml
        weights: src/derain/weights/default.safetensors   # the committed result of this stage

``derain train RECIPE.yaml [--time-budget MIN]`` trains every stage whose run has not finished, resuming a
stage whose run folder holds a state, and stops cleanly when the budget is spent: running the same command
again continues where it stopped, so a schedule of several hours can be done across sessions. On a machine
where earlier stages' run folders are gone, ``use_committed`` takes the last committed ``weights`` in place
of training the stages up to it again, and the next stage warm-starts from them.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import yaml

from derain.errors import DerainError
from derain.files.yamlload import load_yaml_file
from derain.train.config import TrainConfig, from_dict, load_config
from derain.train.loop import Trainer
from derain.train.rundir import LAST, state_path_for


@dataclasses.dataclass
class RecipeStage:
    """One stage: a training config, and optionally the committed weights it produced."""

    config: str
    weights: str | None = None


def is_recipe(path: str | Path) -> bool:
    """True for a YAML file whose top level has a ``recipe`` key (a list of stages)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # the config loader reports what is wrong with it
    return isinstance(data, dict) and "recipe" in data


def load_recipe(path: str | Path) -> list[RecipeStage]:
    """The stages of a recipe file; unknown keys and missing configs are one-line errors."""
    data = load_yaml_file(path, "recipe")  # a key written twice is refused, with both line numbers
    if not isinstance(data, dict) or "recipe" not in data:
        raise DerainError(f"recipe {path} must be a mapping with a 'recipe:' list of stages")
    extra = sorted(set(data) - {"recipe"})
    if extra:
        raise DerainError(f"recipe {path}: unknown key '{extra[0]}' (a recipe holds only 'recipe:', a list of stages)")
    entries = data["recipe"]
    if not isinstance(entries, list) or not entries:
        raise DerainError(f"recipe {path}: 'recipe' must be a non-empty list of stages")
    stages = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise DerainError(f"recipe {path}: stage {i} must be a mapping with a 'config' key")
        stage = from_dict(RecipeStage, entry, prefix=f"recipe stage {i}: ")
        if not Path(stage.config).is_file():
            raise DerainError(f"recipe {path}: stage {i}: config file not found: {stage.config}")
        stages.append(stage)
    return stages


def finished_step(config: TrainConfig) -> int | None:
    """The step at which this config's run folder was last saved, or None when it holds no state."""
    state = state_path_for(config.run_dir())
    if not state.is_file():
        return None
    return int(torch.load(state, map_location="cpu", weights_only=False)["step"])


def run_recipe(path: str | Path, overrides: Iterable[str] = (), time_budget_minutes: float | None = None,
               use_committed: bool = False, say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Run the recipe's unfinished stages in order; returns (the last weights, whether every stage finished).

    ``overrides`` apply to every stage (e.g. ``threads=1``). Every config is loaded and checked before the
    first step, so a bad stage fails at once, not hours later.
    """
    overrides = list(overrides)
    stages = load_recipe(path)
    configs = [load_config(stage.config, overrides) for stage in stages]
    # With use_committed, every stage up to the last one with committed weights is taken, not trained.
    last_committed = max((i for i, stage in enumerate(stages, 1) if stage.weights), default=0) if use_committed else 0
    for stage in stages[:last_committed]:
        if stage.weights and not Path(stage.weights).is_file():
            raise DerainError(f"recipe {path}: committed weights not found: {stage.weights}")
    started = time.monotonic()
    previous: Path | None = None
    trained_here = False
    for number, (stage, config) in enumerate(zip(stages, configs), 1):
        label = f"recipe stage {number}/{len(stages)} ({config.name})"
        step = finished_step(config)
        if step is not None and step >= config.end_step:
            previous = config.run_dir() / LAST
            say(f"{label}: done ({step} steps in {config.run_dir()})")
            continue
        if step is None and number <= last_committed:
            if stage.weights:
                previous = Path(stage.weights)
                say(f"{label}: taken from the committed weights {stage.weights}")
            else:
                say(f"{label}: skipped, a later stage's committed weights stand in for it")
            continue
        if previous is not None:  # the stage warm-starts from what the stage before it produced
            config.warm_start = str(previous)
        if time_budget_minutes is not None:
            left = time_budget_minutes - (time.monotonic() - started) / 60.0
            if left <= 0 and trained_here:  # like one run, an invocation trains at least one step
                say(f"{label}: not started, the time budget is spent; run the same command again to continue")
                return previous or config.run_dir() / LAST, False
            config.time_budget_minutes = max(left, 1e-9)
        resume = str(state_path_for(config.run_dir())) if step is not None else None
        say(f"{label}: {'resuming at step ' + str(step) if resume else 'starting'}"
            + (f" from {config.warm_start}" if config.warm_start and not resume else ""))
        trainer = Trainer(config, resume=resume)
        trained_here = True
        try:
            previous = trainer.fit()
            if trainer.step < config.end_step:
                say(f"{label}: stopped at step {trainer.step}/{config.end_step}; "
                    "run the same command again to continue")
                return previous, False
        finally:
            trainer.close()
    assert previous is not None  # load_recipe refuses an empty recipe
    return previous, True
