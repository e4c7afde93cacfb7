"""Write the heavy-rain validation set (derain.data.heavyval): 104 pairs, rainy/ and clean/ PNGs.

    python scripts/make_heavy_val.py OUT [--data ../shared/data] [--overwrite]
    derain bench fastderain OUT --protocol rgb      # score a model on it

The set is a function of the code (fixed seed): regenerate it rather than committing images.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from derain.data.heavyval import VERSIONS, held_out_backgrounds, make_pair
from derain.files.imageio import read_uint8_rgb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--overwrite", action="store_true", help="replace a set already there")
    args = parser.parse_args()
    backgrounds = held_out_backgrounds(args.data)
    if not backgrounds:
        print(f"error: no Kodak24 / bsds-extra photos under {args.data}", file=sys.stderr)
        return 2
    rainy_dir, clean_dir = args.out / "rainy", args.out / "clean"
    if rainy_dir.exists() and any(rainy_dir.iterdir()) and not args.overwrite:
        print(f"error: {rainy_dir} already holds images (--overwrite to replace them)", file=sys.stderr)
        return 2
    rainy_dir.mkdir(parents=True, exist_ok=True)
    clean_dir.mkdir(parents=True, exist_ok=True)
    for path in backgrounds:
        clean = read_uint8_rgb(path)
        for k in range(1, VERSIONS + 1):
            rainy, target = make_pair(clean, path.stem, k)
            Image.fromarray(rainy).save(rainy_dir / f"{path.stem}_{k}.png")
            Image.fromarray(target).save(clean_dir / f"{path.stem}_{k}.png")
    print(f"wrote {len(backgrounds) * VERSIONS} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
