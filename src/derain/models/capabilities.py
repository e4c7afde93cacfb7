"""What a built network can do, read in one place from what it declares.

The networks state their own abilities as class or instance attributes (only they know their configuration:
a checkpoint may hold a registered network with other widths or stems than the registry's default):

- ``size_multiple``: input height and width must be multiples of it (inference pads to it);
- ``bytes_per_pixel``: peak activation memory of a float32 inference per input pixel (tiles are sized by it);
- ``accepts_low_precision_weights``: the network casts its input to its weights' dtype and adds the image-level
  residual in float32, so its weights may be stored in bf16 (the fast path);
- ``trains_faster_channels_last``: channels-last memory pays in training;
- ``fold()``: an equivalent cheaper form for inference (re-parameterised or normalised layers folded);
- ``has_selector`` with ``task`` and ``last_choice``: an all-in-one network routed to a task by a degradation
  selector, which records what it chose.

Everything else in the toolkit asks :func:`capabilities_of` rather than probing a network's attributes, and
:class:`derain.models.registry.ModelSpec` gives the same facts for a registered name without building it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is not needed to describe a network
    from torch import nn


@dataclass(frozen=True)
class Capabilities:
    """What one built network declares (None: it declares nothing)."""

    size_multiple: int | None = None
    bytes_per_pixel: int | None = None
    low_precision_weights: bool = False
    channels_last_training: bool = False
    foldable: bool = False
    has_selector: bool = False  # a degradation selector (what a loss term that needs one asks)
    all_in_one: bool = False  # takes a task (``.task``) and records what it restored (``.last_choice``)


def capabilities_of(net: "nn.Module") -> Capabilities:
    """The abilities ``net`` declares (read through a ``torch.compile`` wrapper)."""
    net = getattr(net, "_orig_mod", net)
    multiple = getattr(net, "size_multiple", None)
    per_pixel = getattr(net, "bytes_per_pixel", None)
    return Capabilities(
        size_multiple=None if multiple is None else int(multiple),
        bytes_per_pixel=None if per_pixel is None else int(per_pixel),
        low_precision_weights=bool(getattr(net, "accepts_low_precision_weights", False)),
        channels_last_training=bool(getattr(net, "trains_faster_channels_last", False)),
        foldable=hasattr(net, "fold"),
        has_selector=bool(getattr(net, "has_selector", False)),
        all_in_one=hasattr(net, "task") and hasattr(net, "last_choice"),
    )
