"""The one autocast context every path uses (inference, training, fine-tuning, scripts)."""
from __future__ import annotations

import contextlib

import torch


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; ``dtype=None`` means plain float32 (no context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
