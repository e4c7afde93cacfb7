"""``derain finetune``: FSDerain fine-tuning of a trained model."""
from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    """``derain finetune``: FSDerain fine-tuning of a trained model."""
    from derain.fsderain.finetune import finetune
    last = finetune(args.source, args.data, config_path=args.config, unpaired=args.unpaired, run_dir=args.output,
                    time_budget_minutes=args.time_budget, overrides=args.set, model=args.model,
                    overwrite=args.overwrite)
    print(f"derain: weights in {last} (derain run --weights {last} PHOTOS)")
    return 0
