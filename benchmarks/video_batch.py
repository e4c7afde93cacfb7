"""Frames per second of video frames derained one at a time against batches of 2 and 4 (docs/video.md).

    python benchmarks/video_batch.py [--sizes 320x240 640x360] [--batches 1 2 4] [--frames 8] [--runs 5]
                                     [--threads 2]

Runs the bundled default model through the function ``derain video`` uses
(:func:`derain.video.job.frame_derainer`: prepared once for the fast path, automatic working side and
precision) on ``--frames`` frames cut from a Kodak photo
(random pixels where the data is absent: the speed of these networks does not depend on the content). A batch
of B frames is stacked into one B x 3 x H x W tensor and goes through the same restore call; its outputs are
checked to match the one-at-a-time outputs. Prints the median and best frames/s of ``--runs`` passes, the
passes taken round-robin across the batch sizes so that a busy machine slows all of them alike.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import derain
from derain.inference.hardware import cpu_model_name
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions
from derain.video.job import frame_derainer

PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clean" / "kodak24" / "kodim05.png"


def frames_of(width: int, height: int, count: int) -> list[np.ndarray]:
    """``count`` different ``width`` x ``height`` crops of the Kodak photo (a slow pan), or random frames."""
    if PHOTO.is_file():
        photo = read_uint8_rgb(PHOTO)
        scale = max(width * 1.3 / photo.shape[1], height / photo.shape[0])
        import cv2
        photo = cv2.resize(photo, (round(photo.shape[1] * scale) + 1, round(photo.shape[0] * scale) + 1),
                           interpolation=cv2.INTER_AREA)
        step = max(1, (photo.shape[1] - width) // count)
        return [np.ascontiguousarray(photo[:height, i * step:i * step + width]) for i in range(count)]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x360"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--frames", type=int, default=8, help="frames per pass (a multiple of every batch)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, name = derain.load_model()
    options = InferenceOptions(working_side="auto")  # derain video's defaults (fast path, auto precision)
    run = frame_derainer(model, name, options, torch.device("cpu"))
    print(f"{cpu_model_name()}, {args.threads} thread(s), torch {torch.__version__}; model {name}; "
          f"{args.frames} frames per pass, {args.runs} passes")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        frames = frames_of(width, height, args.frames)
        alone = [run([f])[0] for f in frames]  # warm-up, and the reference outputs
        for batch in args.batches:
            together = [y for i in range(0, len(frames), batch) for y in run(frames[i:i + batch])]
            worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(alone, together))
            if worst > 1:
                print(f"  batch {batch}: outputs differ from one at a time by up to {worst}/255")
        times: dict[int, list[float]] = {b: [] for b in args.batches}
        for _ in range(args.runs):
            for batch in args.batches:
                started = time.perf_counter()
                for i in range(0, len(frames), batch):
                    run(frames[i:i + batch])
                times[batch].append(time.perf_counter() - started)
        base = statistics.median(times[args.batches[0]])
        for batch in args.batches:
            median, best = statistics.median(times[batch]), min(times[batch])
            print(f"{size} batch {batch}: {len(frames) / median:6.2f} frames/s median, {len(frames) / best:6.2f} "
                  f"best ({base / median:.2f}x batch {args.batches[0]})")


if __name__ == "__main__":
    main()
