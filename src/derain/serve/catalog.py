"""The models a ``derain serve`` page offers: the bundled default plus checkpoints named on the command line.

Only models with weights are listed (a registered network without a checkpoint cannot clean anything), and
every listed model is loaded at start-up, so a wrong checkpoint fails in the terminal, not in the page.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from derain.errors import DerainError
from derain.inference.model_choice import default_model_for
from derain.inference.restore import size_multiple_of
from derain.models import get_spec, list_specs
from derain.weights import BUNDLED, bundled_checkpoint, default_checkpoint, default_model_name
from derain.weights.load import load_model


@dataclass
class ModelChoice:
    """One entry of the page's model menu, with its network loaded on the serving device."""

    key: str  # what the page sends as ?model=
    network: str  # registered network name
    weights: str  # checkpoint path, shown in the terminal
    model: nn.Module
    size_multiple: int
    tasks: tuple[str, ...] = ()  # non-empty only for all-in-one models, which take a task

    def describe(self) -> dict:
        """What the page needs to know about this choice (JSON-ready)."""
        label = self.key if self.key == self.network else f"{self.key} ({self.network})"
        return {"name": self.key, "label": label, "network": self.network, "tasks": list(self.tasks)}


def model_tasks(network: str) -> tuple[str, ...]:
    """The tasks an all-in-one network declares (``ModelSpec.tasks`` when the registry has it), else ()."""
    return get_spec(network).tasks


def parse_weights_arg(text: str) -> tuple[str | None, str]:
    """``NAME=CHECKPOINT`` or ``CHECKPOINT`` -> (name or None, checkpoint path)."""
    name, sep, path = text.partition("=")
    if not sep:
        return None, text
    if not name or not path:
        raise DerainError(f"--weights expects NAME=CHECKPOINT or CHECKPOINT, got {text!r}")
    return name, path


def _choice(key: str | None, weights: str, device: torch.device) -> ModelChoice:
    if not Path(weights).is_file():
        raise DerainError(f"checkpoint not found: {weights}")
    registered = {spec.name for spec in list_specs()}
    # NAME is the network when it is a registered one; otherwise it is a label for a self-describing checkpoint.
    network_hint = key if key in registered else None
    model, network = load_model(network_hint, weights)
    model.to(device)
    return ModelChoice(key=key or network, network=network, weights=str(weights), model=model,
                       size_multiple=size_multiple_of(model, get_spec(network).size_multiple),  # what restore pads to
                       tasks=model_tasks(network))


def build_catalog(weights_args: list[str], device: torch.device) -> dict[str, ModelChoice]:
    """Load the bundled default model and every ``[NAME=]CHECKPOINT``; the first entry is the page's default."""
    catalog: dict[str, ModelChoice] = {}
    bundled = default_checkpoint()
    if bundled is not None:
        catalog[default_model_name() or "default"] = _choice(default_model_name(), str(bundled), device)
    for name in BUNDLED:  # the other bundled models (the Rain100L specialist)
        bundled_path = bundled_checkpoint(name)
        if bundled_path is not None:
            catalog[name] = _choice(name, str(bundled_path), device)
    for text in weights_args:
        given_name, path = parse_weights_arg(text)
        choice = _choice(given_name, path, device)
        if choice.key in catalog and given_name is None:
            raise DerainError(f"two models would both be called {choice.key!r}; name them with NAME={path}")
        catalog[choice.key] = choice  # an explicit NAME=... replaces the bundled model of that name
    if not catalog:
        raise DerainError("no model with weights to serve; pass --weights NAME=CHECKPOINT")
    # On a CPU without native bf16 the page starts on the default model's CPU student, as `derain PHOTO` does.
    first = default_model_for(None, None, device)
    if first is not None and first in catalog:
        catalog = {first: catalog[first], **{k: v for k, v in catalog.items() if k != first}}
    return catalog
