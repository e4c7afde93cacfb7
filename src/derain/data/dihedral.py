"""The dihedral group D4 on images, in one place: the training augmentation and the inference self-ensemble
both name its elements by the same index ``k`` (0-7: ``k % 4`` quarter turns, after a horizontal flip when
``k >= 4``), so a transform a network trained on is the one an ensemble applies."""
from __future__ import annotations

import numpy as np
import torch

# Named sets of transforms. "flips" keeps vertical lines vertical (identity, 180-degree turn, horizontal flip,
# vertical flip): synthetic rain benchmarks have near-vertical streaks, and the quarter turns of "dihedral"
# teach (or show) a network horizontal rain it never meets. "hflip" is the image and its mirror.
TRANSFORMS: dict[str, tuple[int, ...]] = {"none": (0,), "hflip": (0, 4), "flips": (0, 2, 4, 6),
                                          "dihedral": tuple(range(8))}


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0-7) of the dihedral group D4 on an HxWxC array: k % 4 quarter turns, flipped if k >= 4."""
    if k >= 4:
        image = image[:, ::-1]
    return np.rot90(image, k % 4)


def dihedral_tensor(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` of the dihedral group on the last two dimensions (as :func:`dihedral` on an HxWxC array)."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def undo_dihedral_tensor(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral_tensor` for the same ``k``."""
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y
