"""Official-size Restormer on a GPU: the reference formulation against the fast path, inference and training.

    python benchmarks/gpu_paths.py [--size 1024] [--runs 10] [--train-steps 500] [--weights deraining.pth]
    python benchmarks/gpu_paths.py --device cpu --size 64 --runs 1 --train-steps 3 --train-patch 32  # smoke run

Inference on one ``--size`` square image: the official formulation in float32 (TF32 off, the reference), with
TF32, under bf16 and fp16 autocast; then the fast path of ``derain.inference.fastpath`` (folded norms, channels-last,
bf16 autocast) eager and under ``torch.compile`` (CUDA graphs). Prints median ms, megapixels per second, peak
GPU memory and the largest error relative to the float32 output.

Training: ``--train-steps`` Adam steps on batches of 8 random crops of ``--train-patch`` from the same seeded
data, reference (TF32) against the fast training path (bf16 autocast, channels-last), each from the same
initial weights; prints ms per step, peak memory and the mean L1 loss of the first and last 10% of steps, so
the two loss curves can be compared. Random weights unless ``--weights`` (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from derain.weights.load import load_model
from derain.inference.fastpath import FastPath, prepare_model
from derain.models import build


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1024 ** 3 if device.type == "cuda" else float("nan")


def _timed(fn, runs: int, device: torch.device) -> tuple[float, object]:
    out = fn()
    _sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def _inference(model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> None:
    x = torch.rand(1, 3, args.size, args.size, device=device)
    print(f"\ninference, {args.size}x{args.size}")
    print("| path | ms | MP/s | peak memory (GiB) | max rel. error |")
    print("|---|---|---|---|---|")
    reference = None
    rows = [("official formulation, fp32 (reference)", model, None, False),
            ("official formulation, TF32", model, None, True),
            ("official formulation, bf16 autocast", model, torch.bfloat16, False),
            ("official formulation, fp16 autocast", model, torch.float16, False)]
    for compiled in (False, True):
        path = FastPath(fold=True, channels_last=True, autocast=torch.bfloat16, compile=compiled)
        rows.append((f"fast path: {path.describe()}", prepare_model(model, path, device), None, False))
    for label, net, dtype, tf32 in rows:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        _reset_peak(device)

        def forward(net=net, dtype=dtype) -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return net(x).float()

        ms, y = _timed(forward, args.runs, device)
        reference = y if reference is None else reference
        error = float((y - reference).abs().max() / reference.abs().max())
        print(f"| {label} | {ms:.1f} | {args.size ** 2 / 1e6 / (ms / 1000):.2f} | {_peak_gib(device):.2f} | "
              f"{error:.1e} |", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def _training(model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> None:
    print(f"\ntraining, batch 8 of {args.train_patch}x{args.train_patch}, {args.train_steps} Adam steps")
    print("| path | ms/step | peak memory (GiB) | mean loss, first 10% | mean loss, last 10% |")
    print("|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(args.train_steps, 8, 3, args.train_patch, args.train_patch, generator=generator)
    rainy = (clean + 0.3 * (torch.rand(clean.shape, generator=generator) > 0.97)).clamp(0, 1)
    for label, dtype, channels_last, tf32 in (("reference (TF32)", None, False, True),
                                               ("fast: bf16 autocast + channels-last", torch.bfloat16, True, False)):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        net = copy.deepcopy(model).train()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), lr=2e-4)
        losses, times = [], []
        _reset_peak(device)
        for i in range(args.train_steps):
            x, y = rainy[i].to(device), clean[i].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            _sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.l1_loss(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
            times.append((time.perf_counter() - start) * 1000)
            losses.append(loss.item())
        tenth = max(1, len(losses) // 10)
        print(f"| {label} | {statistics.median(times[1:] or times):.1f} | {_peak_gib(device):.2f} | "
              f"{statistics.mean(losses[:tenth]):.4f} | {statistics.mean(losses[-tenth:]):.4f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--train-patch", type=int, default=128)
    parser.add_argument("--weights", help="official deraining.pth (default: seeded random weights)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; use --device cpu for a smoke run")
    torch.manual_seed(0)
    model = load_model("restormer", args.weights)[0] if args.weights else build("restormer")
    model = model.to(device).eval()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"restormer {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters on {name}, "
          f"torch {torch.__version__}")
    _inference(model, args, device)
    if args.train_steps:
        _training(model, args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
