"""``derain export --onnx``: a checkpoint exported to ONNX, checked against PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path

from derain.errors import DerainError
from derain.inference.onnx import DEFAULT_TOLERANCE, ExportReport, export_onnx


def export_checkpoint(model: str | None, weights: str | None, output: str | Path, overwrite: bool = False,
                      tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """``derain export --onnx``: load a checkpoint (default: the bundled model) and export it, checked."""
    from derain.files.outputs import refuse_existing
    from derain.inference.restore import size_multiple_of
    from derain.models import get_spec
    from derain.weights.load import load_model
    from derain.weights.resolve import resolve_weights

    output = Path(output)
    if output.suffix != ".onnx":
        raise DerainError(f"the ONNX file name must end in .onnx, got {output}")
    refuse_existing([output], overwrite)
    if not output.parent.is_dir():
        raise DerainError(f"output folder {output.parent} does not exist")
    net, name = load_model(model, resolve_weights(model, weights))
    # The network's own multiple, as derain.inference.restore.restore pads to it (a checkpoint's configuration may
    # differ from the registry's default one).
    return export_onnx(net, name, output, size_multiple_of(net, get_spec(name).size_multiple), tolerance)


def main(args: argparse.Namespace) -> int:
    """``derain export --onnx``: export a checkpoint to ONNX and say how well it matched."""
    report = export_checkpoint(args.model, args.weights, args.onnx, args.overwrite, args.tolerance)
    print(f"derain: wrote {report.path} ({report.model}, sides multiples of {report.size_multiple}); "
          f"checked on {report.check_shape[0]}x{report.check_shape[1]}: max abs difference from PyTorch "
          f"{report.max_abs_error:.2e} ({report.seconds:.0f} s)")
    return 0
