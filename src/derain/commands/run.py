"""Deraining files and folders: the job behind ``derain run``.

Reads images, restores them with :func:`derain.inference.restore.restore`, writes them under the output folder with
their own names (with ``recursive``, mirroring the input folder's tree), bit depth, alpha, EXIF and JPEG
encoding (or, for one input, to an output named like an image: ``-o clean.jpg``, or to stdout: ``-o -``).
Every output records which model and weights made it. The model and weights are checked before anything
else; then an existing output is skipped when the same model and weights made it (or when derain did not
make it: it is the user's file), and made again when other ones did, unless ``keep_existing``;
``overwrite`` redoes everything. An input file is never overwritten. Large folders can be split between
processes with ``shard`` (or automatically under ``torchrun``).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from tqdm import tqdm

from derain.commands import BACKENDS, inference_options
from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError
from derain.files.checkpoints import file_fingerprint
from derain.files.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    IMAGE_SUFFIXES,
    Encoding,
    encode_image,
    expand_input_tree,
    frame_count,
    read_image,
    read_provenance,
    write_image,
)
from derain.files.outputs import STDIO, names_one_image, prepare_output_dir, run_outputs, shard_files, torchrun_shard
from derain.inference.model_choice import default_model_for
from derain.inference.restore import (
    InferenceOptions,
    count_tiles,
    describe_choice,
    prepare_for,
    resolve_device,
    resolve_tile,
    resolve_working_side,
    restore,
    set_task,
    size_multiple_of,
)
from derain.models import get_spec
from derain.weights.load import load_model
from derain.weights.resolve import resolve_weights

if TYPE_CHECKING:  # imported where used: onnxruntime is optional
    from derain.inference.onnx import OnnxModel


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
    recursive: bool = False  # folders: their sub-folders too, mirrored under the output folder
    name_suffix: str = ""  # added to each output's name before its extension: photo.jpg -> photo_derained.jpg
    keep_existing: bool = False  # keep outputs that other models or weights made (default: make them again)
    encoding: Encoding = field(default_factory=Encoding)  # JPEG/WebP quality and subsampling
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None  # CPU threads for the network (None: torch's default)
    on_result: Callable[["FileResult"], None] | None = None  # called once per file, as it is done


@dataclass
class FileResult:
    """What happened to one input: ``written``, ``remade`` (an output of other weights replaced), ``skipped``
    or ``failed`` (with ``error``)."""

    input: Path
    output: Path
    model: str
    status: str
    seconds: float = 0.0
    error: str | None = None

    def json_line(self) -> str:
        """The result as one line of JSON (``derain run --json``)."""
        record = {"input": str(self.input), "output": str(self.output), "model": self.model,
                  "seconds": round(self.seconds, 3), "status": self.status}
        if self.error:
            record["error"] = self.error
        return json.dumps(record)


@dataclass
class RunReport:
    """What a run did, file by file."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    remade: list[Path] = field(default_factory=list)  # also in ``written``: outputs other weights had made


def load_for_backend(job: RunJob, device: torch.device) -> tuple[torch.nn.Module, str, int]:
    """(network on ``device``, its registry name, its size multiple) for ``job.backend``."""
    if job.backend == "torch":
        int8 = _int8_model(job, device)
        if int8 is not None:
            return int8, int8.name, int8.size_multiple
        model, name = load_model(job.model, resolve_weights(job.model, job.weights))
        return model.to(device), name, size_multiple_of(model, get_spec(name).size_multiple)
    if job.backend != "onnxruntime":
        raise DerainError(f"unknown backend {job.backend!r}; choose {' or '.join(BACKENDS)}")
    if job.weights is None or Path(job.weights).suffix != ".onnx":
        raise DerainError("--backend onnxruntime needs --weights MODEL.onnx, written by "
                          "`derain export --onnx MODEL.onnx [--weights CHECKPOINT]`")
    if device.type != "cpu":
        raise DerainError("--backend onnxruntime runs on the CPU here; use --device cpu or the torch backend")
    from derain.inference.onnx import OnnxModel

    model = OnnxModel(job.weights)
    if job.model is not None and job.model != model.name:
        raise DerainError(f"{job.weights} holds model {model.name!r}, not {job.model!r}")
    return model, model.name, model.size_multiple


def _int8_model(job: RunJob, device: torch.device) -> OnnxModel | None:
    """The int8 onnxruntime model where ``--precision int8`` asks for it or the CPU rule picks it
    (:func:`derain.inference.quantize.int8_model_for_run`), said once on stderr; else None."""
    if job.options.precision == "int8" and device.type != "cpu":
        raise DerainError("--precision int8 runs on the CPU (onnxruntime); use --device cpu")
    if device.type != "cpu":
        return None
    from derain.inference.onnx import OnnxModel
    from derain.inference.quantize import int8_model_for_run

    path = int8_model_for_run(job.options.precision, job.options.fast, job.model, job.weights)
    if path is None:
        return None
    model = OnnxModel(path, threads=job.threads)
    if job.model is not None and job.model != model.name:
        raise DerainError(f"{path} holds model {model.name!r}, not {job.model!r}")
    if not job.quiet:
        print(f"derain: int8 inference (onnxruntime) with {path}; --precision fp32 for the float model",
              file=sys.stderr)
    return model


