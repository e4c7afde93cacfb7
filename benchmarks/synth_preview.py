"""Preview grid of the synthetic rain presets next to real Rain100L rain, and the residual statistics.

    python benchmarks/synth_preview.py [--out docs/images/synth_preview.png] [--seed 0] [--tile 288]

Rows 1-3: Kodak24 photos, clean | light | heavy | real. Row 4: a RainTrainL pair, clean | real rain | light on
the same clean image | a real rainy photo. Photos are first cropped and resized to Rain100L's size (481 x 321) so the streaks have the scale the
presets were calibrated at, then every tile is downscaled to ``--tile`` pixels wide for the page.

Also prints, for the light preset on the 200 RainTrainL clean images, the residual rainy - clean statistics
(grey mean, 99th percentile, fraction of pixels > 0.1) next to the real ones, and the time of one training
batch (8 x 3 x 128 x 128) on one CPU thread.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from derain.data.synth import preset, synthesize
from derain.files.imageio import read_uint8_rgb, write_image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KODAK = ("kodim05.png", "kodim14.png", "kodim23.png")
PAIR = "001"  # RainTrainL pair shown in the last row
REAL_PHOTO = 37  # a real rainy photo (one of the 117 training photos of derain.data.realrain), last row
RAIN100L_SIZE = (481, 321)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.rint(x[0].permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


def rain(image: np.ndarray, name: str, seed: int) -> np.ndarray:
    return to_uint8(synthesize(to_tensor(image), preset(name), torch.Generator().manual_seed(seed), wrap=False))


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre of ``image`` at the aspect ratio of ``size`` (width, height), resized to ``size``."""
    h, w = image.shape[:2]
    crop_h, crop_w = min(h, round(w * size[1] / size[0])), min(w, round(h * size[0] / size[1]))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    picture = Image.fromarray(image[top:top + crop_h, left:left + crop_w])
    return np.asarray(picture.resize(size, Image.Resampling.LANCZOS))


def tile(image: np.ndarray, width: int, label: str) -> Image.Image:
    picture = Image.fromarray(image)
    picture = picture.resize((width, round(width * picture.height / picture.width)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 7 * len(label) + 6, 14), fill=(0, 0, 0))
    draw.text((3, 2), label, fill=(255, 255, 255))
    return picture


def residual_stats(rainy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    r = (rainy.astype(np.float32) - clean.astype(np.float32)).mean(axis=2) / 255.0
    return np.array([r.mean(), np.percentile(r, 99), (r > 0.1).mean()])


def print_statistics(seed: int) -> None:
    root = DATA / "rain100l-train"
    real, synthetic = [], []
    generator = torch.Generator().manual_seed(seed)
    for path in sorted((root / "clean").glob("norain-*")):
        clean = read_uint8_rgb(path)
        real.append(residual_stats(read_uint8_rgb(root / "rainy" / path.name.replace("norain-", "rain-")), clean))
        synthetic.append(residual_stats(to_uint8(synthesize(to_tensor(clean), preset("light"), generator)), clean))
    print(f"residual rainy - clean over {len(real)} RainTrainL images (mean over images; p10-p90 across images)")
    print(f"{'':10s} {'mean':>22s} {'99th percentile':>22s} {'fraction > 0.1':>22s}")
    for label, rows in (("real", np.array(real)), ("synthetic", np.array(synthetic))):
        cells = [f"{m:.4f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in
                 zip(rows.mean(0), np.percentile(rows, 10, 0), np.percentile(rows, 90, 0))]
        print(f"{label:10s} " + " ".join(f"{c:>22s}" for c in cells))


def print_timing() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.rand(8, 3, 128, 128)
    for name in ("light", "heavy", "real"):
        generator = torch.Generator().manual_seed(0)
        times = []
        for _ in range(30):
            start = time.perf_counter()
            synthesize(x, preset(name), generator)
            times.append(time.perf_counter() - start)
        print(f"{name}: {statistics.median(times[5:]) * 1e3:.2f} ms median, {min(times) * 1e3:.2f} ms best "
              "per 8 x 3 x 128 x 128 batch (1 thread)")
    torch.set_num_threads(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "synth_preview.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=288, help="width of one tile in the grid (pixels)")
    parser.add_argument("--no-stats", action="store_true", help="only write the grid")
    args = parser.parse_args()
    if not (DATA / "clean" / "kodak24").is_dir() or not (DATA / "rain100l-train").is_dir():
        sys.exit(f"needs {DATA}/clean/kodak24 and {DATA}/rain100l-train (../shared beside the project)")

    rows = []
    for i, name in enumerate(KODAK):
        photo = fit(read_uint8_rgb(DATA / "clean" / "kodak24" / name), RAIN100L_SIZE)
        rows.append([tile(photo, args.tile, name), tile(rain(photo, "light", args.seed + i), args.tile, "light"),
                     tile(rain(photo, "heavy", args.seed + i), args.tile, "heavy"),
                     tile(rain(photo, "real", args.seed + i), args.tile, "real")])
    clean = read_uint8_rgb(DATA / "rain100l-train" / "clean" / f"norain-{PAIR}.webp")
    real = read_uint8_rgb(DATA / "rain100l-train" / "rainy" / f"rain-{PAIR}.webp")
    photo = fit(read_uint8_rgb(DATA / "real-rain" / f"{REAL_PHOTO}.jpg"), RAIN100L_SIZE)
    rows.append([tile(clean, args.tile, f"norain-{PAIR}"), tile(real, args.tile, "real Rain100L"),
                 tile(rain(clean, "light", args.seed), args.tile, "light"),
                 tile(photo, args.tile, f"real photo {REAL_PHOTO}.jpg")])

    heights = [max(t.height for t in row) for row in rows]
    grid = Image.new("RGB", (4 * args.tile, sum(heights)), (255, 255, 255))
    top = 0
    for row, height in zip(rows, heights):
        for j, picture in enumerate(row):
            grid.paste(picture, (j * args.tile, top))
        top += height
    write_image(args.out, np.asarray(grid, dtype=np.float32) / 255.0)
    print(f"wrote {args.out} ({grid.width} x {grid.height}, {args.out.stat().st_size / 1e6:.2f} MB)")
    if not args.no_stats:
        print_statistics(args.seed)
        print_timing()
    return 0


if __name__ == "__main__":
    sys.exit(main())
