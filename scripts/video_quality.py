"""Single-frame against temporal deraining on synthetic rainy clips with ground truth (docs/video.md).

Makes clips with :mod:`derain.video.synthclip` (a pan and zoom over a Kodak photo, a textured disc crossing
it, rain that falls anew in every frame), derains every frame with the bundled default model, combines them
with :mod:`derain.video.temporal` (``--option KEY=VALUE`` changes a ``TemporalOptions`` field), and prints
per-clip and mean PSNR/SSIM (MATLAB Y), flicker and the error on the moving disc. Frames stay
in memory (no codec between them and the scores). ``--strip`` writes a frame strip of the first clip: rows
rainy, single-frame, temporal, clean, cropped around the moving disc.

    nice -n 19 env OMP_NUM_THREADS=1 python scripts/video_quality.py --preset heavy --seeds 0 1 2 \
        --strip docs/images/video_strip.jpg
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import derain
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions
from derain.video.job import derain_frames, frame_derainer
from derain.video.score import score_clip
from derain.video.streams import Frame
from derain.video.synthclip import ClipSpec, make_clip, object_centre, object_mask
from derain.video.temporal import TemporalOptions

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clean" / "kodak24"


def strip(rows: list[list[np.ndarray]], frames: list[int], spec: ClipSpec, width: int) -> Image.Image:
    """Rows of frames (rainy, single, temporal, clean) at ``frames``, each cropped around the moving disc."""
    side = spec.height // 2
    tiles = []
    for row in rows:
        cells = []
        for t in frames:
            cx = int(np.clip(object_centre(spec, t)[0], side // 2, spec.width - side // 2))
            top = int(spec.height * 0.55) - side // 2
            cells.append(row[t][max(0, top):top + side, cx - side // 2:cx + side // 2])
        tiles.append(np.concatenate(cells, axis=1))
    sheet = Image.fromarray(np.concatenate(tiles, axis=0))
    return sheet.resize((width, round(sheet.height * width / sheet.width)), Image.LANCZOS)


def object_error(frames: list[np.ndarray], clean: list[np.ndarray], spec: ClipSpec) -> float:
    """Mean absolute error (0-255) on the moving disc and 2 pixels around it, over the frames it is in view: a
    trail or a double edge (ghosting) raises it."""
    errors = []
    for t, (frame, truth) in enumerate(zip(frames, clean)):
        mask = object_mask(spec, t)
        if mask.sum() >= 50:
            errors.append(float(np.abs(frame.astype(np.float32) - truth.astype(np.float32))[mask].mean()))
    return float(np.mean(errors)) if errors else float("nan")


def temporal_options_from(pairs: list[str]) -> TemporalOptions:
    """``TemporalOptions`` with the ``KEY=VALUE`` fields changed (values typed like the defaults)."""
    changes = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        default = getattr(TemporalOptions(), key)
        changes[key] = type(default)(value)
    return dataclasses.replace(TemporalOptions(), **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="heavy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--photos", nargs="+", default=["kodim05", "kodim08", "kodim13"],
                        help="Kodak photos, one per seed (cycled)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--strip", help="write a frame strip (JPEG) of the first clip here")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a TemporalOptions field for this run, e.g. radius=3 or interpolation=linear")
    parser.add_argument("--cache", type=Path, help="folder keeping each clip's single-frame results, reused by "
                                                   "later runs (the network then runs once per clip)")
    args = parser.parse_args()
    temporal_options = temporal_options_from(args.option)
    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.split("x"))
    texture = read_uint8_rgb(KODAK / "kodim23.png")
    model, name = derain.load_model()
    derain_batch = frame_derainer(model, name, InferenceOptions(working_side="auto"), torch.device("cpu"))
    print(f"temporal options: {temporal_options}")
    print(f"model {name}; {args.frames} frames of {width}x{height}; preset {args.preset}; PSNR/SSIM: matlab-y; "
          "flicker: mean |output change - clean change| between consecutive frames, 0-255")
    print("object: mean absolute error on the moving disc (and 2 px around it), single-frame -> temporal")
    print(f"{'clip':18s} {'rainy':>22s} {'single-frame':>22s} {'temporal':>22s}   gain dB  flicker cut  object")
    totals = []
    for k, seed in enumerate(args.seeds):
        photo_name = args.photos[k % len(args.photos)]
        spec = ClipSpec(frames=args.frames, width=width, height=height, preset=args.preset, seed=seed)
        rainy, clean = make_clip(read_uint8_rgb(KODAK / f"{photo_name}.png"), spec, texture)
        started = time.perf_counter()
        cached = args.cache / f"{name}_{photo_name}_{args.preset}_{seed}_{args.frames}_{width}x{height}.npy" \
            if args.cache else None
        from_cache = cached is not None and cached.is_file()
        if from_cache:
            single = list(np.load(cached))
        else:
            single = [derain_batch([f])[0] for f in rainy]  # one at a time
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, np.stack(single))
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        temporal = [f.pixels for f in derain_frames((Frame(s, i, i) for i, s in enumerate(single)), lambda b: b,
                                                    temporal=True, temporal_options=temporal_options)]
        temporal_s = time.perf_counter() - started
        scores = [score_clip(c, clean) for c in (rainy, single, temporal)]
        gain, cut = scores[2].psnr - scores[1].psnr, 1 - scores[2].flicker / scores[1].flicker
        objects = (object_error(single, clean, spec), object_error(temporal, clean, spec))
        totals.append((scores, gain, cut, objects))
        cells = " ".join(f"{s.psnr:6.2f}/{s.ssim:.4f}/{s.flicker:5.2f}" for s in scores)
        print(f"{photo_name} seed {seed:<3d}    {cells}   {gain:+6.2f}  {100 * cut:5.1f}%  "
              f"{objects[0]:5.2f} -> {objects[1]:5.2f}   "
              f"(network {'cached' if from_cache else f'{single_s / args.frames:.3f} s/frame'}, "
              f"temporal {temporal_s / args.frames:.3f} s/frame)")
        if args.strip and k == 0:
            picks = [round(args.frames * f) for f in (0.3, 0.45, 0.6, 0.75)]
            sheet = strip([rainy, single, temporal, clean], picks, spec, width=640)
            sheet.save(args.strip, quality=85)
            print(f"frame strip: {args.strip} ({Path(args.strip).stat().st_size // 1024} KB); rows: rainy, "
                  f"single-frame, temporal, clean; frames {picks}")
    mean = [np.mean([t[0][i].psnr for t in totals]) for i in range(3)]
    flick = [np.mean([t[0][i].flicker for t in totals]) for i in range(3)]
    print(f"mean PSNR rainy {mean[0]:.2f}, single {mean[1]:.2f}, temporal {mean[2]:.2f} ({mean[2] - mean[1]:+.2f} dB); "
          f"flicker single {flick[1]:.2f}, temporal {flick[2]:.2f} ({100 * (1 - flick[2] / flick[1]):.1f}% less); "
          f"moving object error single {np.mean([t[3][0] for t in totals]):.2f}, temporal "
          f"{np.mean([t[3][1] for t in totals]):.2f}")


if __name__ == "__main__":
    main()
