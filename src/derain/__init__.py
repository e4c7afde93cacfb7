"""derain: single-image rain removal and image restoration.

The small public API::

    import derain
    clean = derain.derain(rainy)                 # the bundled default model; HxWx3 float in [0, 1] or uint8 -> same
    model, name = derain.load_model("restormer", "deraining.pth")
    clean = derain.derain(rainy, model, name)
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


_default_model: "tuple[nn.Module, str] | None" = None  # the bundled model, loaded on first use


def derain(image: "np.ndarray", model: "nn.Module | None" = None, name: str | None = None,
           **options: Any) -> "np.ndarray":
    """Restore one HxWx3 RGB image: float in [0, 1] (returns float32) or uint8 (returns uint8).

    ``model``: a network from :func:`load_model` (give its ``name`` too, for its size multiple); None uses the
    bundled default model, loaded once per process (with ``working_side`` as ``derain run`` sets it, unless
    given). ``options`` are InferenceOptions fields (``ensemble``,
    ``tile``, ``precision``, ...). An image of another shape or a non-finite value raises DerainError.
    """
    import numpy as np
    import torch

    from derain.errors import DerainError
    from derain.infer import InferenceOptions, resolve_working_side, restore
    from derain.models import get_spec

    global _default_model
    if model is None:
        if _default_model is None:
            _default_model = load_model()
        model, name = _default_model
        options.setdefault("working_side", "auto")  # as `derain run` does
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DerainError(f"expected an HxWx3 RGB image, got an array of shape {pixels.shape}")
    as_uint8 = pixels.dtype == np.uint8
    if as_uint8:
        pixels = pixels.astype(np.float32) / 255.0
    elif not np.issubdtype(pixels.dtype, np.floating):
        raise DerainError(f"expected uint8 or floats in [0, 1], got {pixels.dtype} values")
    elif not np.isfinite(pixels).all():
        raise DerainError("the image holds NaN or infinite values")
    multiple = get_spec(name).size_multiple if name else 8
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    chosen = InferenceOptions(**options)
    if name:
        chosen = resolve_working_side(chosen, name)
    out = restore(model, x, multiple, chosen)[0].permute(1, 2, 0).numpy()
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8) if as_uint8 else out


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
