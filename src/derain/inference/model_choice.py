"""Which network ``derain photo.jpg`` runs when the user names none: the default model, or its CPU student on
CPUs where the default is too slow.

The default model needs native bf16 to run a 481x321 photo within a quarter of a second on two cores (190.3 ms
with it on a Zen 5, 329.7 ms in float32 there, several times slower on an AVX2-only CPU). The student
(``fastderain-student``, configs/student_stage1.yaml) runs the levels of its general network on a 2x
unshuffled image: 3.9x fewer multiply-adds than that network alone. On x86 CPUs without native bf16 (AVX2
only, AVX-VNNI, AVX-512 VNNI) the student is the default; ``--model fastderain-experts`` (or any ``--weights``)
keeps the full model. GPUs and CPUs of other kinds (ARM, where nothing was measured) keep the full model.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from derain.inference.hardware import STUDENT_KINDS, CpuKind, cpu_kind
from derain.weights import DEFAULT, STUDENT, bundled_checkpoint

FULL_DEFAULT_HINT = f"--model {DEFAULT}"  # what keeps the full default model on such a CPU

_said: set[str] = set()


def student_suits(kind: CpuKind, device: torch.device) -> bool:
    """Whether a CPU of ``kind`` (on ``device``) should run the student rather than the full default model."""
    return device.type == "cpu" and kind in STUDENT_KINDS


def default_model_for(model: str | None, weights: object, device: torch.device, kind: CpuKind | None = None,
                      say: Callable[[str], None] | None = None) -> str | None:
    """``model``, or the student in its place where the user named neither a model nor weights, the inference
    runs on a CPU without native bf16, and the student is bundled. ``say`` (default: stderr, once per process)
    tells the user which and how to keep the full model."""
    if model is not None or weights is not None or bundled_checkpoint(STUDENT) is None:
        return model
    kind = cpu_kind() if kind is None else kind
    if not student_suits(kind, device):
        return model
    message = (f"derain: this CPU has no native bf16 ({kind.value}): using the default model's faster student "
               f"{STUDENT}; {FULL_DEFAULT_HINT} runs the full model")
    if say is not None:
        say(message)
    elif message not in _said:
        _said.add(message)
        print(message, file=sys.stderr)
    return STUDENT
