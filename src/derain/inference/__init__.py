"""Running a trained network on images: padding, tiling, self-ensembles, the fast path, precision, what the
machine can do (hardware), and the int8 / ONNX runtime models."""
