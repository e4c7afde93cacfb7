"""The CPU inference paths of one model, measured side by side in one process on the same inputs.

    python benchmarks/cpu_paths.py [--weights CKPT] [--model NAME] [--runs 10] [--threads 2] [--psnr]

Paths: eager float32 (the reference), eager bf16 autocast (only where the CPU has native bf16; elsewhere it
is emulated and many times slower), the fast path of ``derain.fastpath`` in float32 without folding (what
folding alone gives) and with it, in its automatic precision, the same with ``torch.compile`` (its one-off
compile time is reported too) and onnxruntime (when the ``onnx`` extra is installed; the export is checked
against PyTorch). It prints the network's convolution GMAC per forward, then for each path the
median milliseconds on a 481x321 Rain100L image (padded to the model's size multiple), megapixels per second,
the process's peak RSS so far, the largest error relative to the float32 output, and with ``--psnr``
Rain100L ``matlab-y`` PSNR over all 100 images through the same path. Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from derain.checkpoints import load_model
from derain.data.pairs import find_pairs
from derain.fastpath import choose_fast_path, prepare_model
from derain.imageio import read_uint8_rgb
from derain.infer import pad_to_multiple, primary_output
from derain.metrics import psnr_ssim
from derain.models import get_spec
from derain.hardware import cpu_supports_bf16
from derain.weights import default_checkpoint
from timing import median_ms

RAIN100L = Path("../shared/data/rain100l")
Forward = Callable[[torch.Tensor], torch.Tensor]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def conv_gmac(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of every ``Conv2d`` in one forward of ``x``, in billions (what bounds a CPU)."""
    total = 0

    def count(conv: torch.nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        k_h, k_w = conv.kernel_size
        total += output.numel() * (conv.in_channels // conv.groups) * k_h * k_w

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total / 1e9


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_uint8_rgb(path).copy()).permute(2, 0, 1)[None].float() / 255


def _psnr(forward: Forward, multiple: int) -> float:
    scores = []
    for pair in find_pairs(RAIN100L):
        x = _image(pair.input)
        h, w = x.shape[-2:]
        y = forward(pad_to_multiple(x, multiple))[..., :h, :w].clamp(0, 1)
        out = np.rint(y[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        scores.append(psnr_ssim(out, read_uint8_rgb(pair.target), "matlab-y")[0])
    return float(np.mean(scores))


def build_paths(model: torch.nn.Module, name: str, weights: str, multiple: int, workdir: Path,
                probe: torch.Tensor) -> dict[str, tuple[Forward, str]]:
    """name -> (forward on padded inputs, note); the reference comes first."""
    cpu = torch.device("cpu")
    paths: dict[str, tuple[Forward, str]] = {}

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return primary_output(model(x)).float()

    paths["eager fp32 (reference)"] = (eager, "")
    if cpu_supports_bf16():
        def bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return primary_output(model(x)).float()

        paths["eager bf16 autocast"] = (bf16, "")
    unfolded = dataclasses.replace(choose_fast_path(model, cpu, "fp32"), fold=False)  # what folding adds
    paths[f"fast path, fp32: {unfolded.describe()}"] = (_prepared(prepare_model(model, unfolded)), "")
    for precision in ("fp32", "auto"):
        path = choose_fast_path(model, cpu, precision)
        paths[f"fast path, {precision}: {path.describe()}"] = (_prepared(prepare_model(model, path)), "")
    path = choose_fast_path(model, cpu, "auto", compile=True)
    compiled = _prepared(prepare_model(model, path))
    start = time.perf_counter()
    compiled(probe)  # compiles for this input size
    compile_s = time.perf_counter() - start
    paths[f"fast path, auto: {path.describe()}"] = (compiled, f"compile {compile_s:.0f} s per input size")
    try:
        from derain.export import OnnxModel, export_onnx
        report = export_onnx(load_model(name, weights)[0], name, workdir / "m.onnx", multiple)
        ort_model = OnnxModel(report.path, threads=torch.get_num_threads())
        paths["onnxruntime fp32"] = (ort_model, f"export {report.seconds:.0f} s")
    except Exception as exc:  # the extra is optional: say why the row is missing
        print(f"note: no onnxruntime row ({type(exc).__name__}: {exc})")
    return paths


def _prepared(prepared: torch.nn.Module) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return primary_output(prepared(x))

    return forward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="network name (for checkpoints that do not name it)")
    parser.add_argument("--weights", help="checkpoint (default: the bundled model)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--psnr", action="store_true", help="also score all 100 Rain100L images per path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or str(default_checkpoint())
    model, name = load_model(args.model, weights)
    multiple = get_spec(name).size_multiple
    x = pad_to_multiple(_image(RAIN100L / "rainy" / "rain-001.png"), multiple)
    print(f"{name} ({weights}), input {tuple(x.shape[-2:])}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, native bf16: {cpu_supports_bf16()}, torch {torch.__version__}")
    print(f"convolutions: {conv_gmac(model, x):.2f} GMAC per forward (unfolded network; folding changes no 3x3 count)")
    print("| path | ms | MP/s | peak RSS (MB) | max rel. error | Rain100L PSNR | note |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        paths = build_paths(model, name, weights, multiple, workdir, x)
        reference = None
        for label, (forward, note) in paths.items():
            ms = median_ms(lambda: forward(x), args.runs, warmup=1)  # oneDNN caches, compiled graphs
            y = forward(x)
            reference = y if reference is None else reference
            error = float((y - reference).abs().max() / reference.abs().max())
            psnr = f"{_psnr(forward, multiple):.3f}" if args.psnr else ""
            megapixels = x.shape[-2] * x.shape[-1] / 1e6
            print(f"| {label} | {ms:.0f} | {megapixels / (ms / 1000):.2f} | {_peak_rss_mb():.0f} | {error:.1e} | "
                  f"{psnr} | {note} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
