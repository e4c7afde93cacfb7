"""``derain train``: train from a config, or run a recipe of configs."""
from __future__ import annotations

import argparse
import os

from derain.errors import DerainError


def main(args: argparse.Namespace) -> int:
    """``derain train``: train from a config, or run a recipe of configs."""
    from derain.train import train_from_config
    from derain.train.recipe import is_recipe, run_recipe
    if is_recipe(args.config):
        if args.resume or args.overwrite:
            raise DerainError("--resume and --overwrite are for one config; a recipe resumes its unfinished stage "
                              "by itself")
        last, finished = run_recipe(args.config, args.set, time_budget_minutes=args.time_budget,
                                    use_committed=args.use_committed)
        print(f"derain: {'all stages done' if finished else 'stopped'}; weights in {last}")
        return 0
    if args.use_committed:
        raise DerainError("--use-committed is for recipes (a YAML file with a 'recipe:' list of stages)")
    last = train_from_config(args.config, args.set, time_budget_minutes=args.time_budget, resume=args.resume,
                             overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, say it once
        print(f"derain: weights in {last}")
    return 0
