"""How vertical is the rain of a paired set? Statistics of the rain layer (rainy - clean, brightening only).

    python scripts/rain_orientation.py ../shared/data/rain100l-train ../shared/data/rain100l [--limit 40]

For each set: the ratio of horizontal to vertical gradient energy of the rain layer (a vertical streak
changes across x, not along y, so vertical rain gives a ratio well above 1; isotropic texture gives 1), and
per image the dominant gradient orientation of the structure tensor in degrees (0 = vertical streaks,
90 = horizontal). This is the measurement behind ``data.augment: flips`` (docs/journal/fastderain.md).
"""
from __future__ import annotations

import argparse

import numpy as np

from derain.data.datasets import load_pairs


def rain_layer_orientation(rainy: np.ndarray, clean: np.ndarray) -> tuple[float, float, float]:
    """(horizontal gradient energy, vertical gradient energy, dominant orientation in degrees) of one pair."""
    rain = np.clip(rainy.astype(np.float32).mean(2) - clean.astype(np.float32).mean(2), 0, None)
    gx = np.diff(rain, axis=1)[:-1]
    gy = np.diff(rain, axis=0)[:, :-1]
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    return jxx, jyy, 0.5 * float(np.degrees(np.arctan2(2 * jxy, jxx - jyy)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs of each set")
    args = parser.parse_args()
    for root in args.sets:
        stats = np.array([rain_layer_orientation(a, b) for _, a, b in load_pairs(root, args.limit)])
        ratio = stats[:, 0].sum() / stats[:, 1].sum()
        angles = stats[:, 2]
        print(f"{root}: {len(stats)} pairs, x/y gradient energy {ratio:.2f}, dominant orientation median "
              f"{np.median(angles):.1f} deg, range {angles.min():.1f} to {angles.max():.1f} deg (0 = vertical), "
              f"|orientation| < 45 deg in {np.mean(np.abs(angles) < 45) * 100:.0f}% of images")


if __name__ == "__main__":
    main()
