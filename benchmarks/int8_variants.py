"""Which int8 quantisation of a model holds quality: variants scored on Rain100L and timed, in one process.

    python benchmarks/int8_variants.py [--weights CKPT] [--threads 2] [--runs 10] [--patches 64] [--size 160]

Exports the checkpoint (default: the bundled model) to ONNX once, then quantises it several ways with
``derain.inference.quantize.quantize_onnx`` on the calibration patches of ``scripts/quantize_default.py`` (training
images only), and prints per variant: Rain100L ``matlab-y`` PSNR over all 100 pairs (onnxruntime, padded to
the size multiple and cropped back) and its difference from the float32 export, and the median milliseconds of
``--runs`` runs on the padded 481x321 ``rain-001.png``, the variants timed round-robin. Variants: the default
of ``derain.inference.quantize`` (convolutions, LeakyReLU, residual sums and pixel shuffles in int8; the image-reading
and rain-writing convolutions and the two before the last in float32; 7-bit weights; percentile ranges), and
convolutions and LeakyReLU alone in int8, with one more thing changed per row. Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from quantize_default import DATA, calibration_patches  # noqa: E402

from derain.weights.load import load_model  # noqa: E402
from derain.data.pairs import find_pairs  # noqa: E402
from derain.inference.onnx import OnnxModel, export_onnx  # noqa: E402
from derain.files.imageio import read_uint8_rgb  # noqa: E402
from derain.inference.restore import pad_to_multiple, size_multiple_of  # noqa: E402
from derain.metrics import psnr_ssim  # noqa: E402
from derain.models import get_spec  # noqa: E402
from derain.inference.quantize import DEFAULT_OPS, quantize_onnx  # noqa: E402
from derain.weights import default_checkpoint  # noqa: E402

VARIANTS = {
    "default: Conv, LeakyRelu, Add, DepthToSpace int8; first, last, 2 before last conv float; 7-bit; percentile": {},
    "Conv and LeakyRelu only (residual sums and pixel shuffles in float)": {"ops": ("Conv", "LeakyRelu")},
    "the same, only the first and last conv float": {"ops": ("Conv", "LeakyRelu"), "float_tail": 0},
    "the same, every conv int8": {"ops": ("Conv", "LeakyRelu"), "keep_float": []},
    "the same, min-max ranges": {"ops": ("Conv", "LeakyRelu"), "method": "minmax"},
    "the same, 8-bit weights (reduce_range off)": {"ops": ("Conv", "LeakyRelu"), "reduce_range": False},
    "the same, 8-bit weights, only the first and last conv float": {"ops": ("Conv", "LeakyRelu"),
                                                                   "reduce_range": False, "float_tail": 0},
}


def image(path: Path) -> np.ndarray:
    return read_uint8_rgb(path).astype(np.float32).transpose(2, 0, 1)[None] / 255


def rain100l(model: OnnxModel, multiple: int) -> float:
    scores = []
    for pair in find_pairs(DATA / "rain100l"):
        x = image(pair.input)
        h, w = x.shape[-2:]
        y = model.run(pad_to_multiple(torch.from_numpy(x), multiple).numpy())[..., :h, :w]
        out = np.rint(np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
        scores.append(psnr_ssim(out, read_uint8_rgb(pair.target), "matlab-y")[0])
    return float(np.mean(scores))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--patches", type=int, default=64)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--only", help="run only the variants whose label contains this text")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or str(default_checkpoint())
    net, name = load_model(None, weights)
    multiple = size_multiple_of(net, get_spec(name).size_multiple)
    patches = calibration_patches(DATA, args.patches, args.size)
    x = pad_to_multiple(torch.from_numpy(image(DATA / "rain100l" / "rainy" / "rain-001.png")), multiple).numpy()
    print(f"{weights}, {args.patches} calibration patches of {args.size}, {args.threads} threads")
    with tempfile.TemporaryDirectory() as folder:
        float_path = Path(folder) / "float32.onnx"
        export_onnx(net, name, float_path, multiple)
        models = {"float32 export (onnxruntime)": OnnxModel(float_path, threads=args.threads)}
        quantised = {}
        for i, (label, options) in enumerate(VARIANTS.items()):
            if args.only and args.only not in label:
                continue
            report = quantize_onnx(float_path, Path(folder) / f"v{i}.onnx", patches, **options)
            models[label] = OnnxModel(report.path, threads=args.threads)
            quantised[label] = report
        times: dict[str, list[float]] = {label: [] for label in models}
        for model in models.values():
            model.run(x)  # warm-up
        for _ in range(args.runs):
            for label, model in models.items():
                start = time.perf_counter()
                model.run(x)
                times[label].append(time.perf_counter() - start)
        print("| variant | int8 convs | Rain100L PSNR | vs float32 | ms (padded 481x321) | speed-up |")
        print("|---|---|---|---|---|---|")
        base_ms = statistics.median(times["float32 export (onnxruntime)"]) * 1000
        base_psnr = None
        for label, model in models.items():
            psnr = rain100l(model, multiple)
            base_psnr = psnr if base_psnr is None else base_psnr
            ms = statistics.median(times[label]) * 1000
            convs = quantised[label].int8_convs if label in quantised else 0
            print(f"| {label} | {convs} | {psnr:.3f} | {psnr - base_psnr:+.3f} | {ms:.1f} | {base_ms / ms:.2f}x |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
