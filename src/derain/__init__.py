"""derain: single-image rain removal and image restoration.

The small public API::

    import derain
    clean = derain.derain(rainy)                 # the bundled default model; HxWx3 float in [0, 1] or uint8 -> same
    clean = derain.derain("photo.jpg")           # a path or a PIL image -> a PIL image; bytes -> bytes
    session = derain.Session(model="restormer", weights="deraining.pth", device="cuda")
    clean = session(rainy)                       # loaded and prepared once, for many images
    model, name = derain.load_model("restormer", "deraining.pth")
    clean = derain.derain(rainy, model)          # a loaded network needs no name beside it
    derain.list_models()

Submodules are imported on first use, so ``import derain`` stays fast and never fails because of one model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from derain.session import Session


def load_model(model: str | None = None, weights: Any = None) -> "tuple[nn.Module, str]":
    """Build a registered network and load a checkpoint into it; returns (model in eval mode, name)."""
    from derain.weights.load import load_trained
    return load_trained(model, weights)


_sessions: "dict[tuple[str | None, str | None], Session]" = {}  # models loaded by name, once per process


def derain(image: Any, model: "nn.Module | Session | str | None" = None, name: str | None = None, *,
           device: str | None = None, threads: int | None = None,
           value_range: "float | tuple[float, float] | None" = None, **options: Any) -> Any:
    """Restore an image, given back in the kind it came as.

    ``image``: an HxWx3 RGB array (uint8 -> uint8; floats in [0, 1] -> float32) or an NxHxWx3 batch, a PIL
    image of any mode (-> PIL, in its own mode where sensible: RGBA keeps its alpha, L stays L), a path
    (-> a PIL image), the bytes of an image file (-> bytes in the same format), or a list of these (-> a list).
    Floats outside [0, 1] are an error unless ``value_range`` gives their scale (``255`` or ``(-1, 1)``).

    ``model``: None for the bundled default model, a registry name (its bundled weights), a :class:`Session`,
    or a network from :func:`load_model` (``name`` is not needed: the network declares its size multiple).
    Models named here are loaded once per process and ``device``. ``threads``: CPU threads for this call.
    ``options`` are InferenceOptions fields (``ensemble``, ``tile``, ``precision``, ``working_side``...).
    Anything wrong with the input raises DerainError with one line saying what.
    """
    return _session(model, name, device).derain(image, value_range=value_range, threads=threads, **options)


def _session(model: Any, name: str | None, device: str | None) -> "Session":
    """The session that runs ``model``: the one given, one cached per (name, device), or a new one around a
    network passed in (prepared for this call only, as its weights may change between calls)."""
    from derain.errors import DerainError
    from derain.session import Session

    if isinstance(model, Session):
        if device is not None and device != str(model.device):
            raise DerainError(f"this session runs on {model.device}; make a Session with device={device!r}")
        return model
    if model is None or isinstance(model, str):
        if name is not None and model is not None and name != model:
            raise DerainError(f"model {model!r} and name {name!r} disagree; pass the registry name once")
        key = (model or name, device)
        if key not in _sessions:
            _sessions[key] = Session(model or name, device=device)
        return _sessions[key]
    return Session(model, name=name, device=device)


def __getattr__(attribute: str) -> Any:
    """``derain.Session``, imported on first use (it needs torch)."""
    if attribute == "Session":
        from derain.session import Session
        return Session
    raise AttributeError(f"module 'derain' has no attribute {attribute!r}")


def prepare(model: "nn.Module", **options: Any) -> "nn.Module":
    """``model`` prepared once for the inference path ``options`` ask for (InferenceOptions fields: ``fast``,
    ``precision``, ``compile``); pass the result to :func:`derain` to skip the preparation on every call."""
    import torch

    from derain.inference.restore import InferenceOptions, prepare_for

    device = next(model.parameters()).device if next(model.parameters(), None) is not None else torch.device("cpu")
    return prepare_for(model, InferenceOptions(**options), device)


def list_models() -> list[str]:
    """Names of the registered networks."""
    from derain.models import list_specs
    return [spec.name for spec in list_specs()]
