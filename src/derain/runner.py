"""Deraining files and folders: the job behind ``derain run``.

Reads images, restores them with :func:`derain.infer.restore`, writes them under the output folder with
their own names, bit depth and EXIF (or, for one input, to an output named like an image: ``-o clean.jpg``).
Existing outputs are skipped unless ``overwrite`` is set; an input file is never overwritten. Large folders
can be split between processes with ``shard`` (or automatically under ``torchrun``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from tqdm import tqdm

from derain.checkpoints import load_model
from derain.errors import DerainError
from derain.imageio import IMAGE_SUFFIXES, expand_inputs, read_image, write_image
from derain.infer import (InferenceOptions, count_tiles, describe_choice, prepare_for, resolve_device, resolve_tile,
                          resolve_working_side, restore, set_task)
from derain.models import get_spec
from derain.weights import bundled_checkpoint


@dataclass
class RunJob:
    """Everything ``derain run`` needs to know."""

    inputs: list[str]
    output_dir: Path  # a folder, or one image's output file when it is named like an image (``clean.png``)
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    options: InferenceOptions = field(default_factory=InferenceOptions)
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    suffix: str | None = None  # output format, e.g. ".png"; None keeps each input's own suffix
    quiet: bool = False
    backend: str = "torch"  # or "onnxruntime" (weights: a file written by `derain export --onnx`)
    task: str | None = None  # all-in-one models: auto (the selector decides) or a task name


@dataclass
class RunReport:
    """What a run did, file by file."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise DerainError(f"--shard expects I/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise DerainError(f"--shard {text}: need 0 <= I < N")
    return index, count


