"""Write the start of the rain experts' gate stage: two trained FastDerain experts and an untrained gate.

    python scripts/make_experts_start.py LIGHT GENERAL OUT
    python scripts/make_experts_start.py src/derain/weights/rain100l.safetensors \
        runs/general_stage2/last.safetensors runs/experts_start.safetensors

LIGHT is the light-rain expert (the Rain100L specialist), GENERAL the general one (the last stage of
configs/general_*); OUT is a checkpoint of ``fastderain-experts`` whose configuration names both experts'
own, so configs/default_experts.yaml warm-starts from it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from derain.errors import DerainError
from derain.files.checkpoints import extract_state_dict, read_checkpoint, save_checkpoint
from derain.models.registry import build, get_spec

NAME = "fastderain-experts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("light", type=Path)
    parser.add_argument("general", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="seed of the gate's initial weights")
    args = parser.parse_args()
    try:  # each file read once: its configuration and its weights
        light, general = read_checkpoint(args.light), read_checkpoint(args.general)
    except DerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = {**get_spec(NAME).default_config, "light": light["config"], "general": general["config"]}
    torch.manual_seed(args.seed)
    net = build(NAME, **config)
    # RainExperts.load_state_dict takes each expert in its training or folded form, as FastDerain does.
    net.load_state_dict(net.composed_state_dict(extract_state_dict(light), extract_state_dict(general),
                                                net.gate.state_dict()))
    save_checkpoint(args.out, net, NAME, config)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
