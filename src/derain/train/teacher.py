"""Targets from a trained model: self-distillation of a self-ensemble into one network.

The default model's mirror/flip ensembles score up to 0.4 dB above its single pass, at 2-4x the time. Training
a network on the ensemble's outputs of the training inputs (in place of, or mixed with, the ground truth)
moves part of that gain into one pass. The teacher runs once per run on every training input (reference
float32 path, whole images), and its outputs are cached in the run folder, keyed by the teacher's bytes, the
ensemble and the mix, so that a resumed run trains on exactly the targets it started with.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError

Pair = tuple[str, np.ndarray, np.ndarray]
CACHE_NAME = "teacher_targets.npz"


def _fingerprint(weights: Path, ensemble: str, mix: float, names: Sequence[str]) -> str:
    digest = hashlib.sha256(weights.read_bytes())
    digest.update(f"{ensemble}|{mix!r}|{'|'.join(names)}".encode())
    return digest.hexdigest()


def teacher_outputs(weights: Path, inputs: Sequence[np.ndarray], ensemble: str,
                    device: torch.device | None = None) -> list[np.ndarray]:
    """The teacher's ``ensemble`` output (HxWx3 float32 in [0, 1]) for each uint8 input, reference float32 path."""
    from derain.inference.restore import InferenceOptions, restore
    from derain.models import get_spec
    from derain.weights.load import load_model

    model, name = load_model(None, weights)
    device = device or torch.device("cpu")
    model = model.to(device)
    options = InferenceOptions(fast=False, precision="fp32", tile=0, ensemble=ensemble)
    multiple = get_spec(name).size_multiple
    outputs = []
    with torch.no_grad():
        for image in inputs:
            x = image_to_tensor(np.asarray(image, dtype=np.uint8))
            outputs.append(tensor_to_image(restore(model, x, multiple, options, device)))
    return outputs


def mixed_target(teacher: np.ndarray, truth: np.ndarray, mix: float) -> np.ndarray:
    """``mix * teacher + (1 - mix) * truth`` rounded to uint8 (``teacher`` float in [0, 1], ``truth`` uint8)."""
    blend = mix * teacher * 255.0 + (1.0 - mix) * truth.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def distilled_pairs(pairs: Sequence[Pair], weights: str | Path, ensemble: str, mix: float,
                    cache_dir: Path | None = None, device: torch.device | None = None,
                    log: Callable[[str], None] = print) -> list[Pair]:
    """``pairs`` with each target replaced by :func:`mixed_target` of the teacher's output and the ground truth.

    ``weights`` is a checkpoint or a run folder (its last weights). With ``cache_dir`` the targets are read
    from, or written to, ``cache_dir/teacher_targets.npz``; a cache made by another teacher, ensemble, mix or
    set of pairs is recomputed, never reused.
    """
    from derain.inference.ensembles import ENSEMBLES
    from derain.train.rundir import weights_path_for

    if ensemble not in ENSEMBLES:
        raise DerainError(f"config key 'data.teacher_ensemble': unknown ensemble {ensemble!r} "
                          f"(known: {', '.join(ENSEMBLES)})")
    path = weights_path_for(weights)
    if not path.is_file():
        raise DerainError(f"data.teacher: no weights at {weights}")
    names = [name for name, _, _ in pairs]
    key = _fingerprint(path, ensemble, mix, names)
    cache = cache_dir / CACHE_NAME if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                log(f"teacher targets from {cache}")
                return [(name, inp, stored[f"t{i}"]) for i, (name, inp, _) in enumerate(pairs)]
    log(f"teacher targets: {path}, ensemble {ensemble}, mix {mix:g}, {len(pairs)} images ...")
    outputs = teacher_outputs(path, [inp for _, inp, _ in pairs], ensemble, device)
    targets = [mixed_target(out, tgt, mix) for out, (_, _, tgt) in zip(outputs, pairs)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)  # cache_dir
        partial = cache.with_name(cache.name + ".partial.npz")
        arrays: dict[str, Any] = {f"t{i}": t for i, t in enumerate(targets)}
        np.savez(partial, key=np.array(key), **arrays)
        partial.replace(cache)
    return [(name, inp, target) for (name, inp, _), target in zip(pairs, targets)]
