"""The one autocast context every path uses (inference, training, fine-tuning, scripts), and what
``--precision`` means for CPU inference (int8 where the CPU rule picks it)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from derain.hardware import CpuKind


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; ``dtype=None`` means plain float32 (no context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_inference_precision(precision: str, fast: bool, has_int8: bool, kind: CpuKind | None = None) -> str:
    """What ``precision`` (``--precision``) becomes for CPU inference: ``int8`` where it is asked for, or where
    it is ``auto`` on the fast path and :func:`derain.hardware.choose_cpu_path` picks int8 for this CPU
    (``kind``, default: detected) given whether the model has an int8 version (``has_int8``); anything else is
    returned unchanged (the PyTorch paths resolve auto, bf16 and fp32 themselves). ``--no-fast`` keeps the
    reference path: never int8 unless asked."""
    from derain.hardware import CpuKind, choose_cpu_path, cpu_kind

    if precision != "auto" or not fast:
        return precision
    kind = cpu_kind() if kind is None else kind
    available = {"fp32", "bf16"} if kind is CpuKind.BF16 else {"fp32"}
    if has_int8:
        available.add("int8")
    return "int8" if choose_cpu_path(kind, available) == "int8" else precision
