"""Precision, chosen in one place for every path (inference, training, fine-tuning, self-supervision,
scripts): which dtype a ``precision`` name computes in on a device (:func:`compute_dtype`), the one autocast
context, and what ``--precision`` means for CPU inference (int8 where the CPU rule picks it)."""
from __future__ import annotations

import contextlib

import torch

from derain.errors import DerainError
from derain.inference import PRECISIONS
from derain.inference.hardware import CpuKind, choose_cpu_path, cpu_kind, cpu_supports_bf16


def compute_dtype(precision: str, device: torch.device, fast: bool = True) -> torch.dtype | None:
    """The reduced precision to compute in under ``precision`` on ``device``, or None for float32.

    ``auto`` is bf16 where the device computes it natively: on CPUs with native bf16 only when ``fast``
    (the fast inference path, and training), on GPUs with bf16 always. ``bf16``/``fp16`` force it (fp16 is
    refused on the CPU).
    """
    if precision not in PRECISIONS:
        raise DerainError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type == "cpu":
            raise DerainError("fp16 is not supported on the CPU; use --precision bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if fast and device.type == "cpu" and cpu_supports_bf16() else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; ``dtype=None`` means plain float32 (no context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_inference_precision(precision: str, fast: bool, has_int8: bool, kind: CpuKind | None = None) -> str:
    """What ``precision`` (``--precision``) becomes for CPU inference: ``int8`` where it is asked for, or where
    it is ``auto`` on the fast path and :func:`derain.inference.hardware.choose_cpu_path` picks int8 for this CPU
    (``kind``, default: detected) given whether the model has an int8 version (``has_int8``); anything else is
    returned unchanged (the PyTorch paths resolve auto, bf16 and fp32 themselves). ``--no-fast`` keeps the
    reference path: never int8 unless asked."""
    if precision != "auto" or not fast:
        return precision
    kind = cpu_kind() if kind is None else kind
    available = {"fp32", "bf16"} if kind is CpuKind.BF16 else {"fp32"}
    if has_int8:
        available.add("int8")
    return "int8" if choose_cpu_path(kind, available) == "int8" else precision
