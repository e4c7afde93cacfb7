"""What each self-ensemble of ``derain.inference.ensembles.ENSEMBLES`` adds to a model's score, in one pass.

    python scripts/ensemble_gain.py ../shared/data/rain100l [--model fastderain] [--weights FILE] [--limit N]

Runs the network once per transform of the dihedral group on every pair (8 forward passes, reference path,
float32), then scores the average of each ensemble's subset under the `matlab-y` protocol: the same numbers
``derain bench --ensemble NAME`` prints, at 8 passes instead of 1 + 2 + 4 + 8.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from derain.weights.load import load_model
from derain.data import find_datasets
from derain.files.imageio import read_image, read_uint8_rgb
from derain.inference.ensembles import ENSEMBLES
from derain.inference.restore import InferenceOptions, restore
from derain.data.dihedral import dihedral_tensor, undo_dihedral_tensor
from derain.metrics import psnr_ssim
from derain.models import get_spec
from derain.weights.resolve import resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--model", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, name = load_model(args.model, resolve_weights(args.model, args.weights))
    multiple = get_spec(name).size_multiple
    options = InferenceOptions(fast=False, precision="fp32", tile=0)
    scores: dict[str, list[tuple[float, float]]] = {key: [] for key in ENSEMBLES}
    for set_name, pairs in find_datasets(args.dataset).items():
        for pair in pairs[: args.limit] if args.limit else pairs:
            x = torch.from_numpy(read_image(pair.input).pixels).permute(2, 0, 1)[None]
            outputs = {k: undo_dihedral_tensor(restore(model, dihedral_tensor(x, k), multiple, options), k)
                       for k in ENSEMBLES["dihedral"]}
            target = read_uint8_rgb(pair.target)
            for key, transforms in ENSEMBLES.items():
                y = torch.stack([outputs[k] for k in transforms]).mean(0)[0].permute(1, 2, 0).numpy()
                pred = np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)
                scores[key].append(psnr_ssim(pred, target, "matlab-y"))
        print(f"{set_name}: {len(scores['none'])} pairs, {name}")
    for key, values in scores.items():
        mean = np.mean(values, axis=0)
        print(f"  ensemble {key:9s} x{len(ENSEMBLES[key])}: PSNR {mean[0]:.2f}  SSIM {mean[1]:.4f}")


if __name__ == "__main__":
    main()
