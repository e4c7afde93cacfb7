"""Peak memory (RSS) and time of tiled inference on a large real photo, on the CPU.

    python benchmarks/tiled_memory.py [--photo ../shared/data/real-rain/<largest>.jpg] [--model restormer]
                                      [--tile 512] [--max-tiles 4] [--config dim=48]

Runs the same path as ``derain run`` (read, pad, tile, blend, write) with random weights (speed and memory
do not depend on the weights). ``--max-tiles`` stops after that many tiles: memory peaks within the first
tile (image buffers are allocated up front, every tile costs the same), and the full time is extrapolated
from the per-tile time. Prints one line per measurement.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REAL_RAIN = ROOT.parent / "shared" / "data" / "real-rain"


class _Stop(Exception):
    pass


def largest_photo() -> Path:
    from PIL import Image
    if not REAL_RAIN.is_dir():
        sys.exit(f"benchmark needs ../shared/data/real-rain (not found at {REAL_RAIN}); pass --photo")
    return max(REAL_RAIN.glob("*.jpg"), key=lambda p: (lambda s: s[0] * s[1])(Image.open(p).size))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--model", default="restormer")
    parser.add_argument("--config", nargs="*", default=[], help="key=value overrides of the model config")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--max-tiles", type=int, default=0, help="stop after N tiles (0: whole photo)")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()

    from derain.files.imageio import read_image, write_image
    from derain.inference.restore import InferenceOptions, count_tiles, restore
    from derain.models import build, get_spec

    photo = args.photo or largest_photo()
    config = {k: eval(v) for k, v in (item.split("=", 1) for item in args.config)}  # noqa: S307 (numbers, lists)
    model = build(args.model, **config).eval()
    start_rss = peak_rss_mib()
    image = read_image(photo)
    x = torch.from_numpy(image.pixels).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    options = InferenceOptions(tile=args.tile, tile_overlap=args.overlap, tile_threshold=0,
                               precision=args.precision)
    multiple = get_spec(args.model).size_multiple
    total = count_tiles(h, w, options, multiple)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if args.max_tiles and done >= args.max_tiles:
            raise _Stop

    t0 = time.perf_counter()
    try:
        y = restore(model, x, multiple, options, torch.device("cpu"), progress=progress)
        with tempfile.TemporaryDirectory() as tmp:
            write_image(Path(tmp) / "out.png", y[0].permute(1, 2, 0).numpy())
    except _Stop:
        pass
    seconds = time.perf_counter() - t0
    per_tile = seconds / max(done, 1)
    print(f"photo {photo.name} {w}x{h} ({w * h / 1e6:.1f} MP), model {args.model} {config or ''}, "
          f"tile {args.tile}/{args.overlap}, {args.precision}, torch threads {torch.get_num_threads()}")
    print(f"tiles run {done}/{total}, {per_tile:.2f} s per tile, whole photo "
          f"{'measured' if done == total else 'extrapolated'} {per_tile * total:.0f} s")
    print(f"peak RSS {peak_rss_mib():.0f} MiB (after model build {start_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
