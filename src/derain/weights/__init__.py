"""The bundled models: trained checkpoints shipped inside the package, so that ``derain photo.jpg`` works with
nothing downloaded. ``default.safetensors`` holds the default model, the rain experts (configs/default_experts.yaml,
8-bit weights), ``rain100l.safetensors`` the Rain100L specialist (configs/rain100l_model.yaml) and
``student.safetensors`` the CPU student (configs/student_stage1.yaml); :func:`default_checkpoint` is None only in
a checkout whose weight files are missing."""
from __future__ import annotations

from pathlib import Path

DEFAULT_NAME = "default.safetensors"  # float16 tensors + JSON header (model name, config)
# Other bundled models, by registry name: the Rain100L specialist (the default model until issue 36, 38.67 dB
# on Rain100L) stays selectable with ``--model fastderain-rain100l``.
# The CPU student of the default model (configs/student_stage1.yaml) is what `derain photo.jpg` runs on x86 CPUs
# without native bf16 (derain.inference.model_choice).
STUDENT = "fastderain-student"
# The default model's registry name (its bundled file's header says the same; tests/test_experts.py checks it):
# what `--model` names to keep it where the student would be chosen.
DEFAULT = "fastderain-experts"
BUNDLED = {"fastderain-rain100l": "rain100l.safetensors", STUDENT: "student.safetensors"}


def default_checkpoint() -> Path | None:
    """Path of the bundled default checkpoint, or None when the package ships none."""
    path = Path(__file__).with_name(DEFAULT_NAME)
    return path if path.is_file() else None


def default_model_name() -> str | None:
    """The registered network the bundled checkpoint holds (read from its header), or None."""
    path = default_checkpoint()
    if path is None:
        return None
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        header = json.loads((f.metadata() or {}).get("derain", "{}"))
    return header.get("model")


def bundled_checkpoint(model: str | None) -> Path | None:
    """The bundled checkpoint of ``model`` (None: the default model), or None when none is shipped for it."""
    if model is not None and model in BUNDLED:
        path = Path(__file__).with_name(BUNDLED[model])
        return path if path.is_file() else None
    if model is None or model == default_model_name():
        return default_checkpoint()
    return None
