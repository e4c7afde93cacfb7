"""int8 inference: a model's ONNX export quantised by onnxruntime, found again where it was written.

The int8 path is for CPUs without native bf16 (:func:`derain.inference.hardware.choose_cpu_path`). It is onnxruntime's
static quantisation of the float32 ONNX file ``derain export --onnx`` writes: QDQ format, per-channel int8
weights, uint8 activations calibrated on training patches. What holds quality (docs/performance.md):

- the convolutions that read the image and write the rain layer stay in float32, and so does the
  image-level residual ``output = input - rain``: the rain layer is a small difference of large values,
  which 8-bit activations cannot hold (a fully quantised FastDerain lost 0.63 dB on Rain100L); so do the two
  convolutions before the last one (the default model's full-resolution decoder block: 0.1 dB of Rain100L);
- the features between convolutions (activations, residual sums, pixel shuffles) are uint8;
- activation ranges from the 99.999th percentiles of the calibration activations, not their extremes;
- the weights use 7 bits (``reduce_range``): onnxruntime's AVX2 kernels multiply uint8 by int8 into 16-bit
  sums, which 8-bit weights can overflow (saturate) and 7-bit ones cannot, so an AVX2-only CPU computes the
  same integers as the VNNI CPU the quality was measured on.

The int8 file is made per checkpoint and kept in a user cache (:func:`int8_path_for`: the checkpoint's
fingerprint in the name, so a replaced checkpoint never finds a stale int8 model); ``derain run`` uses it
where the CPU rule picks int8, or with ``--precision int8``. onnx and onnxruntime are optional (the ``onnx``
extra).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from derain.errors import DerainError
from derain.files.checkpoints import file_fingerprint
from derain.inference.onnx import META_MODEL, META_MULTIPLE, OnnxModel, _check_input, _require, export_onnx

META_PRECISION = "derain.precision"
META_SOURCE = "derain.source"  # fingerprint of the float checkpoint the int8 model was made from
# Ops whose inputs and outputs are quantised (measured choice, docs/performance.md): the convolutions, the
# activations between two of them, the residual sums and the pixel shuffles, so the features stay uint8 from
# one convolution to the next (2.02x the float32 export's speed against 1.54x for convolutions and
# activations alone, Rain100L -0.12 against -0.09 dB). The image-level residual (Sub) stays float32.
DEFAULT_OPS = ("Conv", "LeakyRelu", "Add", "DepthToSpace")


@dataclass
class QuantizeReport:
    """What :func:`quantize_onnx` wrote."""

    path: Path
    float_convs: list[str]  # convolutions kept in float32 (they read the image or write the rain layer)
    int8_convs: int
    calibration_patches: int
    max_abs_error: float  # against the float32 ONNX model on the export check input
    seconds: float
    size_bytes: int


def cache_dir() -> Path:
    """Where int8 models are kept: ``$DERAIN_CACHE`` if set, else ``$XDG_CACHE_HOME/derain`` (``~/.cache/derain``)."""
    if os.environ.get("DERAIN_CACHE"):
        return Path(os.environ["DERAIN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "derain"


def int8_path_for(checkpoint: str | Path) -> Path:
    """The cache file of ``checkpoint``'s int8 model (named by the checkpoint's fingerprint)."""
    checkpoint = Path(checkpoint)
    return cache_dir() / "int8" / f"{checkpoint.stem}-{file_fingerprint(checkpoint)}.int8.onnx"


def find_int8(checkpoint: str | Path) -> Path | None:
    """``checkpoint``'s int8 model if one was made (:func:`int8_path_for`) and onnxruntime can run it, else None."""
    path = int8_path_for(checkpoint)
    if not path.is_file():
        return None
    try:
        import onnxruntime  # noqa: F401 (imported only to learn whether it is installed)
    except ImportError:
        return None
    return path


