"""Make the int8 version of the bundled default model (or of another checkpoint), where `derain run` finds it.

    python scripts/quantize_default.py [--weights CKPT] [--output FILE.int8.onnx] [--overwrite]
                                       [--patches 64] [--size 160] [--method percentile] [--float-tail 2]

One command, to be run again whenever the checkpoint changes (the cache file is named by the checkpoint's
fingerprint, so a new default model is never run with an old int8 file). It exports the checkpoint to ONNX and
quantises it with onnxruntime (``derain.inference.quantize``), calibrated on ``--patches`` random crops: three quarters
from the rainy RainTrainL training images (``../shared/data/rain100l-train/rainy``), one quarter from clean
``clean/bsds-extra`` photos (minus the heavy-rain validation set's backgrounds) with synthetic rain of the
``real`` preset. No test image (Rain100L test, CBSD68) is ever used. Default output: the user cache
(``derain.inference.quantize.int8_path_for``, ``~/.cache/derain/int8/``), where ``derain run`` picks it up on CPUs
without native bf16 and with ``--precision int8``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from derain.data.heavyval import is_held_out
from derain.data.synth import preset, synthesize
from derain.errors import DerainError
from derain.files.imageio import read_uint8_rgb
from derain.inference.quantize import DEFAULT_OPS, quantize_checkpoint, random_crops

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def calibration_patches(data: Path, count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` crops: 3/4 rainy training crops, 1/4 clean bsds-extra crops with synthetic ``real`` rain."""
    rainy_files = sorted((data / "rain100l-train" / "rainy").glob("*.webp"))
    clean_files = [p for p in sorted((data / "clean" / "bsds-extra").glob("*.jpg")) if not is_held_out(p)]
    if not rainy_files or not clean_files:
        raise DerainError(f"calibration needs {data}/rain100l-train/rainy and {data}/clean/bsds-extra")
    rng = np.random.default_rng(seed)
    synthetic = count // 4
    rainy_pick = rng.choice(len(rainy_files), size=count - synthetic, replace=False)
    clean_pick = rng.choice(len(clean_files), size=synthetic, replace=False)
    rainy = [read_uint8_rgb(rainy_files[i]).astype(np.float32) / 255 for i in rainy_pick]
    patches = random_crops(rainy, count - synthetic, size, seed)
    clean = random_crops([read_uint8_rgb(clean_files[i]).astype(np.float32) / 255 for i in clean_pick],
                         synthetic, size, seed + 1)
    if clean:
        generator = torch.Generator().manual_seed(seed)
        wet = synthesize(torch.from_numpy(np.stack(clean)), preset("real"), generator, wrap=False)
        patches += [p.numpy().astype(np.float32) for p in wet.clamp(0, 1)]
    return patches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="network name, where the checkpoint does not name it")
    parser.add_argument("--weights", help="checkpoint (default: the bundled default model)")
    parser.add_argument("--output", help="int8 ONNX file (default: the user cache, where derain run looks)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--patches", type=int, default=64, help="calibration crops (default 64)")
    parser.add_argument("--size", type=int, default=160, help="crop side in pixels (default 160)")
    parser.add_argument("--method", default="percentile", choices=["percentile", "minmax"],
                        help="activation ranges: 99.999th percentiles (default) or extremes")
    parser.add_argument("--float-tail", type=int, default=2,
                        help="convolutions before the last one kept in float32 (default 2)")
    parser.add_argument("--ops", default=",".join(DEFAULT_OPS), help="ONNX ops to quantise (comma-separated)")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights instead of 7 (can saturate in onnxruntime's AVX2 kernels)")
    parser.add_argument("--quantize-boundary", action="store_true",
                        help="quantise the first and last convolutions too (loses quality; for measurement)")
    args = parser.parse_args()
    try:
        patches = calibration_patches(args.data, args.patches, args.size)
        report = quantize_checkpoint(args.model, args.weights, patches, args.output, args.overwrite,
                                     ops=[op for op in args.ops.split(",") if op], method=args.method,
                                     reduce_range=not args.full_range, float_tail=args.float_tail,
                                     keep_float=[] if args.quantize_boundary else None)
    except DerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB): {report.int8_convs} int8 convolutions, "
          f"kept in float32: {', '.join(report.float_convs) or 'none'}; {report.calibration_patches} calibration "
          f"patches; max abs difference from float32 {report.max_abs_error:.4f} on the export check input; "
          f"{report.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
