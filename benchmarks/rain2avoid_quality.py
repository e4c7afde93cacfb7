"""Rain2Avoid on Rain100L with the paper's protocol: quality against CPU time, for the recipes of ``derain selfsup``.

    python benchmarks/rain2avoid_quality.py [--images 10] [--first 0] [--variant icassp] [--threads 2]
        [--mode per-image|multiple|fused] [--steps 100 300] [--width 32] [--batch 8] [--crop 96] [--lr L]
        [--faithful-steps 0] [--full]

The paper's protocol: the 480x320 top-left crop of each Rain100L pair (rows 0-319, columns 0-479), scored with
``skimage-rgb`` (what the official scripts compute). Per run: the mean seconds of LDGP and of the pseudo
ground truths (wall clock, one image at a time), PSNR/SSIM of the result, and the process CPU seconds per
image of the whole procedure (LDGP + pseudo ground truths + training + inference; the issue's budget is 60 CPU
seconds per image). ``--mode``:

* ``per-image``: a fresh network per crop (``derain selfsup --fast`` and overrides), once per ``--steps``
  value (separate runs: each schedule anneals over its own length);
* ``multiple``: one network trained on all the crops, then run on each (``--mode multiple``); the CPU time
  is the total divided by the number of crops;
* ``fused``: no network, the mean of the pseudo ground truths (a reference point for what training adds).

``--full`` runs on the whole images and scores them with ``matlab-y`` (the toolkit's benchmark protocol) instead.

``--faithful-steps K`` also times K steps of the faithful schedule (whole image, width 64, batch 1, fp32,
5,000 steps in the official recipe) on the first crop and reports K's seconds per step x 5,000.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from derain.data.pairs import find_pairs
from derain.files.imageio import read_uint8_rgb
from derain.metrics import psnr_ssim
from derain.rain2avoid.selfsup import (FAITHFUL_STEPS, Prepared, SelfSupConfig, prepare, resolve, run_network,
                                       train_network)

RAIN100L = Path("../shared/data/rain100l")
CROP_H, CROP_W = 320, 480
PROTOCOL = "skimage-rgb"
FULL_PROTOCOL = "matlab-y"  # the toolkit's benchmark protocol, for --full


def crops(first: int, count: int, full: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rainy, clean) top-left 480x320 crops (``full``: whole images) of Rain100L pairs ``first`` ..."""
    pairs = find_pairs(RAIN100L)[first:first + count]
    rows, cols = (slice(None), slice(None)) if full else (slice(0, CROP_H), slice(0, CROP_W))
    return [(p.input.name, read_uint8_rgb(p.input)[rows, cols], read_uint8_rgb(p.target)[rows, cols])
            for p in pairs]


def scored(pred: torch.Tensor, clean: np.ndarray, protocol: str = PROTOCOL) -> tuple[float, float]:
    """PSNR/SSIM of a 3 x H x W float [0, 1] result, saved as 8 bits, against the clean image."""
    pixels = np.clip(np.rint(pred.permute(1, 2, 0).numpy() * 255.0), 0, 255).astype(np.uint8)
    return psnr_ssim(pixels, clean, protocol)


def prepared_crops(data, variant: str, gen: torch.Generator) -> tuple[list[Prepared], float, float]:
    """Each crop's mask and pseudo ground truths, with the mean LDGP and pseudo-GT seconds."""
    items, ldgp_s, pseudo_s = [], [], []
    for _, rainy, _ in data:
        timings: dict[str, float] = {}
        items.append(prepare(rainy, variant, 50, gen, timings))
        ldgp_s.append(timings["ldgp"])
        pseudo_s.append(timings["pseudo_gt"])
    return items, float(np.mean(ldgp_s)), float(np.mean(pseudo_s))


