"""The fast inference path: the same network, prepared once for the machine it runs on.

The reference path is the checkpoint's network as trained, run eagerly in float32. The fast path computes the
same function with what this machine does quickly, each step chosen by measurement (docs/performance.md):

- **folded layers**: a network with a ``fold()`` method replaces its training-time structure by an equivalent
  cheaper one (FastDerain's re-parameterised branches become one 3x3 conv; Restormer's LayerNorm affine
  parameters move into the 1x1 convolutions that follow them);
- **channels-last** memory layout, which oneDNN's convolutions prefer on CPUs (1.2-1.5x measured);
- **bf16** where the processor computes it natively (AVX-512 BF16 or AMX, detected; CUDA GPUs with bf16):
  weights stored in bf16 for networks that keep their image-level residual in float32 (FastDerain), bf16
  autocast for the others. CPUs without native bf16 emulate it many times slower, so they keep float32;
- optionally ``torch.compile`` with frozen weights, which pays when many images go through one loaded model
  (a folder, the web app) and costs a one-off compile of seconds to a minute.

:func:`prepare_model` returns a :class:`PreparedModel`; :func:`derain.inference.restore.restore` prepares a plain
``nn.Module`` on every call (cheap: a copy and a cast), or uses an already prepared one as it is.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from derain.inference.precision import compute_dtype
from derain.models.capabilities import capabilities_of


@dataclass(frozen=True)
class FastPath:
    """How a network is prepared and run; the reference path is ``FastPath()`` (nothing changed)."""

    fold: bool = False
    channels_last: bool = False
    autocast: torch.dtype | None = None  # run under autocast to this dtype
    weights_dtype: torch.dtype | None = None  # store the weights in this dtype (the network casts its input)
    compile: bool = False

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``fold + channels-last + bf16 weights``."""
        parts = [name for name, on in (("fold", self.fold), ("channels-last", self.channels_last)) if on]
        if self.weights_dtype is not None:
            parts.append(f"{_dtype_name(self.weights_dtype)} weights")
        if self.autocast is not None:
            parts.append(f"{_dtype_name(self.autocast)} autocast")
        if self.compile:
            parts.append("torch.compile")
        return " + ".join(parts) or "reference (eager float32)"


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def choose_fast_path(model: nn.Module, device: torch.device, precision: str = "auto", fast: bool = True,
                     compile: bool = False) -> FastPath:
    """The path for ``model`` on ``device``: everything that pays there when ``fast``, else the reference
    (in the requested precision)."""
    dtype = compute_dtype(precision, device, fast)
    if not fast:
        return FastPath(autocast=dtype, compile=compile)
    # Networks that cast their input to their weights' dtype and add the residual in float32 can hold bf16
    # weights: no casts between layers, and the output keeps float32 precision where it matters.
    can = capabilities_of(model)
    own_dtype = dtype is not None and can.low_precision_weights
    return FastPath(fold=can.foldable, channels_last=True,
                    autocast=None if own_dtype else dtype, weights_dtype=dtype if own_dtype else None,
                    compile=compile)


class PreparedModel(nn.Module):
    """A network prepared for one :class:`FastPath`: takes and returns float32 images (B x C x H x W)."""

    def __init__(self, net: nn.Module, path: FastPath, device: torch.device) -> None:
        super().__init__()
        self.net = net
        self.path = path
        self.device = device

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.path.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.path.autocast
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = self.net(x)
        if isinstance(y, (list, tuple)):
            return [t.float().contiguous() for t in y]
        return y.float().contiguous()


def prepare_model(model: nn.Module, path: FastPath, device: torch.device | None = None) -> PreparedModel:
    """A prepared copy of ``model`` (``model`` itself is left untouched) in eval mode on ``device``."""
    device = device or next(model.parameters()).device
    net = copy.deepcopy(model).eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    if path.fold:
        cast(Any, net).fold()  # a method of the foldable models only (capabilities_of(...).foldable)
    if path.weights_dtype is not None:
        net = net.to(path.weights_dtype)
    if path.channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs lack it
    if path.compile:
        net = _compiled(net, device)
    return PreparedModel(net, path, device)


def _compiled(net: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile`` with frozen weights (constant-folded and pre-packed for oneDNN on the CPU); on CUDA
    also CUDA graphs ("reduce-overhead"), which replay a whole forward per launch for a fixed tile size.
    Compiling happens at the first call of each new input size, so it pays for tiles and folders, not for
    one photo."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    # compile() of a Module returns an OptimizedModule, a Module; its stub only promises a callable
    return cast(nn.Module, torch.compile(net, mode=mode, options=None if mode else {"freezing": True}))
