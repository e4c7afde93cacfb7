"""The one conversion between images as numpy arrays (H x W x C) and images as torch tensors (B x C x H x W).

The tensors these return are permuted views, not contiguous copies: the call sites always handed such views to
the models, and a convolution may take a different (not bit-identical) path for another memory layout.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Rounding = Literal["half_even", "half_up"]


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x C (or N x H x W x C) pixels -> float32 1 x C x H x W (or N x C x H x W).

    uint8 pixels are divided by 255.0 (a float32 division, not a multiplication by 1/255, which differs in the
    last bit); float pixels keep their values (cast to float32, sharing memory when they already are).
    """
    if pixels.ndim not in (3, 4):
        raise ValueError(f"expected H x W x C or N x H x W x C pixels, got shape {pixels.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    tensor = tensor.permute(2, 0, 1)[None] if pixels.ndim == 3 else tensor.permute(0, 3, 1, 2)
    if pixels.dtype == np.uint8:
        tensor = tensor.div_(255.0)  # in place on the fresh float32 copy the cast made
    return tensor


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """C x H x W or 1 x C x H x W tensor -> H x W x C numpy array of the same dtype and values (no clamping)."""
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3:
        raise ValueError(f"expected a C x H x W or 1 x C x H x W tensor, got shape {tuple(tensor.shape)}")
    return tensor.detach().cpu().permute(1, 2, 0).numpy()


def tensor_to_images(tensor: torch.Tensor) -> np.ndarray:
    """N x C x H x W tensor -> N x H x W x C numpy array of the same dtype and values (no clamping)."""
    if tensor.ndim != 4:
        raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(tensor.shape)}")
    return tensor.detach().cpu().permute(0, 2, 3, 1).numpy()


def quantize(tensor: torch.Tensor, rounding: Rounding = "half_even") -> torch.Tensor:
    """Values in [0, 1] (clamped first) -> uint8 in [0, 255], same shape.

    ``half_even``: ``round(x * 255)`` with ties to even, as ``torch.round`` and ``np.rint`` do.
    ``half_up``: ``floor(x * 255 + 0.5)``, the ``+ 0.5`` then truncate some writers use.
    """
    scaled = tensor.detach().clamp(0.0, 1.0) * 255.0
    if rounding == "half_even":
        return scaled.round_().to(torch.uint8)
    if rounding == "half_up":
        return scaled.add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)  # non-negative: the cast truncates = floor
    raise ValueError(f"unknown rounding {rounding!r}: use 'half_even' or 'half_up'")


def tensor_to_uint8(tensor: torch.Tensor, rounding: Rounding = "half_even") -> np.ndarray:
    """C x H x W or 1 x C x H x W tensor in [0, 1] -> H x W x C uint8 array (see :func:`quantize`)."""
    return tensor_to_image(quantize(tensor, rounding))
