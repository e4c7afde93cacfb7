"""Does the working side help on large photos? Heavy-val pairs enlarged to phone-photo sizes, with ground truth.

    python scripts/working_side_check.py [--model default] [--scale 4] [--limit 12] [--sides 0 320 480 640 960]

The first ``--limit`` pairs of the heavy-rain validation set (made in memory by derain.data.heavyval, nothing
read from disk but the backgrounds) are enlarged ``--scale`` times (bicubic), rainy and clean alike: the rain
then has the size it has in a photo of that many more pixels. Each working side restores the enlarged rainy
image (0: the network sees it as it is) and is scored against the enlarged clean image (``matlab-y``), with
the seconds it took. A proxy: an enlarged photo lacks the fine detail of a real large one, which the working
side keeps anyway (it only takes away the change the network makes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import derain
from derain.data.heavyval import held_out_backgrounds, make_pair
from derain.files.imageio import read_uint8_rgb
from derain.metrics import psnr_ssim


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, a bundled name, or NAME=CHECKPOINT")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--sides", type=int, nargs="+", default=[0, 320, 480, 640, 960])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backgrounds = held_out_backgrounds(args.data)[: args.limit]
    if not backgrounds:
        print(f"error: no heavy-val backgrounds under {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.model == "default":
        model, name = derain.load_model()
    else:
        label, _, path = args.model.partition("=")
        model, name = derain.load_model(label if not path else None, path or None)
    pairs = []
    for path in backgrounds:
        rainy, clean = make_pair(read_uint8_rgb(path), path.stem, 1)
        pairs.append((enlarge(rainy, args.scale), enlarge(clean, args.scale)))
    h, w = pairs[0][0].shape[:2]
    print(f"{len(pairs)} heavy-val pairs enlarged {args.scale}x (first one {w}x{h}), model {args.model}")
    inputs = np.mean([psnr_ssim(r, c, "matlab-y")[0] for r, c in pairs])
    print(f"{'input':>14s} {inputs:8.2f} dB")
    for side in args.sides:
        start = time.perf_counter()
        scores = [psnr_ssim(derain.derain(r, model, name, working_side=side or None), c, "matlab-y")[0]
                  for r, c in pairs]
        seconds = (time.perf_counter() - start) / len(pairs)
        label = f"side {side}" if side else "whole photo"
        print(f"{label:>14s} {np.mean(scores):8.2f} dB {seconds:7.2f} s/photo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
