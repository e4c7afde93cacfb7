"""Time one training step (AdamW, L1) and one inference for model configs.

    python benchmarks/train_step.py [--patch 96] [--batch 8] [--steps 20] \
        --config '{"widths": [32, 64, 128, 256], "unshuffle": 1}' [--config ...] \
        [--memory-format contiguous|channels_last] [--fp32] [--compile] [--fused]

Each ``--config`` is a JSON object of keyword options for ``derain.models.build(--model, **options)``.
Prints parameters, median milliseconds per training step (after warm-up; under bf16 autocast where the CPU has
native bf16, as ``precision: auto`` trains, else float32) and median milliseconds of one inference on a 481x321
image padded to the model's size multiple, in float32 and, where the CPU has native bf16, under bf16 autocast.
``--memory-format`` holds the model and the batch in that layout for the training step (as the config key
``memory_format`` does in ``derain train``); ``--fp32`` times the training step in float32 even where bf16 is native;
``--compile`` times it through ``torch.compile`` (after the compile, which the warm-up steps pay);
``--fused`` uses torch's fused AdamW kernel (the config key ``optim.fused``). The AdamW column is the
optimiser's step alone, part of the training step.
Used to choose the default model's architecture (docs/journal/fastderain.md); run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from derain.inference.hardware import cpu_supports_bf16
from derain.inference.restore import primary_output
from derain.models import build, get_spec
from timing import median_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fastderain")
    parser.add_argument("--config", action="append", default=[], help="JSON keyword options (repeatable)")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous")
    parser.add_argument("--fp32", action="store_true", help="train in float32 even where bf16 is native")
    parser.add_argument("--compile", action="store_true",
                        help="time the training step through torch.compile")
    parser.add_argument("--fused", action="store_true", help="fused AdamW kernel (optim.fused)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = cpu_supports_bf16()
    train_bf16 = bf16 and not args.fp32
    train_precision = "bf16" if train_bf16 else "fp32"
    layout = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    print(f"{args.model}: patch {args.patch}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"native bf16: {bf16}, training {args.memory_format}{', compiled' if args.compile else ''}"
          f"{', fused AdamW' if args.fused else ''}")
    print(f"| options | params | train step {train_precision} (ms) | AdamW (ms) | infer fp32 (ms) | infer bf16 (ms) |")
    print("|---|---|---|---|---|---|")
    for text in args.config or ["{}"]:
        options = json.loads(text)
        torch.manual_seed(0)
        model = build(args.model, **options).to(memory_format=layout)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.fused or None)
        x = torch.rand(args.batch, 3, args.patch, args.patch).contiguous(memory_format=layout)
        y = x * 0.9
        net = torch.compile(model) if args.compile else model

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=train_bf16):
                loss = F.l1_loss(primary_output(net(x)).float(), y)  # multi-output models: full-size output
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        model.train()
        for _ in range(3):
            step()
        train_ms = median_ms(step, args.steps)
        opt_ms = median_ms(opt.step, args.steps)  # the gradients of the last step are still there
        model = model.to(memory_format=torch.contiguous_format).eval()  # inference: as before, contiguous
        multiple = get_spec(args.model).size_multiple
        h, w = (-(-321 // multiple) * multiple, -(-481 // multiple) * multiple)
        image = torch.rand(1, 3, h, w)
        results = []
        for dtype in (None, torch.bfloat16) if bf16 else (None,):
            def infer() -> None:
                with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    model(image)
            infer()
            results.append(median_ms(infer, 5))
        bf16_ms = f"{results[1]:.0f}" if bf16 else "n/a (emulated)"
        print(f"| {text} | {params / 1e6:.2f}M | {train_ms:.0f} | {opt_ms:.1f} | {results[0]:.0f} | {bf16_ms} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