def report(label: str, scores: list[tuple[float, float]], cpu_per_image: float, wall_per_image: float) -> None:
    psnr = np.mean([s[0] for s in scores])
    ssim = np.mean([s[1] for s in scores])
    print(f"| {label} | {len(scores)} | {psnr:.2f} / {ssim:.3f} | {cpu_per_image:.1f} | {wall_per_image:.1f} |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="index of the first Rain100L pair")
    parser.add_argument("--variant", default="icassp", choices=["icassp", "nlss"])
    parser.add_argument("--mode", default="per-image", choices=["per-image", "multiple", "fused"])
    parser.add_argument("--steps", type=int, nargs="+", default=[300])
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--crop", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                        help="output = input + UNet (default: the fast recipe's choice)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--faithful-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true",
                        help=f"whole images scored with {FULL_PROTOCOL} instead of the paper's crops")
    args = parser.parse_args()
    if not RAIN100L.is_dir():
        raise SystemExit(f"rain2avoid_quality: {RAIN100L} is missing (run from the project root beside ../shared)")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = crops(args.first, args.images, args.full)
    protocol = FULL_PROTOCOL if args.full else PROTOCOL
    inputs = [psnr_ssim(rainy, clean, protocol) for _, rainy, clean in data]

    cpu0, wall0 = time.process_time(), time.perf_counter()
    items, ldgp_s, pseudo_s = prepared_crops(data, args.variant, torch.Generator().manual_seed(3))
    prep_cpu = (time.process_time() - cpu0) / len(data)
    prep_wall = (time.perf_counter() - wall0) / len(data)
    what = "whole images" if args.full else f"crops {CROP_W}x{CROP_H}"
    print(f"{len(data)} {what} of Rain100L from #{args.first}, {args.variant}, {args.threads} "
          f"threads; LDGP {ldgp_s:.2f} s + pseudo GT {pseudo_s:.2f} s per image (wall)\n")
    print(f"| run | images | PSNR / SSIM ({protocol}) | CPU s/image | wall s/image |\n|---|---|---|---|---|")
    report("rainy input", inputs, 0.0, 0.0)
    report("fused pseudo GT (no network)",
           [scored(it.pseudo.fused() / 255.0, c, protocol) for it, (_, _, c) in zip(items, data)],
           prep_cpu, prep_wall)
    if args.mode == "fused":
        return

    for steps in args.steps:
        config = SelfSupConfig(variant=args.variant, mode=args.mode, fast=True, steps=steps, lr=args.lr,
                               width=args.width, batch=args.batch, crop=args.crop, precision=args.precision,
                               residual=args.residual)
        recipe = resolve(config, len(items))
        torch.manual_seed(3)
        gen = torch.Generator().manual_seed(3)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if args.mode == "multiple":
            model = train_network(items, recipe, device, generator=gen)
            results = [run_network(model, it.rainy, recipe, device) for it in items]
        else:
            results = []
            for it in items:
                model = train_network([it], recipe, device, generator=gen)
                results.append(run_network(model, it.rainy, recipe, device))
        cpu = (time.process_time() - cpu0) / len(items) + prep_cpu
        wall = (time.perf_counter() - wall0) / len(items) + prep_wall
        label = (f"{args.mode}, {recipe.steps} steps, width {recipe.width}, batch {recipe.batch} x {recipe.crop}, "
                 f"lr {recipe.lr:g} {recipe.schedule}, {recipe.precision}"
                 + (", residual" if recipe.residual else ""))
        report(label, [scored(r, c, protocol) for r, (_, _, c) in zip(results, data)], cpu, wall)

    if args.faithful_steps:
        recipe = resolve(SelfSupConfig(variant=args.variant, steps=args.faithful_steps))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        train_network(items[:1], recipe, device)
        per_step = (time.perf_counter() - wall0) / args.faithful_steps
        cpu_step = (time.process_time() - cpu0) / args.faithful_steps
        print(f"\nfaithful schedule (whole image, width {recipe.width}, batch 1, {recipe.precision}): "
              f"{per_step:.2f} s/step wall, {cpu_step:.2f} CPU s/step over {args.faithful_steps} steps "
              f"-> {FAITHFUL_STEPS} steps = {per_step * FAITHFUL_STEPS / 60:.0f} min per image (wall)")


if __name__ == "__main__":
    main()
