"""Is the rain of a paired set additive gray light? And does a model's output already obey that?

    python scripts/rain_layer_model.py ../shared/data/rain100l-train ../shared/data/rain100l [--limit N]
    python scripts/rain_layer_model.py ../shared/data/rain100l --check-model [--weights FILE] [--threads 2]

Statistics of rainy - clean per set: the share of pixels where rain darkened a channel (an additive,
brightening layer never does), the share of pixels with no rain at all, and among rain pixels the share whose
three channels rose by the same amount (a gray layer) and the share with a channel clipped at 255.

With ``--check-model`` the default model (or ``--weights``) runs on every pair (reference path, float32) and
its output is scored as it is and after projecting it onto that rain model: clean = rainy - r with one
non-negative r per pixel (the mean of the residual over the unclipped channels), clipped channels only
bounded by the input. A gain would be free at inference; none means the network has learned the prior.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from derain.weights.load import load_model
from derain.data.datasets import load_pairs
from derain.inference.restore import InferenceOptions, restore
from derain.metrics import psnr_ssim
from derain.models import get_spec
from derain.weights.resolve import resolve_weights


def rain_layer_shares(rainy: np.ndarray, clean: np.ndarray) -> tuple[float, float, float, float]:
    """(darkened pixel-channels, rain-free pixels, gray rain pixels, clipped rain pixels) as fractions."""
    diff = rainy.astype(np.int16) - clean.astype(np.int16)
    rain = (diff != 0).any(-1)
    darkened = float((diff < 0).mean())
    if not rain.any():
        return darkened, 1.0, 1.0, 0.0
    inside = diff[rain]
    gray = float((inside.max(-1) == inside.min(-1)).mean())
    clipped = float((rainy[rain] == 255).any(-1).mean())
    return darkened, float(1.0 - rain.mean()), gray, clipped


def project_on_gray_rain(rainy: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """``restored`` (H x W x 3 floats in [0, 1]) made to equal ``rainy`` minus one non-negative gray layer."""
    clipped = rainy >= 1.0
    weight = (~clipped).astype(np.float32)
    residual = ((rainy - restored) * weight).sum(-1, keepdims=True) / np.maximum(weight.sum(-1, keepdims=True), 1)
    return np.where(clipped, np.minimum(restored, rainy), rainy - np.clip(residual, 0.0, None))


def check_model(root: str, weights: str | None, limit: int | None) -> None:
    """Score the model's outputs on ``root`` as they are and projected on the gray additive rain model."""
    model, name = load_model(None, resolve_weights(None, weights))
    options = InferenceOptions(fast=False, precision="fp32", tile=0)
    as_is, projected = [], []
    for _, rainy, clean in load_pairs(root, limit):
        x = torch.from_numpy(rainy.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        y = restore(model, x, get_spec(name).size_multiple, options)[0].permute(1, 2, 0).numpy()
        for scores, out in ((as_is, y), (projected, project_on_gray_rain(x[0].permute(1, 2, 0).numpy(), y))):
            scores.append(psnr_ssim(np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8), clean, "matlab-y"))
    for label, scores in (("as it is", as_is), ("projected on gray additive rain", projected)):
        psnr, ssim = np.mean(scores, axis=0)
        print(f"{root}: {name} {label}: PSNR {psnr:.3f}  SSIM {ssim:.4f}  ({len(scores)} pairs, matlab-y)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs of each set")
    parser.add_argument("--check-model", action="store_true", help="also score a model's outputs projected")
    parser.add_argument("--weights", default=None, help="a self-describing checkpoint (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for root in args.sets:
        shares = np.array([rain_layer_shares(a, b) for _, a, b in load_pairs(root, args.limit)])
        darkened, free, gray, clipped = shares.mean(0)
        print(f"{root}: {len(shares)} pairs; darkened pixel-channels {darkened * 100:.3f}%, rain-free pixels "
              f"{free * 100:.1f}%; of rain pixels: gray {gray * 100:.1f}%, clipped at 255 {clipped * 100:.1f}%")
        if args.check_model:
            check_model(root, args.weights, args.limit)


if __name__ == "__main__":
    main()