def _stdout_suffix(src: Path, data: bytes | None, suffix: str | None) -> str:
    """The format of what goes to stdout: ``--format`` if given, else the input's own (PNG where the input's
    format cannot be written or told)."""
    if suffix:
        return suffix
    if data is None:
        return src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".png"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format
    except (UnidentifiedImageError, OSError):
        return ".png"
    by_format = {name: ext for ext, name in reversed(list(FORMATS.items()))}  # JPEG -> .jpg, TIFF -> .tif
    return by_format.get(found or "", ".png")


def restore_file(src: Path | bytes, dst: Path, model: torch.nn.Module, multiple: int, options: InferenceOptions,
                 device: torch.device, quiet: bool = True, encoding: Encoding = Encoding(),
                 max_pixels: int = DEFAULT_MAX_PIXELS, fmt: str | None = None) -> list[str]:
    """Read ``src`` (a file or its bytes), restore it and write ``dst`` (``-``: stdout, in format ``fmt``) with
    the input's bit depth, alpha, EXIF, colour profile and JPEG encoding; a progress bar over the tiles of
    large photos unless ``quiet``. Returns notes for the user (e.g. transparency the output format drops)."""
    image = read_image(src, max_pixels)
    x = image_to_tensor(image.pixels)
    h, w = x.shape[-2:]
    tiles = count_tiles(h, w, options, multiple)
    tile_bar = tqdm(total=tiles, unit="tile", leave=False, disable=quiet or tiles == 1,
                    desc=getattr(src, "name", "stdin"))
    y = restore(model, x, multiple, options, device, progress=tile_bar.update)
    tile_bar.close()
    pixels = tensor_to_image(y)
    out_format = fmt or dst.suffix.lower()
    notes = []
    if image.alpha is not None and out_format not in (".png", ".webp", ".tif", ".tiff"):
        notes.append(f"transparency dropped: {out_format.lstrip('.').upper()} has no alpha channel "
                     "(use --format png to keep it)")
    meta: dict[str, Any] = dict(bit_depth=image.bit_depth, exif=image.exif, icc_profile=image.icc_profile,
                                alpha=image.alpha, encoding=encoding, jpeg=image.jpeg)
    if dst == STDIO:
        sys.stdout.buffer.write(encode_image(pixels, out_format, **meta))
        sys.stdout.buffer.flush()
    else:
        write_image(dst, pixels, **meta)
    return notes


def refuse_animations(files: Iterable[Path]) -> None:
    """One clear line, before any work, for an input holding several frames (animated GIF, WebP or PNG)."""
    for path in files:
        if path != STDIO and path.suffix.lower() in (".gif", ".webp", ".png", ".apng"):
            frames = frame_count(path)
            if frames > 1:
                raise DerainError(f"{path} is an animation ({frames} frames); derain restores still images: "
                                  "extract its frames first (e.g. ffmpeg -i IN frames/%04d.png) and derain the "
                                  "folder")


def _inputs(job: RunJob) -> tuple[list[Path], list[Path], bytes | None]:
    """(input files, their names below the output folder, the bytes read from stdin for ``-``)."""
    if "-" not in job.inputs:
        tree = expand_input_tree(job.inputs, job.recursive)
        return [f for f, _ in tree], [n for _, n in tree], None
    if len(job.inputs) != 1:
        raise DerainError("'-' (an image on stdin) must be the only input")
    data = sys.stdin.buffer.read()
    if not data:
        raise DerainError("no image on stdin (the input '-' was empty)")
    return [STDIO], [Path("stdin.png")], data


def _decide(dst: Path, job: RunJob, provenance: str) -> str | None:
    """What to do with an output that may exist: None (make it), ``skipped`` or ``remade``."""
    if dst == STDIO or not dst.exists() or job.overwrite:
        return None
    made_by = read_provenance(dst)
    if made_by is None or made_by == provenance or job.keep_existing:
        return "skipped"  # the user's own file, or what this model and weights would make again
    return "remade"


