"""derain: single-image rain removal and image restoration.

The small public API::

    import derain
    model, name = derain.load_model("restormer", "deraining.pth")
    clean = derain.derain(rainy, model)          # HxWx3 float array in [0, 1] -> same
    derain.list_models()

Submodules are imported on first use, so ``import derain`` stays fast and never fails because of one model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn


def load_model(model: str | None = None, weights: Any = None) -> "tuple[nn.Module, str]":
    """Build a registered network and load a checkpoint into it; returns (model in eval mode, name)."""
    from derain.checkpoints import load_model as _load
    from derain.runner import resolve_weights
    return _load(model, resolve_weights(model, weights))


def derain(image: "np.ndarray", model: "nn.Module", name: str | None = None, **options: Any) -> "np.ndarray":
    """Restore one HxWx3 float32 RGB image in [0, 1] with ``model``; ``options`` are InferenceOptions fields."""
    import torch

    from derain.infer import InferenceOptions, restore
    from derain.models import get_spec

    multiple = get_spec(name).size_multiple if name else 8
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return restore(model, x, multiple, InferenceOptions(**options))[0].permute(1, 2, 0).numpy()


def prepare(model: "nn.Module", **options: Any) -> "nn.Module":
    """``model`` prepared once for the inference path ``options`` ask for (InferenceOptions fields: ``fast``,
    ``precision``, ``compile``); pass the result to :func:`derain` to skip the preparation on every call."""
    import torch

    from derain.infer import InferenceOptions, prepare_for

    device = next(model.parameters()).device if next(model.parameters(), None) is not None else torch.device("cpu")
    return prepare_for(model, InferenceOptions(**options), device)


def list_models() -> list[str]:
    """Names of the registered networks."""
    from derain.models import list_specs
    return [spec.name for spec in list_specs()]
