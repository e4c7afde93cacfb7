"""ONNX: export any registry model with dynamic height and width, check it numerically, and run it.

``export_onnx`` folds re-parameterised layers first (the deployed graph is the fast one), exports with
``torch.onnx`` (the ``torch.export``-based exporter) and then runs the file in onnxruntime on an input of a
*different* size from the one traced, comparing with PyTorch. Exporters have silently reordered channels in
pixel-(un)shuffle before; a file that disagrees is deleted and reported, never left behind as if it worked.

The network's registry name and size multiple are stored in the ONNX metadata, so a ``.onnx`` file is
self-describing like our safetensors checkpoints: ``derain run --backend onnxruntime --weights model.onnx``.
onnx, onnxscript and onnxruntime are optional (``pip install -e ".[onnx]"``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from derain.errors import DerainError
from derain.inference.restore import primary_output
from derain.models.capabilities import capabilities_of

META_MODEL = "derain.model"
META_MULTIPLE = "derain.size_multiple"
DEFAULT_TOLERANCE = 1e-4  # float32 kernels of two runtimes differ by ~1e-6 here; a wrong graph by >1e-2


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and how well the file agrees with PyTorch."""

    path: Path
    model: str
    size_multiple: int
    check_shape: tuple[int, int]  # H, W of the check input (not the traced size)
    max_abs_error: float
    seconds: float  # export + check


class _FirstOutput(nn.Module):
    """Exports the restored image only (multi-output networks such as DMSR also return smaller scales)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return primary_output(self.model(x))


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise DerainError(f"ONNX support needs the optional packages onnx, onnxscript and onnxruntime: "
                          f"pip install -e \".[onnx]\" ({module} is missing)") from None


def _check_input(multiple: int, seed: int = 0) -> torch.Tensor:
    """A smooth, image-like input whose sides differ from the traced ones and from each other."""
    base = max(multiple, 16)
    h, w = 3 * base + multiple, 5 * base + 3 * multiple
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def export_onnx(model: nn.Module, name: str, path: str | Path, size_multiple: int,
                tolerance: float = DEFAULT_TOLERANCE, opset: int = 18) -> ExportReport:
    """Write ``model`` (CPU, float32) to ``path`` as ONNX with dynamic H and W, then check it in onnxruntime.

    H and W of the exported graph must be multiples of ``size_multiple`` (``derain.inference.restore.restore``
    pads to it). Raises :class:`DerainError` (and removes the file) when the check's largest error exceeds
    ``tolerance``.
    """
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _require(module)
    import onnx
    from torch.export import Dim

    path = Path(path)
    start = time.perf_counter()
    model = model.cpu().float().eval()
    if capabilities_of(model).foldable:  # FastDerain's re-parameterised convs: export the single-conv form
        cast(Any, model).fold()  # a method of the foldable models only
    wrapped = _FirstOutput(model).eval()
    m = max(size_multiple, 1)
    trace = torch.rand(1, 3, 4 * max(m, 16), 6 * max(m, 16))
    # Sizes are declared as multiples of the model's size multiple, so the exporter may rely on it.
    h, w = (Dim("h", min=1, max=8192), Dim("w", min=1, max=8192)) if m == 1 else \
        (m * Dim("h_blocks", min=1, max=8192 // m), m * Dim("w_blocks", min=1, max=8192 // m))
    try:
        # The exporter narrates each pass on stdout and warns about optional packages (torchvision): quiet it.
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
                _quiet_logger("torch.onnx"), _quiet_logger("torch.export"):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (trace,), str(path), dynamo=True, external_data=False, opset_version=opset,
                              input_names=["image"], output_names=["restored"],
                              dynamic_shapes=({2: h, 3: w},), verbose=False)
    except Exception as exc:  # the exporter raises many types; the user needs the model and the reason
        path.unlink(missing_ok=True)
        raise DerainError(f"ONNX export of {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {META_MODEL: name, META_MULTIPLE: str(m)})
    onnx.save(proto, str(path))

    x = _check_input(m)
    with torch.no_grad():
        expected = wrapped(x).numpy()
    got = OnnxModel(path).run(x.numpy())
    error = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not error <= tolerance:
        path.unlink(missing_ok=True)
        raise DerainError(f"ONNX export of {name} does not match PyTorch (max abs error {error:.3g} > "
                          f"{tolerance:g} on a {x.shape[-2]}x{x.shape[-1]} input); the file was removed")
    return ExportReport(path, name, m, (x.shape[-2], x.shape[-1]), error, time.perf_counter() - start)


class OnnxModel(nn.Module):
    """An exported model run by onnxruntime, usable wherever ``derain.inference.restore.restore`` takes a network.

    It has no parameters; pass ``device=torch.device("cpu")`` to ``restore``. onnxruntime computes in float32
    whatever precision is asked of the PyTorch path.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        _require("onnxruntime")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise DerainError(f"ONNX file not found: {path}")
        self.path = path  # what derain run records as the weights of its outputs
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types are not importable by a stable name
            raise DerainError(f"{path} is not a model onnxruntime can load ({str(exc).splitlines()[0]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_MODEL not in meta:
            raise DerainError(f"{path} was not written by `derain export --onnx` (no {META_MODEL} metadata)")
        self.name = meta[META_MODEL]
        self.size_multiple = int(meta.get(META_MULTIPLE, "1"))
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x H x W float32 (H, W multiples of ``size_multiple``) -> the restored images."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().cpu().float().numpy()))
