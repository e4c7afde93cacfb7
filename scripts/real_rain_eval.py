"""No-reference scores of models on the 30 held-out real rainy photos (derain.data.realrain.HELD_OUT).

    python scripts/real_rain_eval.py [fastderain-rain100l] [default] [NAME=CHECKPOINT ...] \
        [--photos ../shared/data/real-rain] [--save work/real-heldout] [--threads 2] [--json PATH]
    python scripts/real_rain_eval.py default --split train --working-side 0 320 480 640   # choose on the 117

For the inputs and each model (``default``: the bundled default model; a bundled or registered name; or
NAME=CHECKPOINT): mean NIQE (lower is more natural; rain streaks raise it), the rain left in the image as
measured by :mod:`derain.data.rainstats` (streak density and contrast, veil: the dark channel), and the mean
absolute change from the input in grey levels (0-255) with its 99th percentile. ``--save`` writes each model's
outputs to SAVE/NAME/ (for ``derain compare``). Every photo is restored by the fast path with the working side
of ``derain run`` (``--working-side``); NIQE uses the photo at its own resolution, the rain statistics their
analysis scale.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from derain.data.rainstats import rain_stats
from derain.data.realrain import split_real_photos
from derain.files.imageio import read_uint8_rgb
from derain.metrics.niqe import niqe


def load(spec: str) -> tuple[str, torch.nn.Module | None, str | None]:
    """(label, model, registry name) for ``default``, a bundled/registered name or NAME=CHECKPOINT."""
    import derain

    if spec == "default":
        model, name = derain.load_model()
        return "default", model, name
    label, _, path = spec.partition("=")
    if path:
        model, name = derain.load_model(None, path)
        return label, model, name
    model, name = derain.load_model(spec)
    return spec, model, name


def scores(image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The no-reference numbers of one image (and its change from ``reference``, the input)."""
    stats = rain_stats(image)
    change = np.abs(image.astype(np.float32) - reference.astype(np.float32)).mean(axis=2)
    return {"niqe": niqe(image), "density": stats.density, "contrast": stats.contrast, "veil": stats.veil,
            "change": float(change.mean()), "change_p99": float(np.percentile(change, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["default"])
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/real-rain"))
    parser.add_argument("--save", type=Path, help="write each model's outputs to SAVE/NAME/")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--working-side", type=int, nargs="+", default=None,
                        help="the working side(s) of every model (default: derain run's, 0 = off); several "
                             "give one row per model and side")
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout",
                        help="heldout: the 30 judging photos (default); train: the other 117, the ones to "
                             "choose settings on")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already under --save")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.photos.is_dir():
        print(f"error: no real rainy photos at {args.photos}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import derain
    from derain.inference.restore import DEFAULT_WORKING_SIDE

    sides = [DEFAULT_WORKING_SIDE] if args.working_side is None else args.working_side

    train, held = split_real_photos(args.photos)
    if args.split == "train":
        held = train
    inputs = [read_uint8_rgb(p) for p in held]
    rows: dict[str, list[dict[str, float]]] = {"input": [scores(x, x) for x in inputs]}
    for spec in args.models:
        for side in sides:
            label, model, name = load(spec)
            if len(sides) > 1:
                label = f"{label}@{side or 'off'}"
            start = time.perf_counter()
            folder = args.save / label if args.save else None
            if folder is not None and folder.exists() and any(folder.iterdir()) and not args.overwrite:
                print(f"error: {folder} already holds outputs (--overwrite to replace them)", file=sys.stderr)
                return 2
            outputs = [derain.derain(x, model, name, fast=True, working_side=side or None) for x in inputs]
            seconds = time.perf_counter() - start
            rows[label] = [scores(y, x) for y, x in zip(outputs, inputs)]
            print(f"{label}: {len(inputs)} photos restored in {seconds:.1f} s", file=sys.stderr)
            if folder is not None:
                from PIL import Image

                folder.mkdir(parents=True, exist_ok=True)
                for path, y in zip(held, outputs):
                    Image.fromarray(y).save(folder / f"{path.stem}.png")
    keys = ["niqe", "density", "contrast", "veil", "change", "change_p99"]
    what = "held-out" if args.split == "heldout" else "training"
    print(f"{len(held)} {what} real photos (working side {', '.join(str(s or 'off') for s in sides)}): "
          f"{', '.join(p.name for p in held)}")
    print(f"{'':22s}" + "".join(f"{k:>11s}" for k in keys))
    for label, values in rows.items():
        means = [float(np.nanmean([v[k] for v in values])) for k in keys]
        print(f"{label:22s}" + "".join(f"{m:11.4f}" for m in means))
    if args.json:
        args.json.write_text(json.dumps({"photos": [p.name for p in held], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