def boundary_convs(graph) -> list[str]:
    """Names of the Conv nodes of an ONNX ``graph`` that read the graph's input or write its output through
    no other Conv: the layers that see the image or the rain layer at full precision."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    def reaches(start: list[str], step, ends: set[str]) -> bool:
        seen, todo = set(), list(start)
        while todo:
            name = todo.pop()
            if name in ends:
                return True
            if name in seen:
                continue
            seen.add(name)
            for node in step(name):
                if node.op_type != "Conv":
                    todo.extend(node.input if step is upstream else node.output)
        return False

    def upstream(name: str) -> list:
        node = producers.get(name)
        return [node] if node is not None else []

    def downstream(name: str) -> list:
        return consumers.get(name, [])

    found = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        if reaches([node.input[0]], upstream, inputs) or reaches(list(node.output), downstream, outputs):
            found.append(node.name)
    return found


class _PatchReader:
    """onnxruntime's calibration reader interface over a list of 3 x H x W float32 patches."""

    def __init__(self, input_name: str, patches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self._patches = iter(patches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        patch = next(self._patches, None)
        return None if patch is None else {self.input_name: np.ascontiguousarray(patch[None], dtype=np.float32)}


def quantize_onnx(float_path: str | Path, output: str | Path, patches: Sequence[np.ndarray],
                  ops: Iterable[str] = DEFAULT_OPS, keep_float: Iterable[str] | None = None, float_tail: int = 2,
                  reduce_range: bool = True, method: str = "percentile", source: str = "") -> QuantizeReport:
    """Write the int8 QDQ version of the float32 model ``float_path`` (written by ``derain export --onnx``)
    to ``output``, calibrated on ``patches`` (3 x H x W float32 in [0, 1], e.g. training crops).

    ``keep_float``: Conv node names left in float32 (default: :func:`boundary_convs` and the ``float_tail``
    convolutions before the last one, in the graph's order, which is the forward's); ``method``: ``percentile``
    (99.999%) or ``minmax`` activation ranges; ``reduce_range``: 7-bit weights. The file keeps the derain metadata, so
    :class:`derain.inference.onnx.OnnxModel` runs it like any export.
    """
    for module in ("onnx", "onnxruntime"):
        _require(module)
    import onnx
    from onnxruntime.quantization import CalibrationMethod

    if not patches:
        raise DerainError("int8 calibration needs at least one image patch")
    start = time.perf_counter()
    float_path, output = Path(float_path), Path(output)
    proto = onnx.load(str(float_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if META_MODEL not in meta:
        raise DerainError(f"{float_path} was not written by `derain export --onnx` (no {META_MODEL} metadata)")
    if keep_float is None:
        convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
        tail = convs[len(convs) - 1 - float_tail:-1] if float_tail > 0 else []
        excluded = boundary_convs(proto.graph) + [name for name in tail if name not in boundary_convs(proto.graph)]
    else:
        excluded = list(keep_float)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise DerainError(f"unknown calibration method {method!r}; choose one of {', '.join(methods)}")
    root = logging.getLogger()  # onnxruntime's quantiser logs advice on the root logger: keep it quiet
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
            quantized = _quantize_static(float_path, proto, patches, ops, excluded, reduce_range, methods[method])
    finally:
        root.setLevel(level)
    onnx.helper.set_model_props(quantized, {**meta, META_PRECISION: "int8", META_SOURCE: source})
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(quantized, str(output))

    x = _check_input(int(meta.get(META_MULTIPLE, "1")))[0].numpy()[None]
    error = float(np.abs(OnnxModel(output).run(x) - OnnxModel(float_path).run(x)).max())
    int8_convs = sum(1 for n in proto.graph.node if n.op_type == "Conv") - len(excluded)
    return QuantizeReport(output, excluded, int8_convs, len(patches), error, time.perf_counter() - start,
                          output.stat().st_size)


def _quantize_static(float_path: Path, proto, patches: Sequence[np.ndarray], ops: Iterable[str],
                     excluded: list[str], reduce_range: bool, method):
    """onnxruntime's static QDQ quantisation of ``float_path``; returns the quantised model proto."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as scratch:  # the calibrator writes an augmented copy of the model
        partial = Path(scratch) / "int8.onnx"
        quantize_static(str(float_path), str(partial), _PatchReader(proto.graph.input[0].name, patches),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops), per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=method,
                        extra_options={"CalibTensorRangeSymmetric": False, "CalibPercentile": 99.999})
        return onnx.load(str(partial))


def quantize_checkpoint(model: str | None, weights: str | None, patches: Sequence[np.ndarray],
                        output: str | Path | None = None, overwrite: bool = False, **options) -> QuantizeReport:
    """Export a checkpoint (default: the bundled model) to ONNX and write its int8 version to ``output``
    (default: :func:`int8_path_for` the checkpoint, where ``derain run`` looks for it)."""
    from derain.files.outputs import refuse_existing
    from derain.inference.restore import size_multiple_of
    from derain.models import get_spec
    from derain.weights.load import load_model
    from derain.weights.resolve import resolve_weights

    checkpoint = resolve_weights(model, weights)
    output = Path(output) if output is not None else int8_path_for(checkpoint)
    if output.suffix != ".onnx":
        raise DerainError(f"the int8 model's file name must end in .onnx, got {output}")
    refuse_existing([output], overwrite)
    net, name = load_model(model, checkpoint)
    with tempfile.TemporaryDirectory() as scratch:
        float_path = Path(scratch) / "float32.onnx"
        export_onnx(net, name, float_path, size_multiple_of(net, get_spec(name).size_multiple))
        return quantize_onnx(float_path, output, patches, source=file_fingerprint(checkpoint), **options)


def random_crops(images: Iterable[np.ndarray], count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` crops of ``size`` x ``size`` (3 x H x W float32), cycling through ``images`` (H x W x 3 in
    [0, 1], each at least ``size`` on both sides), at seeded random places."""
    rng = np.random.default_rng(seed)
    pool = list(images)
    if not pool:
        raise DerainError("no calibration images")
    crops = []
    for i in range(count):
        image = pool[i % len(pool)]
        h, w = image.shape[:2]
        if h < size or w < size:
            raise DerainError(f"calibration image of {w}x{h} is smaller than the {size}-pixel patch")
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crops.append(np.ascontiguousarray(image[top:top + size, left:left + size].transpose(2, 0, 1), np.float32))
    return crops


def int8_model_for_run(precision: str, fast: bool, model: str | None, weights: str | None) -> Path | None:
    """The int8 ONNX file ``derain run`` should use on the CPU, or None for the PyTorch paths.

    ``--precision int8`` with ``--weights FILE.onnx`` runs that file; with a checkpoint (or the bundled
    default) it runs the checkpoint's int8 version from the cache, which must exist. ``auto`` on the fast path
    uses that version where it exists and the CPU rule picks int8
    (:func:`derain.inference.precision.cpu_inference_precision`).
    """
    from derain.inference.precision import cpu_inference_precision
    from derain.weights.resolve import resolve_weights

    if precision == "int8" and weights is not None and Path(weights).suffix == ".onnx":
        return Path(weights)
    if precision not in ("int8", "auto") or (weights is not None and Path(weights).suffix == ".onnx"):
        return None
    if precision == "auto" and cpu_inference_precision(precision, fast, True) != "int8":
        return None  # this CPU keeps the PyTorch paths whatever exists: no need to look (or hash the checkpoint)
    checkpoint = resolve_weights(model, weights)
    found = find_int8(checkpoint)
    if cpu_inference_precision(precision, fast, found is not None) != "int8":
        return None
    if found is None:
        _require("onnxruntime")
        raise DerainError(f"no int8 version of {checkpoint} yet: make it with `python scripts/quantize_default.py"
                          f"{'' if weights is None else ' --weights ' + str(weights)}` (it writes "
                          f"{int8_path_for(checkpoint)}), or pass --weights FILE.int8.onnx")
    return found
