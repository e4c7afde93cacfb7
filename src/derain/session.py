"""``derain.Session``: a network loaded and prepared once, with its device and options, for many images.

A session knows everything inference needs from the network itself (its size multiple, whether it is an
all-in-one model), so a model loaded elsewhere never needs its registry name beside it::

    session = derain.Session()                                      # the bundled default model
    session = derain.Session(model="restormer", weights="deraining.pth", device="cuda")
    clean = session(photo)                                          # any kind derain.api_inputs accepts
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from derain.api_inputs import restore_any
from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError
from derain.inference.restore import (
    DEFAULT_WORKING_SIDE,
    InferenceOptions,
    all_in_one_network,
    prepare_for,
    resolve_device,
    resolve_working_side,
    restore,
    set_task,
    size_multiple_of,
)

_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(InferenceOptions))


class Session:
    """A restoration network ready for many images.

    ``model``: a registry name (with ``weights``, or the bundled checkpoint of that name), None for the bundled
    default model (or the network a self-describing ``weights`` file names), or a network already loaded
    (an ``nn.Module``, e.g. from :func:`derain.load_model`; ``name`` is then optional). ``device``: ``auto``,
    ``cpu``, ``cuda`` or ``cuda:N`` (a loaded network is moved there; None keeps it where it is). ``threads``:
    CPU threads for each call (None: torch's setting). ``task``: for all-in-one networks (fsdrnet), the
    degradation to remove (None/auto: the network's selector decides). ``options``: defaults for the
    :class:`derain.inference.restore.InferenceOptions` fields (``tile``, ``ensemble``, ``precision``,
    ``working_side``...); ``working_side`` is ``auto`` unless given, as in ``derain run``.

    The network is prepared for its inference path once (per ``fast``/``precision``/``compile`` choice);
    changes made to a loaded network's weights afterwards are not seen: make a new session.
    """

    def __init__(self, model: str | nn.Module | None = None, weights: str | Path | None = None, *,
                 name: str | None = None, device: str | None = None, threads: int | None = None,
                 task: str | None = None, **options: Any) -> None:
        self.options = check_options({"working_side": "auto", **options})
        self.threads = check_threads(threads)
        if isinstance(model, nn.Module):
            if weights is not None:
                raise DerainError("weights= loads a checkpoint into a network named by model=; this network is "
                                  "already built (load its weights with load_state_dict, or pass its name)")
            network = model
            self.name = name
            self.device = resolve_device(device) if device else _device_of(model)
        else:
            if name is not None:
                raise DerainError("name= goes with a network that is already loaded; pass the registry name "
                                  "as model=")
            if model is not None and not isinstance(model, str):
                raise DerainError(f"model must be a registry name, a loaded network or None, not a "
                                  f"{type(model).__name__}")
            from derain.inference.model_choice import default_model_for
            from derain.weights.load import load_trained

            self.device = resolve_device(device or "auto")
            # No model named: the default, or its CPU student on a CPU without native bf16.
            model = default_model_for(model, weights, self.device)
            if weights is None:
                _check_bundled(model)
            network, self.name = load_trained(model, weights)
            device = str(self.device)  # a network loaded here goes to the session's device
        self.network = network.to(self.device) if device else network
        self.task = task
        set_task(self.network, self.name or type(network).__name__, task)  # checks the task before any image
        self._prepared: dict[tuple, nn.Module] = {}
        prepared = self._prepare(InferenceOptions(**self.options))
        registered = None
        if self.name is not None:
            from derain.models import get_spec
            registered = get_spec(self.name).size_multiple
        self.size_multiple = size_multiple_of(prepared, registered)

    def __repr__(self) -> str:
        return f"Session(model={self.name or type(self.network).__name__!r}, device={str(self.device)!r})"

    def derain(self, image: Any, *, value_range: float | tuple[float, float] | None = None,
               threads: int | None = None, **options: Any) -> Any:
        """``image`` restored, in the kind it came as (:mod:`derain.api_inputs`); a list gives a list.

        ``value_range``: the scale of float images when it is not [0, 1] (``255``, or ``(-1, 1)``); results
        come back on the same scale. ``threads`` and ``options`` override the session's for this call.
        """
        chosen = self._resolve(InferenceOptions(**check_options({**self.options, **options})))
        prepared = self._prepare(chosen)

        def run(pixels: np.ndarray) -> np.ndarray:
            x = image_to_tensor(np.asarray(pixels, dtype=np.float32))
            return tensor_to_image(restore(prepared, x, self.size_multiple, chosen, self.device))

        with torch_threads(check_threads(threads) or self.threads):
            if isinstance(image, (list, tuple)):
                for item in image:
                    if isinstance(item, (list, tuple)):
                        raise DerainError("expected a list of images, got a list inside the list; pass each "
                                          "image as a numpy array, a PIL image, a path or bytes")
                return [restore_any(item, run, value_range) for item in image]
            return restore_any(image, run, value_range)

    __call__ = derain

    def _resolve(self, options: InferenceOptions) -> InferenceOptions:
        """``options`` with ``working_side="auto"`` made concrete: by the registry name where known, else
        from the network itself (all-in-one networks work at the photo's own resolution)."""
        if options.working_side != "auto":
            return options
        if self.name is not None:
            return resolve_working_side(options, self.name)
        side = None if all_in_one_network(self.network) is not None else DEFAULT_WORKING_SIDE
        return dataclasses.replace(options, working_side=side)

    def _prepare(self, options: InferenceOptions) -> nn.Module:
        """The network prepared for the path of ``options``, once per path."""
        key = (options.fast, options.precision, options.compile)
        if key not in self._prepared:
            self._prepared[key] = prepare_for(self.network, options, self.device)
        return self._prepared[key]


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if each names an :class:`InferenceOptions` field; one clear line naming them otherwise."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise DerainError(f"unknown option {unknown[0]!r}; options are {', '.join(_OPTION_NAMES)}, "
                          "device, threads, value_range")
    return options


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is None or a whole number >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DerainError(f"threads must be a whole number of at least 1, not {threads!r}")
    return threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads, then give the caller's setting back (torch's thread
    count is one per process: sessions used from several Python threads at once should agree on it)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_bundled(model: str | None) -> None:
    """Refuse, in the API's terms, a model that has no bundled weights when none are given."""
    from derain.models import get_spec
    from derain.weights import bundled_checkpoint

    if model is not None:
        get_spec(model)  # an unknown name says so, with the known ones
    if bundled_checkpoint(model) is None:
        what = f"no trained weights for {model!r} are bundled" if model else "no trained default model is bundled"
        raise DerainError(f"{what}; pass weights=CHECKPOINT (and model=NAME if the checkpoint does not name its "
                          "network, e.g. model='restormer' for the official deraining.pth)")


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