def run(job: RunJob) -> RunReport:
    """Restore every input image of ``job``; per-file problems are collected, not fatal, until the end."""
    files, names, stdin_data = _inputs(job)
    from derain.video.streams import refuse_videos  # by name only: PyAV is not needed to say so
    refuse_videos(files)
    if stdin_data is not None and not names_one_image(job.output_dir):
        raise DerainError("an image from stdin needs -o FILE or -o - (stdout)")
    outputs = run_outputs(files, job.output_dir, job.suffix, names, job.name_suffix)
    refuse_animations(files)
    shard = job.shard or torchrun_shard()
    files, outputs = shard_files(files, shard), shard_files(outputs, shard)
    if job.output_dir != STDIO:
        prepare_output_dir(job.output_dir.parent if names_one_image(job.output_dir) else job.output_dir)
    if job.threads:
        torch.set_num_threads(job.threads)

    # The model and its weights first: a missing checkpoint is an error even when every output exists.
    device_name = job.device
    if device_name == "auto" and shard is not None and torch.cuda.is_available():
        device_name = f"cuda:{int(os.environ.get('LOCAL_RANK', shard[0])) % torch.cuda.device_count()}"
    if job.backend == "onnxruntime" and device_name == "auto":
        device_name = "cpu"
    device = resolve_device(device_name)
    if job.backend == "torch":  # no model named: the default, or its CPU student on a CPU without native bf16
        job = dataclasses.replace(job, model=default_model_for(job.model, job.weights, device))
    model, name, multiple = load_for_backend(job, device)
    weights = getattr(model, "path", None) or (job.weights if job.backend == "onnxruntime"
                                               else resolve_weights(job.model, job.weights))
    assert weights is not None  # load_for_backend refused onnxruntime without --weights
    provenance = f"model={name} weights={file_fingerprint(weights)}"
    encoding = Encoding(job.encoding.quality, job.encoding.subsampling, provenance)

    report = RunReport()
    todo = []
    for src, dst in zip(files, outputs):
        decision = _decide(dst, job, provenance)
        if decision == "skipped":
            report.skipped.append(dst)
            _announce(job, FileResult(src, dst, name, "skipped"))
        else:
            todo.append((src, dst, decision == "remade"))
    if not todo:
        return report

    model = prepare_for(model, job.options, device)  # once for all images (and compiled once with --compile)
    options = resolve_tile(resolve_working_side(job.options, name), model, multiple, device)
    routed = set_task(model, name, job.task)
    quiet = job.quiet or job.output_dir == STDIO and not sys.stderr.isatty()
    bar = tqdm(total=len(todo), unit="img", disable=quiet, desc=f"derain ({name}, {device.type})", file=sys.stderr)
    for src, dst, remade in todo:
        start = time.perf_counter()
        try:
            source = stdin_data if src == STDIO else src
            assert source is not None  # _inputs read stdin when an input is STDIO
            fmt = _stdout_suffix(src, stdin_data, job.suffix) if dst == STDIO else None
            notes = restore_file(source, dst, model, multiple, options, device, quiet=quiet, encoding=encoding,
                                 max_pixels=job.max_pixels, fmt=fmt)
            for note in notes:
                tqdm.write(f"derain: {getattr(src, 'name', 'stdin')}: {note}", file=sys.stderr)
            report.written.append(dst)
            if remade:
                report.remade.append(dst)
            _announce(job, FileResult(src, dst, name, "remade" if remade else "written", time.perf_counter() - start))
            if routed is not None and routed.task in (None, "auto"):
                tqdm.write(f"derain: {src.name}: the degradation selector chose {describe_choice(routed)}",
                           file=sys.stderr)
        except DerainError as exc:
            report.failed.append((src, str(exc)))
            _announce(job, FileResult(src, dst, name, "failed", time.perf_counter() - start, str(exc)))
            tqdm.write(f"derain: error: {exc}", file=sys.stderr)
        bar.update(1)
    bar.close()
    return report


def _announce(job: RunJob, result: FileResult) -> None:
    if job.on_result is not None:
        job.on_result(result)


def main(args: argparse.Namespace) -> int:
    """``derain run``: restore images, folders or globs, and print what was written."""
    from derain.files.imageio import DEFAULT_MAX_PIXELS, Encoding
    from derain.files.outputs import STDIO, parse_shard
    if args.json and args.output == "-":
        raise DerainError("--json prints to stdout, where -o - writes the image; use one of them")
    on_result = (lambda result: print(result.json_line(), flush=True)) if args.json else None
    job = RunJob(inputs=args.inputs, output_dir=Path(args.output), model=args.model, weights=args.weights,
                 device=args.device, options=inference_options(args), overwrite=args.overwrite,
                 shard=parse_shard(args.shard) if args.shard else None,
                 suffix=f".{args.format}" if args.format else None, quiet=args.quiet or args.json,
                 backend=args.backend, task=args.task, recursive=args.recursive, name_suffix=args.suffix,
                 keep_existing=args.keep_existing, encoding=Encoding(args.quality, args.subsampling),
                 max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, threads=args.threads, on_result=on_result)
    report = run(job)
    summary = (f"derain: wrote {len(report.written)} image(s) to "
               f"{'stdout' if job.output_dir == STDIO else job.output_dir}"
               + (f" ({len(report.remade)} made again: other model or weights had made them)" if report.remade
                  else "")
               + (f", skipped {len(report.skipped)} existing (use --overwrite to redo them)" if report.skipped else ""))
    if not args.json:
        print(summary, file=sys.stderr if job.output_dir == STDIO else sys.stdout)
    if report.failed:
        raise DerainError(f"{len(report.failed)} image(s) failed: " + ", ".join(str(p) for p, _ in report.failed[:5]))
    return 0
