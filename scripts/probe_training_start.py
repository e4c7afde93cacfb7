"""Watch the first steps of a training run: does the network leave "output = input", and which layer dies?

    python scripts/probe_training_start.py CONFIG [--steps 300] [--every 50] [--set key=value ...]
        [--watch rnn5 --watch rnn_recon.] [--weight rnn7.conv.weight] [--prelu-init 0.25]

Builds the trainer of CONFIG (with ``--set`` overrides; no validation set, runs under /tmp) and trains it for
``--steps`` steps. Every ``--every`` steps, on one fixed batch of 16 patches, it prints the L1 to the target
next to the L1 of the identity (the rainy input), the mean |output - input|, and for each PReLU/ReLU module
whose name contains a ``--watch`` string the fraction of its inputs that are positive (0 = a closed path) and
the mean |slope|. ``--weight`` adds the mean |value| of one parameter (e.g. the last conv's). ``--prelu-init``
sets every PReLU slope before the first step. This is how the MSPFN-small failure in docs/journal/methods.md
("Equal-cost comparison") was diagnosed.
"""
from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from derain.train.config import load_config
from derain.inference.precision import autocast_context
from derain.train.loop import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--watch", action="append", default=[], help="substring of activation module names")
    parser.add_argument("--weight", help="a parameter name whose mean |value| to print")
    parser.add_argument("--prelu-init", type=float)
    args = parser.parse_args()

    config = load_config(args.config, ["data.val=null", "out_dir=/tmp/probe_training_start", *args.overrides])
    trainer = Trainer(config)
    model = trainer.model
    if args.prelu_init is not None:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.PReLU):
                    module.weight.fill_(args.prelu_init)
    params = dict(model.named_parameters())
    if args.weight and args.weight not in params:
        raise SystemExit(f"probe_training_start: no parameter {args.weight!r} in {config.model.name}")

    torch.manual_seed(123)
    x, y = trainer.batches.sample(16, config.data.patch)[:2]
    stats: dict[str, tuple[float, float]] = {}

    def recorder(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            slope = float(module.weight.abs().mean()) if isinstance(module, nn.PReLU) else 0.0
            stats[name] = (float((inputs[0] > 0).float().mean()), slope)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.PReLU, nn.ReLU)) and any(w in name for w in args.watch):
            module.register_forward_hook(recorder(name))

    identity = float((x - y).abs().mean())

    def report(loss: float) -> None:
        with torch.no_grad(), autocast_context(trainer.device, trainer.dtype):
            out = model(x)
        out = (out[0] if isinstance(out, (list, tuple)) else out).float()
        line = (f"step {trainer.step:5d}  batch loss {loss:.4f}  fixed-batch L1 {float((out - y).abs().mean()):.4f} "
                f"(identity {identity:.4f})  |out - in| {float((out - x).abs().mean()):.4f}")
        if args.weight:
            line += f"  |{args.weight}| {float(params[args.weight].abs().mean()):.2e}"
        for name, (positive, slope) in stats.items():
            line += f"  {name}: {positive:.2f} positive, slope {slope:.1e}"
        print(line, flush=True)

    report(math.nan)
    for _ in range(args.steps):
        loss, _, _ = trainer.train_step()
        if trainer.step % args.every == 0:
            report(loss)
    trainer.close()


if __name__ == "__main__":
    main()
