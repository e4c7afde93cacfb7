"""Throughput of one dense 3x3 convolution at the shapes of the default model, per precision.

    python benchmarks/conv_throughput.py [--threads 2] [--runs 20]

For each (channels, height, width) of FastDerain's levels on a 481x321 image (padded to 496x336): the time of
one forward convolution (channels in = channels out, batch 1, channels-last) in float32, in bf16 (weights and
input in bf16, what the default fast path runs on CPUs with native bf16) and in int8 (``torch.ao`` quantized
convolution on the ``x86`` engine, per-tensor input scale), with the multiply-accumulates per second. It tells
where inference time goes and what an int8 path could gain; int8 accuracy is not measured here. torch marks its
quantized tensors as deprecated, so the int8 rows are a measurement, not a path the package offers.
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import torch

SHAPES = ((32, 336, 496), (48, 168, 248), (96, 84, 124), (192, 42, 62))


def timed_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, runs: int) -> float:
    """Median milliseconds of ``fn(x)`` over ``runs`` calls after 3 warm-up calls."""
    times = []
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        for _ in range(runs):
            start = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - start) * 1000.0)
    return sorted(times)[len(times) // 2]


def int8_conv(channels: int) -> torch.nn.Module | None:
    """A quantized 3x3 convolution on the x86 engine, or None where this torch build has no such engine."""
    if "x86" not in torch.backends.quantized.supported_engines:
        return None
    torch.backends.quantized.engine = "x86"
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d
    return QuantizedConv2d(channels, channels, 3, padding=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*quantize.*deprecated.*")
    print(f"torch {torch.__version__}, {args.threads} threads; median of {args.runs} runs")
    print("| channels | size | float32 | bf16 | int8 (x86) |")
    print("|---|---|---|---|---|")
    for channels, height, width in SHAPES:
        gmac = channels * channels * 9 * height * width / 1e9
        x = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)
        cells = []
        for dtype in (torch.float32, torch.bfloat16):
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype, memory_format=torch.channels_last)
            ms = timed_ms(conv, x.to(dtype), args.runs)
            cells.append(f"{ms:.1f} ms ({gmac / ms * 1000:.0f} GMAC/s)")
        quantized = int8_conv(channels)
        if quantized is None:
            cells.append("no x86 engine")
        else:
            xq = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
            ms = timed_ms(quantized, xq, args.runs)
            cells.append(f"{ms:.1f} ms ({gmac / ms * 1000:.0f} GMAC/s)")
        print(f"| {channels} | {width}x{height} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
