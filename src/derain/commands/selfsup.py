"""``derain selfsup``: Rain2Avoid self-supervised deraining."""
from __future__ import annotations

import argparse
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    """``derain selfsup``: Rain2Avoid self-supervised deraining."""
    from derain.rain2avoid.selfsup import SelfSupConfig, SelfSupJob, selfsup
    config = SelfSupConfig(variant=args.variant, mode=args.mode, fast=args.fast, steps=args.steps, lr=args.lr,
                           width=args.width, residual=args.residual, batch=args.batch, crop=args.crop,
                           num_pseudo=args.pseudo, seed=args.seed, precision=args.precision, device=args.device)
    job = SelfSupJob(inputs=args.inputs, output_dir=Path(args.output), config=config, overwrite=args.overwrite,
                     save_masks=args.save_masks, save_pseudo=args.save_pseudo, quiet=args.quiet)
    report = selfsup(job)
    print(f"derain: wrote {len(report.written)} image(s) to {job.output_dir}"
          + (f", skipped {len(report.skipped)} existing (use --overwrite to redo them)" if report.skipped else ""))
    return 0
