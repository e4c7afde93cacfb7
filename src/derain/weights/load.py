"""A trained network from a checkpoint file: the network it needs is built (named by the file, by the user, or
recognised from the weights' keys and shapes) and the weights are loaded into it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from torch import nn

from derain.errors import DerainError
from derain.files.checkpoints import FORMAT_TAG, extract_state_dict, load_weights, read_checkpoint
from derain.models import build, get_spec, list_specs, same_network
from derain.models.detect import describe_detection, detect_model
from derain.weights.resolve import resolve_weights


def _to_stderr(message: str) -> None:
    print(f"derain: {message}", file=sys.stderr)


def load_model(model: str | None, weights: str | Path,
               say: Callable[[str], None] = _to_stderr) -> tuple[nn.Module, str]:
    """Build the network a checkpoint needs and load it; returns (model in eval mode, model name).

    A self-describing checkpoint supplies its model name and configuration; ``model`` names a registered
    network built with its default configuration (e.g. ``restormer`` for the official ``deraining.pth``);
    without either, the network and its hyperparameters are recognised from the weights
    (:func:`derain.models.detect.detect_model`) and ``say`` tells which.
    """
    obj = read_checkpoint(weights)
    described = obj.get("format") == FORMAT_TAG
    name = model or (obj.get("model") if described else None)
    state = extract_state_dict(obj)
    if name is None:
        # A bare or official state_dict: the network and its hyperparameters are read from its keys and shapes.
        try:
            name, config = detect_model(state)
        except DerainError as exc:
            raise DerainError(f"{weights} does not say which network it holds, and {exc}") from None
        say(f"{Path(weights).name}: recognised {describe_detection(name, config)} from its keys and shapes")
        net = build(name, **config)
        load_weights(net, state, what=f"checkpoint {Path(weights).name}")
        return net.eval(), name
    spec = get_spec(name)
    held = obj.get("model") if described else None
    if held is not None and held != name and not (held in {s.name for s in list_specs()} and same_network(held, name)):
        raise DerainError(f"{weights} is a checkpoint of model {held!r}, not {name!r}")
    config = dict(obj.get("config") or {}) if held is not None else {}
    net = build(spec.name, **config)
    load_weights(net, state, what=f"checkpoint {Path(weights).name}")
    return net.eval(), spec.name


def load_trained(model: str | None = None, weights: str | Path | None = None) -> tuple[nn.Module, str]:
    """:func:`load_model` of ``weights``, or of the bundled checkpoint of ``model`` (None: the default model)
    when no weights are given (:func:`derain.weights.resolve.resolve_weights`)."""
    return load_model(model, resolve_weights(model, None if weights is None else str(weights)))
