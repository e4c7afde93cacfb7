"""``derain video``: derain one video (or join the pieces of a sharded run)."""
from __future__ import annotations

import argparse
from pathlib import Path

from derain.commands import inference_options
from derain.errors import DerainError
from derain.files.outputs import parse_shard


def main(args: argparse.Namespace) -> int:
    """``derain video``: derain one video (or join the pieces of a sharded run)."""
    from derain.video import VideoJob, derain_video
    from derain.video.shard import join_pieces
    from derain.video.streams import EncodeSettings, parse_bitrate
    if args.join:
        if args.input or args.shard:
            raise DerainError("--join takes only the pieces and -o; give no VIDEO and no --shard")
        joined = join_pieces([Path(p) for p in args.join], Path(args.output), args.overwrite)
        print(f"derain: wrote {joined.output} ({joined.frames} frames from {joined.pieces} pieces, "
              "packets copied)")
        return 0
    if not args.input:
        raise DerainError("derain video needs a VIDEO to derain (or --join PIECE ...)")
    encode = EncodeSettings(codec=args.codec, crf=args.crf, start=args.start, duration=args.duration,
                            bitrate=parse_bitrate(args.bitrate) if args.bitrate else None)
    job = VideoJob(input=Path(args.input), output=Path(args.output), model=args.model, weights=args.weights,
                   device=args.device, options=inference_options(args), temporal=args.temporal, encode=encode,
                   overwrite=args.overwrite, quiet=args.quiet,
                   shard=parse_shard(args.shard) if args.shard else None, batch=args.batch)
    report = derain_video(job)
    mode = "temporal" if report.temporal else "single-frame"
    mode += f", piece {report.shard[0]} of {report.shard[1]}" if report.shard else ""
    print(f"derain: wrote {report.output} ({report.frames} frames, {mode}, "
          f"{report.frames / max(report.seconds, 1e-9):.2f} frames/s)")
    return 0
