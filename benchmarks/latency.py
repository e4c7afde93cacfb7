"""CPU latency of one Rain100L-size image (481x321) through the Python API, per inference path.

    python benchmarks/latency.py [--weights CKPT] [--model NAME] [--runs 20] [--threads N] [--ensemble NAME]

Uses the bundled default model unless ``--weights`` is given. Calls ``derain.derain`` exactly as a user would
(numpy image in, numpy image out: padding, precision and cropping included), after two warm-up calls, and
prints the median and best of ``--runs`` calls, taken round-robin across the paths, for the reference path,
the fast path in float32 and in its automatic precision (preparing the model on every call, as
``derain.derain`` does by default, and prepared once with ``derain.prepare``). ``--ensemble`` adds a self-ensemble (``hflip``, ``flips``, ``dihedral``) to
every path.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import derain
from derain.inference.hardware import cpu_model_name
from derain.files.imageio import read_image
from derain.inference.ensembles import ENSEMBLES

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "data" / "rain100l" / "rainy" / "rain-001.png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights")
    parser.add_argument("--model")
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--ensemble", default="none", choices=tuple(ENSEMBLES))
    args = parser.parse_args()
    if not args.image.is_file():
        sys.exit(f"benchmark needs {args.image} (../shared/data/rain100l beside the project); pass --image")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, name = derain.load_model(args.model, args.weights)
    pixels = read_image(args.image).pixels
    h, w = pixels.shape[:2]
    print(f"model {name}, image {args.image.name} {w}x{h}, {cpu_model_name()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, ensemble {args.ensemble}")
    paths = [("reference path, fp32 (--no-fast)", model, dict(fast=False, precision="fp32")),
             ("fast path, fp32", model, dict(precision="fp32")),
             ("fast path, auto precision (the default)", model, {}),
             ("fast path, auto, prepared once (derain.prepare)", derain.prepare(model), {})]
    paths = [(label, net, dict(options, ensemble=args.ensemble)) for label, net, options in paths]
    for _, net, options in paths:
        for _ in range(2):
            derain.derain(pixels, net, name, **options)
    # Round-robin over the paths: a CPU whose speed drifts (shared hosts do, by up to 1.5x within minutes)
    # then slows every path alike instead of whichever happened to run during the slow minutes.
    times: dict[str, list[float]] = {label: [] for label, _, _ in paths}
    for _ in range(args.runs):
        for label, net, options in paths:
            start = time.perf_counter()
            out = derain.derain(pixels, net, name, **options)
            times[label].append(time.perf_counter() - start)
            assert out.shape == pixels.shape and np.isfinite(out).all()
    for label, measured in times.items():
        print(f"{label}: median {statistics.median(measured) * 1000:.1f} ms, best {min(measured) * 1000:.1f} ms "
              f"({args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
