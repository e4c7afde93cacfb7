"""A 12-megapixel photo end to end (read, tile, infer, write) against a 481x321 image, in one process.

    python benchmarks/photo_12mp.py [--runs 10] [--threads 2] [--tile auto] [--no-fast] [--working-side 0]

Both go through ``derain.commands.run.restore_file``, the per-file step of ``derain run``, with the bundled model
loaded and prepared once: the Rain100L image ``rain-001.png`` (481x321, written as PNG) ``--runs`` times, then
``real-rain/91.jpg`` (4288x2848, written as JPEG) twice. Prints the median seconds, seconds per megapixel,
their ratio, the process's peak RSS (set by the large photo) and, for the large photo, where the time goes.
``--working-side`` as ``derain run`` takes it (default auto: the large photo is derained at 640 pixels on its
shorter side; 0: at its own resolution, in tiles). Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from derain.weights.load import load_model
from derain.files.imageio import read_image
from derain.inference.restore import (InferenceOptions, count_tiles, prepare_for, resolve_tile, resolve_working_side,
                                      restore)
from derain.models import get_spec
from derain.commands.run import restore_file
from derain.weights import default_checkpoint

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = DATA / "rain100l" / "rainy" / "rain-001.png"
LARGE = DATA / "real-rain" / "91.jpg"


def _median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--tile", default="auto", help="tile side or auto (default)")
    parser.add_argument("--no-fast", dest="fast", action="store_false")
    parser.add_argument("--working-side", default="auto", help="pixels, 0 (off) or auto (default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for photo in (SMALL, LARGE):
        if not photo.is_file():
            raise SystemExit(f"needs {photo} (../shared/data beside the project)")
    cpu = torch.device("cpu")
    model, name = load_model(None, str(default_checkpoint()))
    multiple = get_spec(name).size_multiple
    side = args.working_side if args.working_side == "auto" else int(args.working_side) or None
    options = resolve_working_side(InferenceOptions(tile=None if args.tile == "auto" else int(args.tile),
                                                    fast=args.fast, working_side=side), name)
    model = prepare_for(model, options, cpu)
    options = resolve_tile(options, model, multiple, cpu)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)

        def small_file() -> None:
            restore_file(SMALL, out / "small.png", model, multiple, options, cpu)

        def large_file() -> None:
            restore_file(LARGE, out / "large.jpg", model, multiple, options, cpu)

        small_file()  # warm-up: oneDNN primitives
        small = _median_seconds(small_file, args.runs)
        large = _median_seconds(large_file, 2)
        # Where the large photo's time goes: reading, inference (tiles and blending), the rest is writing.
        read = _median_seconds(lambda: read_image(LARGE), 2)
        x = torch.from_numpy(read_image(LARGE).pixels).permute(2, 0, 1)[None]
        infer = _median_seconds(lambda: restore(model, x, multiple, options, cpu), 1)
    small_mp, large_mp = 481 * 321 / 1e6, 4288 * 2848 / 1e6
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tiles = count_tiles(2848, 4288, options, multiple)
    print(f"{name}, {torch.get_num_threads()} threads, tile {options.tile} ({tiles} tiles on the large photo), "
          f"fast path {'on' if args.fast else 'off'}, working side {options.working_side or 'off'}, model loaded once")
    print("| image | seconds | s/MP | ratio to 481x321 | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    print(f"| 481x321 rain-001.png -> PNG | {small:.3f} | {small / small_mp:.3f} | 1.00 | |")
    print(f"| 4288x2848 91.jpg -> JPEG | {large:.2f} | {large / large_mp:.3f} | "
          f"{(large / large_mp) / (small / small_mp):.2f} | {rss:.0f} |")
    print(f"large photo: read {read:.2f} s, restore (tiles + blending) {infer:.2f} s, "
          f"write and conversions {large - read - infer:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
