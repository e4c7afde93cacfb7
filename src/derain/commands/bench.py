"""Running a model over benchmark sets and scoring it: the job behind ``derain bench``.

Prints the table a paper would: per-set PSNR/SSIM under a named protocol, the average of the set means,
the parameter count and the seconds per image. Results are scored as the uint8 images they would be
saved as, so ``bench`` and ``run`` followed by ``eval`` give the same numbers.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from derain.commands import inference_options
from derain.commands.evaluate import ImageScore, SetScore, format_table
from derain.data import find_datasets
from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError
from derain.files.imageio import read_image, read_uint8_rgb, write_image
from derain.files.outputs import refuse_existing
from derain.inference.restore import InferenceOptions, prepare_for, resolve_device, restore
from derain.metrics import describe, psnr_ssim
from derain.models import count_parameters, get_spec
from derain.weights.load import load_model
from derain.weights.resolve import resolve_weights


@dataclass
class BenchJob:
    """A model, the benchmark folders to run it on, and how."""

    model: str | None
    weights: str | None
    datasets: list[str]
    protocol: str = "matlab-y"
    device: str = "auto"
    options: InferenceOptions = field(default_factory=InferenceOptions)
    save_dir: Path | None = None  # also write the restored images here, per set
    overwrite: bool = False  # replace restored images already saved there
    limit: int | None = None  # only the first N pairs of each set (quick checks)
    quiet: bool = False


@dataclass
class BenchResult:
    """Scores per set plus what the table reports about the model."""

    model: str
    parameters: int
    sets: list[SetScore]
    seconds_per_image: float
    protocol: str


def run_bench(job: BenchJob) -> BenchResult:
    """Restore every pair of every set in ``job.datasets`` and score it against its target."""
    if job.model is not None:
        get_spec(job.model)  # an unknown model name is the first thing to report, before scanning data
    weights = resolve_weights(job.model, job.weights)
    sets = {}
    for root in job.datasets:
        for name, pairs in find_datasets(Path(root)).items():
            if name in sets:
                raise DerainError(f"two benchmark sets are both named {name!r}; pass them in separate runs")
            sets[name] = pairs[: job.limit] if job.limit else pairs
    if job.save_dir is not None:
        refuse_existing((job.save_dir / name / pair.input.name for name, pairs in sets.items() for pair in pairs),
                        job.overwrite)
    device = resolve_device(job.device)
    model, name = load_model(job.model, weights)
    # Of the network as trained (folding can add biases), frozen parts included.
    parameters = count_parameters(model, trainable_only=False)
    model = prepare_for(model.to(device), job.options, device)
    multiple = get_spec(name).size_multiple

    scores, seconds, count = [], 0.0, 0
    for set_name, pairs in sets.items():
        set_score = SetScore(set_name)
        for pair in tqdm(pairs, desc=set_name, unit="img", disable=job.quiet):
            image = read_image(pair.input)
            x = image_to_tensor(image.pixels)
            start = time.perf_counter()
            y = restore(model, x, multiple, job.options, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            count += 1
            restored = tensor_to_image(y)
            if job.save_dir is not None:
                write_image(job.save_dir / set_name / pair.input.name, restored)
            pred = np.clip(np.rint(restored * 255.0), 0, 255).astype(np.uint8)
            p, s = psnr_ssim(pred, read_uint8_rgb(pair.target), job.protocol)
            set_score.images.append(ImageScore(pair.input.name, psnr=p, ssim=s))
        scores.append(set_score)
    return BenchResult(name, parameters, scores, seconds / max(count, 1), job.protocol)


def bench_table(result: BenchResult) -> str:
    """Paper-style table: one row per set, then the average of set means, params and time."""
    rows = [[s.name, str(len(s.images)), f"{s.mean('psnr'):.2f}", f"{s.mean('ssim'):.4f}"] for s in result.sets]
    if len(result.sets) > 1:
        rows.append(["Average", str(sum(len(s.images) for s in result.sets)),
                     f"{np.mean([s.mean('psnr') for s in result.sets]):.2f}",
                     f"{np.mean([s.mean('ssim') for s in result.sets]):.4f}"])
    table = format_table(["set", "images", "PSNR (dB)", "SSIM"], rows)
    return (f"model: {result.model}  params: {result.parameters / 1e6:.2f}M  "
            f"seconds/image: {result.seconds_per_image:.3f}\n{table}\n"
            f"protocol: {result.protocol}: {describe(result.protocol)}")


def main(args: argparse.Namespace) -> int:
    """``derain bench``: run a model over benchmark sets and print the table."""
    from dataclasses import replace

    target = args.model_or_checkpoint
    is_file = Path(target).is_file() or Path(target).suffix in (".pth", ".pt", ".safetensors", ".ckpt")
    options = inference_options(args)
    if options.working_side == "auto":  # benchmarks score the network at the images' own resolution
        options = replace(options, working_side=None)
    job = BenchJob(model=args.model if is_file else target, weights=target if is_file else args.weights,
                   datasets=args.datasets, protocol=args.protocol, device=args.device, options=options,
                   save_dir=Path(args.save) if args.save else None, overwrite=args.overwrite, limit=args.limit,
                   quiet=args.quiet)
    print(bench_table(run_bench(job)))
    return 0
