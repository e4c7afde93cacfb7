"""Frames per second of `derain video` (single-frame mode, decode + derain + encode) against photo inference of
the same frames through the Python API, per size (issue 39's throughput target: within 15% per pixel).

    python benchmarks/video_throughput.py [--sizes 640x360 1280x720] [--frames 24] [--runs 3] [--threads 2]

For each size, two clips of ``--frames`` and twice as many frames (a Kodak photo panned a pixel per frame; the
speed of these networks does not depend on the content) are encoded with x264 into a temporary folder. Then,
in turns so that a busy machine slows both alike: the whole ``derain video --no-temporal`` job on each (the
bundled default model, automatic working side and precision, as the command runs), and
``derain.Session().derain`` on the same frames already decoded in memory (photo inference: no decoding or
encoding). The video's throughput is the marginal one, the extra frames over the extra time of the longer
clip, so the job's fixed start (loading and preparing the model, opening the files) is left out; the job as a
user meets it, start included, is printed too. Prints medians over ``--runs`` turns and the ratio (1.0: the
video pipeline costs nothing per frame beyond inference).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import derain
from derain.inference.hardware import cpu_supports_bf16
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions
from derain.video.job import VideoJob, derain_video

AS_THE_COMMAND = InferenceOptions(working_side="auto")  # what `derain video` passes (the API's default too)
PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clean" / "kodak24" / "kodim05.png"


def frames_of(width: int, height: int, count: int) -> list[np.ndarray]:
    """``count`` frames of ``width`` x ``height`` panned over the Kodak photo (tiled where it is smaller)."""
    photo = read_uint8_rgb(PHOTO) if PHOTO.exists() else np.random.default_rng(0).integers(0, 256, (512, 768, 3),
                                                                                           dtype=np.uint8)
    reps = (-(-height // photo.shape[0]) + 1, -(-(width + count) // photo.shape[1]) + 1, 1)
    canvas = np.tile(photo, reps)
    return [np.ascontiguousarray(canvas[:height, t:t + width]) for t in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 24) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x360", "1280x720"])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, native bf16: {cpu_supports_bf16()}, "
          f"threads {args.threads}, {args.frames} frames, median of {args.runs}")
    session = derain.Session()
    print(f"{'size':>10} {'video fps':>10} {'with start':>10} {'photo fps':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="derain-bench-") as folder:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            frames = frames_of(width, height, 2 * args.frames)
            clips = {}
            for count in (args.frames, 2 * args.frames):
                clips[count] = Path(folder) / f"clip-{size}-{count}.mp4"
                write_clip(clips[count], frames[:count])
            session.derain(frames[0])  # warm the photo path once
            marginal, whole, photo_fps = [], [], []
            for run in range(args.runs):
                seconds = {}
                for count, clip in clips.items():
                    start = time.perf_counter()
                    derain_video(VideoJob(input=clip, output=Path(folder) / f"out-{size}-{count}-{run}.mp4",
                                          options=AS_THE_COMMAND, temporal=False, quiet=True))
                    seconds[count] = time.perf_counter() - start
                marginal.append(args.frames / (seconds[2 * args.frames] - seconds[args.frames]))
                whole.append(2 * args.frames / seconds[2 * args.frames])
                start = time.perf_counter()
                for frame in frames:
                    session.derain(frame)
                photo_fps.append(len(frames) / (time.perf_counter() - start))
            v, w, p = statistics.median(marginal), statistics.median(whole), statistics.median(photo_fps)
            print(f"{size:>10} {v:10.2f} {w:10.2f} {p:10.2f} {v / p:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
