"""FSDRNet's degradation selector and routing (our reconstruction).

    bottleneck features --global average pool--+
    ring energies of every FAM (levels 1..4) --+--> concat --> LayerNorm --> MLP --> logits (B, 5)

The logits are trained with a cross-entropy on the task label (weight 0.01, as IDR) and turned into routing
weights over the five restoration heads by :func:`routing_weights`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from derain.data.degradations import TASKS

# The degradation types, in the order of the selector's logits and of the restoration heads.
# ``task`` values that mean "let the selector decide".
AUTO = (None, "auto")
ROUTINGS = ("soft", "top1")


def check_task(task: str | None) -> str | None:
    """``task`` normalised to None (auto) or one of :data:`TASKS`; a ValueError naming the choices otherwise."""
    if task in AUTO:
        return None
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose auto or one of {', '.join(TASKS)}")
    return task


class DegradationSelector(nn.Module):
    """Logits over :data:`TASKS` from pooled bottleneck features and the band energies of every level."""

    def __init__(self, feature_channels: int, band_features: int, hidden: int = 128,
                 num_tasks: int = len(TASKS)) -> None:
        super().__init__()
        inputs = feature_channels + band_features
        # LayerNorm first: pooled features and log-energies live on different scales.
        self.mlp = nn.Sequential(nn.LayerNorm(inputs), nn.Linear(inputs, hidden), nn.GELU(),
                                 nn.Linear(hidden, num_tasks))

    def forward(self, features: torch.Tensor, bands: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = features.float().mean(dim=(2, 3))
        return self.mlp(torch.cat([pooled, *(b.float() for b in bands)], dim=1))


def routing_weights(logits: torch.Tensor, task: str | None = None, routing: str = "soft") -> torch.Tensor:
    """Mixture weights (B, len(TASKS)) over the restoration heads.

    ``task`` one of :data:`TASKS`: one-hot on it (forced task, the selector is ignored). Otherwise
    ``routing="soft"``: the selector's softmax; ``"top1"``: one-hot on its most likely task (no gradient to
    the selector through the weights; the cross-entropy still trains it).
    """
    task = check_task(task)
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; choose one of {', '.join(ROUTINGS)}")
    if task is not None:
        index = torch.full(logits.shape[:1], TASKS.index(task), dtype=torch.long, device=logits.device)
        return F.one_hot(index, len(TASKS)).float()
    probs = logits.float().softmax(dim=-1)
    if routing == "top1":
        return F.one_hot(probs.argmax(dim=-1), len(TASKS)).float()
    return probs
