"""Does our synthetic rain look like real rain? Rain statistics of real photos against each synthesis preset.

    python scripts/rain_realism.py [--presets light heavy ...] [--count 60] [--seed 0] [--json out.json]
    OMP_NUM_THREADS=1 python scripts/rain_realism.py --count 30

Run from the project root. Real: the 117 *training* photos of ../shared/data/real-rain
(``derain.data.realrain.split_real_photos``; the 30 held-out photos are never read). Synthetic: ``--count``
clean photos of ../shared/data/clean/bsds-extra (spread evenly over the sorted list), each rained on by every
preset (default: every name in ``derain.data.synth.PRESETS``) with one generator per preset seeded ``--seed``.
Statistics are those of ``derain.data.rainstats.rain_stats``; the distance of a preset is the Wasserstein-1
distance to the real sample over the real standard deviation (0: same distribution, 1: one std off).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from derain.data.rainstats import STAT_NAMES, RainStats, distribution_distance, rain_stats, stats_table
from derain.data.realrain import split_real_photos
from derain.data.synth import PRESETS, preset, synthesize
from derain.files.imageio import read_uint8_rgb

DATA = Path("../shared/data")  # relative to the project root, where the script is run


def real_stats(folder: Path) -> list[RainStats]:
    """Statistics of the training split of the real rainy photos (never the held-out split)."""
    train, _held_out = split_real_photos(folder)
    return [rain_stats(read_uint8_rgb(path)) for path in train]


def clean_photos(folder: Path, count: int) -> list[Path]:
    """``count`` photos spread evenly over the sorted folder (all of them if it holds fewer)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if count >= len(paths):
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def synthetic_stats(photos: list[Path], name: str, seed: int) -> list[RainStats]:
    """Statistics of ``photos`` rained on by preset ``name``; one image per batch, so sizes may differ."""
    config, generator = preset(name), torch.Generator().manual_seed(seed)
    out = []
    for path in photos:
        clean = torch.from_numpy(read_uint8_rgb(path).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        rainy = synthesize(clean, config, generator, wrap=False)  # whole photos: no wrapped-around streaks
        out.append(rain_stats(rainy[0].permute(1, 2, 0).numpy()))
    return out


def summary(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"median": math.nan, "p10": math.nan, "p90": math.nan}
    p10, median, p90 = np.percentile(finite, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90)}


FORMATS = {"density": ".4f", "contrast": ".4f", "angle": ".1f", "angle_spread": ".1f", "width": ".2f",
           "length": ".1f", "veil": ".3f", "brightness": ".3f"}  # enough digits for each statistic's range


def print_table(real: list[RainStats], synthetic: dict[str, list[RainStats]],
                distances: dict[str, dict[str, float]]) -> None:
    real_table = stats_table(real)
    synthetic_tables = {name: stats_table(stats) for name, stats in synthetic.items()}
    header = f"{'statistic':<13s} {'real median [p10, p90]':<26s}" + "".join(
        f" | {name[:14]:>14s} {'dist':>5s}" for name in synthetic)
    print(header)
    print(f"{'':<13s} {'':<26s}" + "".join(f" | {'median':>14s} {'':>5s}" for _ in synthetic))
    print("-" * len(header))
    for stat in STAT_NAMES:
        f = FORMATS.get(stat, ".4g")
        s = summary(real_table[stat])
        spread = f"{s['median']:{f}} [{s['p10']:{f}}, {s['p90']:{f}}]"
        line = f"{stat:<13s} {spread:<26s}"
        for name, table in synthetic_tables.items():
            line += f" | {format(summary(table[stat])['median'], f):>14s} {distances[name][stat]:>5.2f}"
        print(line)
    print("-" * len(header))
    print(f"{'mean distance':<40s}" + "".join(f" | {'':>14s} {distances[name]['mean']:>5.2f}" for name in synthetic))


def _json_safe(value):
    """``value`` with NaN and infinite floats as None: they are not JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="synthesis presets (default: all)")
    parser.add_argument("--count", type=int, default=60, help="clean bsds-extra photos to rain on (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every preset's generator (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    unknown = [name for name in args.presets if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if args.count < 2:
        parser.error("--count must be at least 2")
    real_folder, clean_folder = DATA / "real-rain", DATA / "clean" / "bsds-extra"
    missing = [str(p) for p in (real_folder, clean_folder) if not p.is_dir()]
    if missing:
        print(f"rain_realism: data not found: {', '.join(missing)} (run from the project root, with "
              "../shared/data beside it)", file=sys.stderr)
        return 2

    torch.set_num_threads(1)  # one image at a time: more threads only wait for cores
    start = time.perf_counter()
    real = real_stats(real_folder)
    photos = clean_photos(clean_folder, args.count)
    synthetic = {name: synthetic_stats(photos, name, args.seed) for name in args.presets}
    distances = {name: distribution_distance(real, stats) for name, stats in synthetic.items()}
    seconds = time.perf_counter() - start

    print(f"real: {len(real)} training photos of {real_folder} (held-out photos not used); synthetic: "
          f"{len(photos)} clean photos of {clean_folder}, seed {args.seed}")
    print("dist: Wasserstein-1 distance to the real sample / real std (0 = same distribution)\n")
    print_table(real, synthetic, distances)
    print(f"\n{seconds:.1f} s")
    if args.json is not None:
        real_table = stats_table(real)
        report = {
            "real": {"folder": str(real_folder), "count": len(real),
                     "summary": {stat: summary(real_table[stat]) for stat in STAT_NAMES},
                     "values": {stat: real_table[stat].tolist() for stat in STAT_NAMES}},
            "synthetic": {name: {"summary": {stat: summary(table[stat]) for stat in STAT_NAMES},
                                 "distance": distances[name],
                                 "values": {stat: table[stat].tolist() for stat in STAT_NAMES}}
                          for name, table in ((n, stats_table(s)) for n, s in synthetic.items())},
            "clean": {"folder": str(clean_folder), "photos": [p.name for p in photos]},
            "seed": args.seed, "seconds": seconds,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_json_safe(report), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
