"""Make a rainy test clip with ground truth from a clean photo (docs/video.md).

Writes OUT (the rainy clip) and OUT_clean (the same clip without rain): a slow pan and zoom over the photo,
optionally a textured disc crossing it, and synthetic rain from ``derain.data.synth`` that falls anew in every
frame. Both are x264 at qp 0 in 4:4:4, so scoring a derained copy against the clean clip measures the
deraining, not the codec. Needs the video extra (``pip install -e ".[video]"``).

    python scripts/make_rain_clip.py ../shared/data/clean/kodak24/kodim05.png -o rainy.mp4 --preset heavy --audio
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from derain.data.synth import PRESETS
from derain.errors import DerainError
from derain.files.imageio import read_uint8_rgb
from derain.files.outputs import refuse_existing
from derain.video.streams import write_frames
from derain.video.synthclip import ClipSpec, make_clip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", help="clean photo (e.g. a Kodak image; never CBSD68 for rain)")
    parser.add_argument("-o", "--output", required=True, help="rainy clip to write (.mp4 or .mkv)")
    parser.add_argument("--preset", default="heavy", choices=sorted(PRESETS))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0, help="same seed, same clip")
    parser.add_argument("--texture", help="photo the moving disc is cut from (default: the photo, mirrored)")
    parser.add_argument("--no-object", action="store_true", help="no moving object, only the camera moves")
    parser.add_argument("--audio", action="store_true", help="add a quiet 440 Hz tone (to check it is kept)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        out = Path(args.output)
        clean_out = out.with_name(f"{out.stem}_clean{out.suffix}")
        refuse_existing([out, clean_out], args.overwrite)
        spec = ClipSpec(frames=args.frames, width=width, height=height, preset=args.preset, seed=args.seed,
                        moving_object=not args.no_object)
        texture = read_uint8_rgb(args.texture) if args.texture else None
        rainy, clean = make_clip(read_uint8_rgb(args.photo), spec, texture)
        write_frames(out, rainy, rate=args.fps, lossless=True, audio=args.audio)
        write_frames(clean_out, clean, rate=args.fps, lossless=True, audio=args.audio)
    except (DerainError, ValueError) as exc:
        print(f"make_rain_clip: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {clean_out} ({args.frames} frames of {width}x{height}, {args.preset} rain)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
