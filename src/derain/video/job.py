"""The job behind ``derain video``: decode a clip, derain every frame, combine neighbours, encode, keep the sound.

The output is written to a hidden file beside its final name and renamed only when the whole clip is done,
so an interrupted or failed run never leaves a file that looks complete.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from derain.data.tensors import image_to_tensor, quantize, tensor_to_images
from derain.errors import DerainError
from derain.files.outputs import refuse_existing, torchrun_shard
from derain.inference.model_choice import default_model_for
from derain.inference.restore import (
    InferenceOptions,
    prepare_for,
    resolve_device,
    resolve_tile,
    resolve_working_side,
    restore,
)
from derain.models import get_spec
from derain.video.shard import piece_path, shard_span, shard_tag
from derain.video.streams import (
    EncodeSettings,
    Frame,
    Span,
    VideoInfo,
    choose_encoder,
    probe,
    require_av,
    span_of,
    transcode,
)
from derain.video.temporal import TemporalOptions, temporal_filter

# Frames derained together by default: one. On a quiet 2-core CPU one frame at a time is the fastest per frame
# (batches of 4 cost 29-30% more per frame at 640x360 and 1280x720: larger activations, more cache misses);
# batches only looked faster on a machine loaded with other work (benchmarks/video_batch.py, docs/video.md).
DEFAULT_BATCH = 1


@dataclass
class VideoJob:
    """Everything ``derain video`` needs to know."""

    input: Path
    output: Path
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    options: InferenceOptions = field(default_factory=InferenceOptions)
    temporal: bool = True
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    overwrite: bool = False
    quiet: bool = False
    shard: tuple[int, int] | None = None  # (I, N): write piece I of N (None: the whole clip, or torchrun's)
    batch: int = DEFAULT_BATCH  # frames derained together


@dataclass
class VideoReport:
    """What a video run did."""

    output: Path
    frames: int
    seconds: float
    temporal: bool
    shard: tuple[int, int] | None = None


BatchFn = Callable[[list[np.ndarray]], list[np.ndarray]]

def frame_derainer(model: torch.nn.Module, name: str, options: InferenceOptions, device: torch.device) -> BatchFn:
    """A function [uint8 RGB frames of one size] -> [derained frames], with ``model`` prepared once; the
    frames of a call go through the network as one batch."""
    options = resolve_working_side(options, name)
    model = prepare_for(model, options, device)
    multiple = get_spec(name).size_multiple
    options = resolve_tile(options, model, multiple, device)

    def run(frames: list[np.ndarray]) -> list[np.ndarray]:
        x = image_to_tensor(np.stack(frames))
        # restore's output is already in [0, 1], so quantize's clamp changes nothing: rint as before
        return list(tensor_to_images(quantize(restore(model, x, multiple, options, device))))

    return run


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def derain_frames(frames: Iterable[Frame], derain: BatchFn, temporal: bool,
                  temporal_options: TemporalOptions = TemporalOptions(), batch: int = 1) -> Iterator[Frame]:
    """Derained ``frames``, in order, ``batch`` at a time through ``derain``; ``temporal``: combined with their
    aligned neighbours (:mod:`derain.video.temporal`)."""
    single = (Frame(pixels, f.pts, f.index, f.keep)
              for chunk in _batches(frames, max(1, batch))
              for f, pixels in zip(chunk, derain([f.pixels for f in chunk]), strict=True))
    return temporal_filter(single, temporal_options) if temporal else single


def _check_paths(job: VideoJob) -> None:
    """Refuse a plan that would lose or clobber something, before any work."""
    if not job.input.exists():
        raise DerainError(f"no such file: {job.input}")
    if job.input.is_dir():
        raise DerainError(f"{job.input} is a folder; derain video takes one video file")
    if job.output.exists() and job.output.resolve() == job.input.resolve():
        raise DerainError(f"output {job.output} is the input itself; choose another name with -o")
    if job.output.is_dir():
        raise DerainError(f"output {job.output} is a folder; name the output file, e.g. -o clean.mp4")
    if not job.output.suffix:
        raise DerainError(f"output {job.output} has no container suffix; name it .mp4, .mkv or .mov")
    refuse_existing([job.output], job.overwrite)
    folder = job.output.parent
    if not folder.is_dir():
        raise DerainError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DerainError(f"output folder {folder} is not writable")


def _expected_frames(info: VideoInfo, span: Span) -> int | None:
    """Frames the progress bar expects: the span's length times the frame rate (None: unknown)."""
    total = info.frames or (round(info.duration * float(info.rate)) if info.duration else None)
    if not total or (span.begin is None and span.end is None):
        return total
    clip_end = info.start_time + (info.stream_duration or info.duration)
    begin = info.start_time if span.begin is None else span.begin
    end = clip_end if span.end is None else min(span.end, clip_end)
    return max(1, round((end - begin) * float(info.rate)))


def derain_video(job: VideoJob) -> VideoReport:
    """Derain the video ``job.input`` into ``job.output`` (see the module docstring); one clear line on errors.

    With ``job.shard`` (or under torchrun) only that piece of the clip is derained, into
    :func:`~derain.video.shard.piece_path` of the output (:mod:`derain.video.shard` joins the pieces).
    """
    require_av()
    shard = job.shard or torchrun_shard()
    if shard is not None:
        job = dataclasses.replace(job, output=piece_path(job.output, shard))
    _check_paths(job)
    info = probe(job.input)  # a bad input is reported before the model loads
    choose_encoder(job.encode.codec)
    if job.batch < 1:
        raise DerainError(f"--batch must be 1 or more frames, got {job.batch}")
    if job.encode.start < 0 or (job.encode.duration is not None and job.encode.duration <= 0):
        raise DerainError("--start must be 0 or more and --duration more than 0 seconds")
    temporal_options = TemporalOptions()
    margin = temporal_options.radius if job.temporal else 0  # neighbours read beyond each end, not written
    span = shard_span(info, job.encode, shard, margin) if shard else span_of(job.encode, margin)

    from derain.weights.load import load_trained

    device_name = job.device
    if device_name == "auto" and shard is not None and torch.cuda.is_available():  # one GPU per process
        device_name = f"cuda:{int(os.environ.get('LOCAL_RANK', shard[0])) % torch.cuda.device_count()}"
    device = resolve_device(device_name)
    # No model named: the default, or its CPU student on a CPU without native bf16.
    model, name = load_trained(default_model_for(job.model, job.weights, device), job.weights)
    derain = frame_derainer(model.to(device), name, job.options, device)

    mode = "temporal" if job.temporal else "single-frame"
    piece = f", piece {shard[0]}/{shard[1]}" if shard else ""
    bar = tqdm(total=_expected_frames(info, span), unit="frame", disable=job.quiet,
               desc=f"derain video ({name}, {mode}, {device.type}{piece})")
    partial = job.output.with_name(f".{job.output.stem}.partial{job.output.suffix}")
    started = time.perf_counter()
    try:
        written = transcode(info, partial,
                            lambda frames: derain_frames(frames, derain, job.temporal, temporal_options, job.batch),
                            job.encode, on_frame=lambda: bar.update(1), span=span,
                            metadata=shard_tag(shard) if shard else None)
        os.replace(partial, job.output)
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave a partial clip behind
        raise
    finally:
        bar.close()
    if not job.quiet and info.rotation:
        tqdm.write(f"derain: kept the display rotation of {info.rotation} degrees", file=sys.stderr)
    return VideoReport(output=job.output, frames=written, seconds=time.perf_counter() - started,
                       temporal=job.temporal, shard=shard)
