"""Where a model's remaining error lies on a paired set, and two things that cost no training.

    python scripts/error_breakdown.py ../shared/data/rain100l [--weights FILE] [--limit N] [--threads 2]
    python scripts/error_breakdown.py ../shared/data/rain100l --twice
    python scripts/error_breakdown.py ../shared/data/rain100l --average-weights A.safetensors B.safetensors

Runs the model on the default fast path and splits the squared error of the luma the `matlab-y` protocol
scores (4-pixel border left out) by what the rain did to each pixel: clipped at 255 in some channel (the
background is lost there), strong rain (a rise of 30 or more, unclipped), weak rain, and no rain. The shares add
up to the mean squared error. The five worst images are listed.

``--twice`` also scores the model applied to its own output and the mean of one and two passes.
``--average-weights`` scores the average of several checkpoints of the same network (a "model soup") in place
of ``--weights``.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from safetensors.torch import load_file

from derain.weights.load import load_model
from derain.data.datasets import load_pairs
from derain.inference.restore import InferenceOptions, restore
from derain.metrics import psnr_ssim
from derain.metrics.fullref import rgb_to_y_matlab
from derain.models import get_spec
from derain.weights.resolve import resolve_weights
from derain.train.loop import to_uint8

CLASSES = ("clipped rain", "strong rain (>= 30)", "weak rain", "no rain")


def pixel_classes(rainy: np.ndarray, clean: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of :data:`CLASSES` for one uint8 pair (H x W x 3)."""
    rise = rainy.astype(np.int16) - clean.astype(np.int16)
    rain = (rise != 0).any(-1)
    clipped = rain & (rainy == 255).any(-1)
    strong = rain & ~clipped & (rise.max(-1) >= 30)
    return [clipped, strong, rain & ~clipped & ~strong, ~rain]


def averaged_model(paths: list[str]) -> tuple[torch.nn.Module, str]:
    """The network of ``paths[0]`` holding the mean of all the checkpoints' tensors."""
    model, name = load_model(None, paths[0])
    states = [load_file(p) for p in paths]
    model.load_state_dict({k: sum(s[k].float() for s in states) / len(states) for k in states[0]})
    return model, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--weights", default=None, help="a self-describing checkpoint (default: the bundled model)")
    parser.add_argument("--average-weights", nargs="+", default=None, metavar="FILE")
    parser.add_argument("--twice", action="store_true")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.average_weights:
        model, name = averaged_model(args.average_weights)
    else:
        model, name = load_model(None, resolve_weights(None, args.weights))
    multiple = get_spec(name).size_multiple
    options = InferenceOptions(fast=True, precision="auto", tile=0)
    shares, scores, worst = np.zeros(len(CLASSES)), {"one pass": [], "twice": [], "mean of 1 and 2": []}, []
    pairs = list(load_pairs(args.dataset, args.limit))
    for pair_name, rainy, clean in pairs:
        x = torch.from_numpy(rainy.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        once = restore(model, x, multiple, options)
        out = to_uint8(once)
        scores["one pass"].append(psnr_ssim(out, clean, "matlab-y"))
        worst.append((scores["one pass"][-1][0], str(pair_name)))
        err = (rgb_to_y_matlab(out).astype(np.float64) - rgb_to_y_matlab(clean).astype(np.float64)) ** 2
        inner = (slice(4, -4), slice(4, -4))
        shares += [err[inner][mask[inner]].sum() / err[inner].size for mask in pixel_classes(rainy, clean)]
        if args.twice:
            again = restore(model, once.clamp(0, 1), multiple, options)
            scores["twice"].append(psnr_ssim(to_uint8(again), clean, "matlab-y"))
            scores["mean of 1 and 2"].append(psnr_ssim(to_uint8((once + again) / 2), clean, "matlab-y"))
    shares /= len(pairs)
    for label, values in scores.items():
        if values:
            psnr, ssim = np.mean(values, axis=0)
            print(f"{label}: PSNR {psnr:.3f}  SSIM {ssim:.4f}  ({len(values)} pairs, matlab-y, fast path)")
    print(f"luma squared error {shares.sum():.2f} (uint8 scale), shares by pixel class:")
    for label, share in zip(CLASSES, shares):
        print(f"  {label:22s} {share:6.2f}  ({share / shares.sum() * 100:.0f}%)")
    print("worst images: " + ", ".join(f"{n} {p:.2f}" for p, n in sorted(worst)[:5]))


if __name__ == "__main__":
    main()
