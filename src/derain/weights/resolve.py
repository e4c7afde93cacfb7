"""Which checkpoint a command uses: the one the user gave, else the bundled one."""
from __future__ import annotations

from derain.errors import DerainError
from derain.weights import bundled_checkpoint


def resolve_weights(model: str | None, weights: str | None) -> str:
    """The checkpoint to use: the one given, else the bundled default model, else a clear error."""
    if weights is not None:
        return weights
    bundled = bundled_checkpoint(model)
    if bundled is not None:
        return str(bundled)
    what = f"no trained weights for {model!r} are bundled" if model else "no trained default model is bundled yet"
    raise DerainError(f"{what}; pass --weights CHECKPOINT (and --model NAME if the checkpoint does not name "
                      "its network, e.g. --model restormer for the official deraining.pth)")
