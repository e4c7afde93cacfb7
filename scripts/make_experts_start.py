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
from derain.files.checkpoints import read_checkpoint, save_checkpoint
from derain.models.registry import build, get_spec
from derain.weights.load import load_model

NAME = "fastderain-experts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("light", type=Path)
    parser.add_argument("general", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="seed of the gate's initial weights")
    args = parser.parse_args()
    try:
        light, _ = load_model(None, args.light)
        general, _ = load_model(None, args.general)
    except DerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = {**get_spec(NAME).default_config, "light": read_checkpoint(args.light)["config"],
              "general": read_checkpoint(args.general)["config"]}
    torch.manual_seed(args.seed)
    net = build(NAME, **config)
    state = net.composed_state_dict(light.state_dict(), general.state_dict(), net.gate.state_dict())
    net.load_state_dict(state)
    save_checkpoint(args.out, net, NAME, config)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