def torchrun_shard() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun with several processes, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def shard_files(files: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """The files (or their outputs) this process handles: every n-th one starting at i (sizes stay balanced)."""
    if shard is None:
        return files
    index, count = shard
    return files[index::count]


_SAME_FORMAT = {".jpeg": (".jpg", ".jpeg"), ".tiff": (".tif", ".tiff")}  # --format names of an output's suffix


def names_one_image(output: Path) -> bool:
    """Whether ``-o output`` names one output image (``clean.png``) rather than a folder; an existing folder
    with such a name stays a folder."""
    return output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()


def output_paths(files: list[Path], output_dir: Path, suffix: str | None) -> list[Path]:
    """Output path of each input in ``output_dir``; two inputs that would land on the same output are an error."""
    outputs = [output_dir / (f.stem + suffix if suffix else f.name) for f in files]
    check_outputs(zip(files, outputs))
    return outputs


def run_outputs(files: list[Path], output: Path, suffix: str | None) -> list[Path]:
    """Output paths of ``derain run``: in the folder ``output``, or ``output`` itself when it is named like an
    image, which needs exactly one input (and a ``suffix``, if given, that agrees with its name)."""
    if not names_one_image(output):
        return output_paths(files, output, suffix)
    if len(files) != 1:
        raise DerainError(f"-o {output} names one image file but there are {len(files)} inputs; "
                          "give an output folder instead")
    if suffix and suffix.lower() not in _SAME_FORMAT.get(output.suffix.lower(), (output.suffix.lower(),)):
        raise DerainError(f"--format {suffix.lstrip('.')} disagrees with the output name {output}")
    check_outputs([(files[0], output)])
    return [output]


def check_outputs(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Refuse (input, output) plans where two inputs share an output or an output is its own input."""
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in seen:
            raise DerainError(f"{seen[dst]} and {src} would both be written to {dst}; run them separately")
        if dst.resolve() == src.resolve():
            raise DerainError(f"output {dst} is the input itself; choose another output folder with -o")
        seen[dst] = src


def prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and check it can be written, with one clear line if not."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DerainError(f"cannot create output folder {output_dir}: {exc.strerror}") from None
    if not output_dir.is_dir():
        raise DerainError(f"output path {output_dir} exists and is not a folder")
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise DerainError(f"output folder {output_dir} is not writable")


def resolve_weights(model: str | None, weights: str | None) -> str:
    """The checkpoint to use: the one given, else the bundled default model, else a clear error."""
    if weights is not None:
        return weights
    bundled = bundled_checkpoint(model)
    if bundled is not None:
        return str(bundled)
    what = f"no trained weights for {model!r} are bundled" if model else "no trained default model is bundled yet"
    raise DerainError(f"{what}; pass --weights CHECKPOINT (and --model NAME if the checkpoint does not name "
                      "its network, e.g. --model restormer for the official deraining.pth)")


def load_for_backend(job: RunJob, device: torch.device) -> tuple[torch.nn.Module, str, int]:
    """(network on ``device``, its registry name, its size multiple) for ``job.backend``."""
    if job.backend == "torch":
        model, name = load_model(job.model, resolve_weights(job.model, job.weights))
        return model.to(device), name, get_spec(name).size_multiple
    if job.backend != "onnxruntime":
        raise DerainError(f"unknown backend {job.backend!r}; choose torch or onnxruntime")
    if job.weights is None or Path(job.weights).suffix != ".onnx":
        raise DerainError("--backend onnxruntime needs --weights MODEL.onnx, written by "
                          "`derain export --onnx MODEL.onnx [--weights CHECKPOINT]`")
    if device.type != "cpu":
        raise DerainError("--backend onnxruntime runs on the CPU here; use --device cpu or the torch backend")
    from derain.export import OnnxModel

    model = OnnxModel(job.weights)
    if job.model is not None and job.model != model.name:
        raise DerainError(f"{job.weights} holds model {model.name!r}, not {job.model!r}")
    return model, model.name, model.size_multiple


def restore_file(src: Path, dst: Path, model: torch.nn.Module, multiple: int, options: InferenceOptions,
                 device: torch.device, quiet: bool = True) -> None:
    """Read ``src``, restore it and write ``dst`` with the input's bit depth, EXIF and colour profile; a
    progress bar over the tiles of large photos unless ``quiet``."""
    image = read_image(src)
    x = torch.from_numpy(image.pixels).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    tiles = count_tiles(h, w, options, multiple)
    tile_bar = tqdm(total=tiles, unit="tile", leave=False, disable=quiet or tiles == 1, desc=src.name)
    y = restore(model, x, multiple, options, device, progress=tile_bar.update)
    tile_bar.close()
    write_image(dst, y[0].permute(1, 2, 0).numpy(), bit_depth=image.bit_depth,
                exif=image.exif, icc_profile=image.icc_profile)


def run(job: RunJob) -> RunReport:
    """Restore every input image of ``job``; per-file problems are collected, not fatal, until the end."""
    files = expand_inputs(job.inputs)
    from derain.video.streams import refuse_videos  # by name only: PyAV is not needed to say so
    refuse_videos(files)
    outputs = run_outputs(files, job.output_dir, job.suffix)
    shard = job.shard or torchrun_shard()
    files, outputs = shard_files(files, shard), shard_files(outputs, shard)
    prepare_output_dir(job.output_dir.parent if names_one_image(job.output_dir) else job.output_dir)

    report = RunReport()
    todo = []
    for src, dst in zip(files, outputs):
        if dst.exists() and not job.overwrite:
            report.skipped.append(dst)
        else:
            todo.append((src, dst))
    if not todo:
        return report

    device_name = job.device
    if device_name == "auto" and shard is not None and torch.cuda.is_available():
        device_name = f"cuda:{int(os.environ.get('LOCAL_RANK', shard[0])) % torch.cuda.device_count()}"
    if job.backend == "onnxruntime" and device_name == "auto":
        device_name = "cpu"
    device = resolve_device(device_name)
    model, name, multiple = load_for_backend(job, device)
    model = prepare_for(model, job.options, device)  # once for all images (and compiled once with --compile)
    options = resolve_tile(resolve_working_side(job.options, name), model, multiple, device)
    routed = set_task(model, name, job.task)

    bar = tqdm(total=len(todo), unit="img", disable=job.quiet, desc=f"derain ({name}, {device.type})")
    for src, dst in todo:
        try:
            restore_file(src, dst, model, multiple, options, device, quiet=job.quiet)
            report.written.append(dst)
            if routed is not None and routed.task in (None, "auto"):
                tqdm.write(f"derain: {src.name}: the degradation selector chose {describe_choice(routed)}",
                           file=sys.stderr)
        except DerainError as exc:
            report.failed.append((src, str(exc)))
            tqdm.write(f"derain: error: {exc}", file=sys.stderr)
        bar.update(1)
    bar.close()
    return report
