"""The commands of the ``derain`` program, one module each: ``main(args)`` runs the command that
:mod:`derain.cli` parsed."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

# How derain run runs a network: PyTorch, or onnxruntime on a file from `derain export --onnx`.
BACKENDS = ("torch", "onnxruntime")

if TYPE_CHECKING:  # torch only when a command runs a network
    from derain.inference.restore import InferenceOptions


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    """The inference options the shared flags of run, video, bench and serve ask for."""
    from derain.inference.restore import InferenceOptions

    return InferenceOptions(tile=args.tile, tile_overlap=args.tile_overlap,
                            tile_threshold=int(args.tile_threshold * 1e6), ensemble=args.ensemble,
                            precision=args.precision, fast=args.fast, compile=args.compile,
                            working_side="auto" if args.working_side == -1 else args.working_side or None)
