"""Reading and writing model checkpoints in the formats people actually have.

Accepted on load:

- a bare ``state_dict``;
- ``{'params': ...}`` / ``{'params_ema': ...}`` (BasicSR, the official Restormer release);
- ``{'state_dict': ...}`` / ``{'model': ...}`` (Lightning-style and most training scripts);
- our self-describing format ``{'format': 'derain', 'model': name, 'config': {...}, 'params': ...}``, which lets
  ``derain run --weights FILE`` rebuild the network without being told its name or configuration
  (:func:`derain.weights.load.load_model`; for the other formats, :mod:`derain.models.detect` recognises the
  network from the weights' keys and shapes);
- ``.safetensors`` files (when the ``safetensors`` package is installed), with our JSON header in the metadata,
  and with 8-bit weights where the header says so (:func:`save_checkpoint` with ``int8_weights``).

``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped. Files are always read
with ``map_location='cpu'`` and ``weights_only=True``: a GPU checkpoint loads on a CPU-only laptop, and a
checkpoint file cannot run code.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from derain.errors import DerainError
from derain.files import INT8_SCALE_SUFFIX

FORMAT_TAG = "derain"
INT8_TAG = "int8_weights"  # header flag: weights stored as int8 with per-output-channel scales
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "network")
_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw object stored in ``path`` (a dict), loaded on the CPU without executing code."""
    path = Path(path)
    if not path.is_file():
        raise DerainError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message here is a paragraph about weights_only; what the user needs is what the file is.
        raise DerainError(f"cannot read checkpoint {path}: not a PyTorch weights file that can be loaded "
                          "safely (weights only)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DerainError(f"cannot read checkpoint {path}: {first}") from None
    except Exception as exc:  # garbage bytes reach the unpickler's internals (KeyError, IndexError, ...)
        raise DerainError(f"cannot read checkpoint {path}: not a PyTorch weights file "
                          f"({type(exc).__name__} while unpickling)") from None
    if not isinstance(obj, Mapping):
        raise DerainError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of weights")
    return dict(obj)


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise DerainError("reading .safetensors needs the 'safetensors' package: pip install safetensors") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise DerainError(f"cannot read checkpoint {path}: {exc}") from None
    if meta.get("format") == FORMAT_TAG:
        header = json.loads(meta.get("derain", "{}"))
        if header.get(INT8_TAG):
            tensors = _from_int8(tensors)
        return {"format": FORMAT_TAG, "params": tensors, **header}
    return tensors


def _to_int8(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every float weight of 2 or more dimensions as int8 with one float32 scale per output channel (its
    largest magnitude / 127, rounded to nearest); biases and scales stay as they are."""
    out: dict[str, torch.Tensor] = {}
    for k, v in params.items():
        if v.is_floating_point() and v.dim() >= 2:
            w = v.float()
            scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127.0
            out[k] = torch.round(w / scale).to(torch.int8)
            out[k + INT8_SCALE_SUFFIX] = scale.flatten()
        else:
            out[k] = v
    return out


def _from_int8(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 weights :func:`_to_int8` stored."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if k.endswith(INT8_SCALE_SUFFIX):
            continue
        scale = tensors.get(k + INT8_SCALE_SUFFIX)
        out[k] = v if scale is None else v.float() * scale.float().view(-1, *([1] * (v.dim() - 1)))
    return out


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint in any accepted wrapping, with wrapper prefixes removed."""
    state: Any = obj
    for _ in range(3):  # wrappers nest at most a couple of levels (e.g. {'state_dict': {'model': ...}})
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DerainError(f"no weights found in checkpoint (top-level keys: {', '.join(map(str, list(obj)[:6]))})")
    return {_strip_prefixes(k): v for k, v in tensors.items()}


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "checkpoint") -> nn.Module:
    """Load ``state`` into ``model`` strictly; a mismatch is one line naming the first offending keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:3])}{more}")
        raise DerainError(f"{what} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)
    return model


def save_checkpoint(path: str | Path, model: nn.Module, model_name: str, config: Mapping[str, Any],
                    extra: Mapping[str, Any] | None = None, dtype: torch.dtype | None = None,
                    int8_weights: bool = False) -> Path:
    """Write a self-describing checkpoint atomically (``.safetensors`` or torch format by suffix).

    ``dtype`` stores floating-point tensors in that type (e.g. float16 halves a bundled model's size; they
    are cast back to the network's float32 on load). ``int8_weights`` (``.safetensors`` only) stores every
    weight of 2 or more dimensions in 8 bits with a scale per output channel, a quarter of float32's size;
    the reader restores float32 weights, so the network computes as before to that rounding.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        params = {k: v.to(dtype) if v.is_floating_point() else v for k, v in params.items()}
    header = {"model": model_name, "config": _plain(dict(config)), **_plain(dict(extra or {}))}
    if int8_weights:
        if path.suffix != ".safetensors":
            raise DerainError("8-bit weights are written to .safetensors files only")
        params, header = _to_int8(params), {**header, INT8_TAG: True}
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise DerainError("writing .safetensors needs the 'safetensors' package: pip install safetensors") from None
        save_file(params, str(tmp), metadata={"format": FORMAT_TAG, "derain": json.dumps(header)})
    else:
        torch.save({"format": FORMAT_TAG, "params": params, **header}, tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates private (0600) files; a checkpoint is shared
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    """Config values as plain Python types, so the file loads with ``weights_only=True`` and as JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def file_fingerprint(path: str | Path) -> str:
    """A short, stable identity of a weights file: the first 16 hex digits of its SHA-256 (what ``derain run``
    records in its outputs and what names a cached int8 model)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
