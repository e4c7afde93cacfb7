"""Where one model's error differs from another's on a paired set: under the rain or elsewhere, low or high
frequency.

    python scripts/rain_gap.py fastderain-rain100l s1=runs/general_stage1/last.safetensors [--every 4]

For each model (a bundled or registered name, ``default``, or NAME=CHECKPOINT), on every ``--every``-th pair of
``--set`` (default Rain100L), restored whole by the fast path without the working side: the `matlab-y` PSNR and
the mean squared error of the luma split (1) by where the rain falls (``|rainy - clean| > 4`` in Y) and (2) by
frequency (a Gaussian of std 8 px: its low-pass part and the rest). The printed squared errors are means over
pixels of that kind, so a model that removes the streaks less exactly shows it in the ``rain`` column.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import derain
from derain.data.pairs import find_pairs
from derain.files.imageio import read_uint8_rgb


def luma(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr's Y of uint8 RGB, unrounded."""
    x = rgb.astype(np.float64)
    return (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0 + 16.0


def load(spec: str) -> tuple[str, torch.nn.Module]:
    label, _, path = spec.partition("=")
    model, _ = derain.load_model(None, path) if path else derain.load_model(None if spec == "default" else spec)
    return label, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--set", type=Path, default=Path("../shared/data/rain100l"))
    parser.add_argument("--every", type=int, default=4, help="use every N-th pair (default 4)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = find_pairs(args.set)[:: args.every]
    print(f"{len(pairs)} pairs of {args.set}; squared errors of the luma (0-255)")
    print(f"{'model':<24} {'PSNR':>7} {'rain':>8} {'no rain':>8} {'low':>8} {'high':>8}   rain pixels")
    for spec in args.models:
        label, model = load(spec)
        rows = []
        for pair in pairs:
            rainy, clean = read_uint8_rgb(pair.input), read_uint8_rgb(pair.target)
            out = derain.derain(rainy, model, working_side=0)
            error = luma(out) - np.rint(luma(clean))
            rain = np.abs(luma(rainy) - luma(clean)) > 4
            low = gaussian_filter(error, 8)
            mse = np.mean((np.rint(luma(out)) - np.rint(luma(clean))) ** 2)  # what matlab-y scores
            rows.append([10 * np.log10(255.0**2 / mse), np.mean(error[rain] ** 2), np.mean(error[~rain] ** 2),
                         np.mean(low**2), np.mean((error - low) ** 2), rain.mean()])
        m = np.mean(rows, axis=0)
        print(f"{label:<24} {m[0]:7.2f} {m[1]:8.2f} {m[2]:8.2f} {m[3]:8.2f} {m[4]:8.2f}   {m[5]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
