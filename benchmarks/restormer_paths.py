"""Official-size Restormer (26.1M parameters) at 512x512 on the CPU: the reference formulation against the
fast path, in one process on the same input.

    python benchmarks/restormer_paths.py [--size 512] [--runs 3] [--threads 2] [--compile] [--weights PTH]

The reference is the official formulation (``derain.models.restormer`` reproduces the authors' code bit for
bit: per-pixel LayerNorm through permutes, unfused gating, eager float32). Random weights by default (seeded;
the norms' affine parameters are perturbed away from 1/0 so folding them is exercised), or the official
``deraining.pth`` with ``--weights``. Prints median ms, megapixels per second, peak RSS and the largest error
relative to the reference output. Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from derain.weights.load import load_model
from derain.inference.fastpath import choose_fast_path, prepare_model
from derain.inference.hardware import cpu_supports_bf16
from derain.models import build


def _median_ms(forward, x: torch.Tensor, runs: int) -> tuple[float, torch.Tensor]:
    y = forward(x)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        y = forward(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also time the fast path under torch.compile")
    parser.add_argument("--weights", help="official deraining.pth (default: seeded random weights)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.weights:
        model = load_model("restormer", args.weights)[0]
    else:
        model = build("restormer")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.1 * torch.randn_like(p))
    model.eval()
    x = torch.rand(1, 3, args.size, args.size)
    cpu = torch.device("cpu")
    print(f"restormer {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, input {args.size}x"
          f"{args.size}, {torch.get_num_threads()} threads, native bf16: {cpu_supports_bf16()}, torch {torch.__version__}")
    print("| path | ms | MP/s | peak RSS (MB) | max rel. error | speed-up | note |")
    print("|---|---|---|---|---|---|---|")
    paths = [("reference: official formulation, eager fp32", None)]
    paths += [(None, choose_fast_path(model, cpu, p)) for p in ("fp32", "auto")]
    if args.compile:
        paths.append((None, choose_fast_path(model, cpu, "auto", compile=True)))
    reference = ref_ms = None
    for label, path in paths:
        note = ""
        if path is None:
            net = model
        else:
            label = f"fast path: {path.describe()}"
            net = prepare_model(model, path)
            if path.compile:
                start = time.perf_counter()
                with torch.no_grad():
                    net(x)
                note = f"first call (compile) {time.perf_counter() - start:.0f} s"

        def forward(t: torch.Tensor, net=net) -> torch.Tensor:
            with torch.no_grad():
                return net(t).float()

        ms, y = _median_ms(forward, x, args.runs)
        if reference is None:
            reference, ref_ms = y, ms
        error = float((y - reference).abs().max() / reference.abs().max())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {label} | {ms:.0f} | {args.size ** 2 / 1e6 / (ms / 1000):.3f} | {rss:.0f} | {error:.1e} | "
              f"{ref_ms / ms:.2f}x | {note} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
