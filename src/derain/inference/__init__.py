"""Running a trained network on images: padding, tiling, self-ensembles, the fast path, precision, what the
machine can do (hardware), and the int8 / ONNX runtime models.

The names a user may choose are defined here, without torch, so the command line offers exactly these
(``derain --help`` and ``derain models`` never import torch)."""

# --precision of the PyTorch paths (inference adds int8, an onnxruntime model: derain.inference.quantize).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# What training, fine-tuning and self-supervision accept (fp16 would need loss scaling, which they do not do).
TRAINING_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
# --ensemble: the self-ensembles of derain.inference.ensembles.ENSEMBLES, cheapest first.
ENSEMBLE_NAMES: tuple[str, ...] = ("none", "hflip", "flips", "dihedral")
