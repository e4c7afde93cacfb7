"""A long video split by time between processes (``--shard I/N`` or ``torchrun``), and the pieces joined again.

Piece ``I`` of ``N`` derains the frames whose time falls in the ``I``-th of ``N`` equal time ranges of the clip
(or of its ``--start``/``--duration`` part) and the audio/subtitle packets of the same range, so every frame and
every packet lands in exactly one piece. A piece keeps the input's timestamps (it does not restart at 0) and is
encoded on its own, so it starts with a keyframe of its own: joining the pieces is copying their packets one
after the other, with no frame decoded or encoded again. In temporal mode a piece also derains ``radius``
frames beyond each end of its range (not written), so a frame next to a boundary is combined with the same
neighbours as in one unsplit run.

Each piece carries the container tag ``comment = "derain shard I/N"``; :func:`join_pieces` checks that the
pieces are one complete set and orders them by it, whatever order the shell lists them in.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from derain.errors import DerainError
from derain.files.outputs import refuse_existing
from derain.video.streams import EncodeSettings, Span, VideoInfo, require_av, span_of

TAG = "comment"
_TAG_TEXT = re.compile(r"^derain shard (\d+)/(\d+)$")


def shard_tag(shard: tuple[int, int]) -> dict[str, str]:
    """The container metadata that marks piece ``shard`` = (I, N)."""
    return {TAG: f"derain shard {shard[0]}/{shard[1]}"}


def piece_path(output: Path, shard: tuple[int, int]) -> Path:
    """Where piece (I, N) of ``output`` is written: ``clean.mp4`` -> ``clean.shard-1-of-4.mp4``."""
    return output.with_name(f"{output.stem}.shard-{shard[0]}-of-{shard[1]}{output.suffix}")


def shard_span(info: VideoInfo, settings: EncodeSettings, shard: tuple[int, int], margin: int) -> Span:
    """The :class:`Span` of piece ``shard`` = (I, N): the I-th of N equal time ranges of what the run covers."""
    whole = span_of(settings, margin)
    first = settings.start if settings.start else info.start_time
    clip_end = info.start_time + (info.stream_duration or info.duration)
    if not (info.stream_duration or info.duration):
        raise DerainError(f"{info.path}: its duration is unknown, so it cannot be split with --shard")
    last = min(clip_end, whole.end) if whole.end is not None else clip_end
    if last <= first:
        raise DerainError(f"no frames of {info.path} fall in the asked range (--start/--duration)")
    index, count = shard
    bounds = [first + (last - first) * k / count for k in range(count + 1)]
    # The outer ends stay as the run asked (open where it set no limit), so nothing before or after is lost.
    begin = whole.begin if index == 0 else bounds[index]
    end = whole.end if index == count - 1 else bounds[index + 1]
    return Span(begin=begin, end=end, margin=margin, shift=whole.shift,
                whole_start=whole.whole_start and index == 0, whole_end=whole.whole_end and index == count - 1)


@dataclass
class JoinReport:
    """What :func:`join_pieces` wrote."""

    output: Path
    pieces: int
    frames: int


def _piece_index(container, path: Path) -> tuple[int, int]:
    tags = {key.lower(): value for key, value in container.metadata.items()}  # Matroska writes COMMENT
    match = _TAG_TEXT.match(tags.get(TAG, ""))
    if not match:
        raise DerainError(f"{path} is not a piece written by derain video --shard (no '{TAG}' tag)")
    return int(match.group(1)), int(match.group(2))


def _layout(container) -> list[tuple]:
    """What must match between pieces for their packets to follow one another in one stream each."""
    return [(s.type, s.codec_context.name, s.time_base, bytes(s.codec_context.extradata or b""),
             getattr(s.codec_context, "width", None), getattr(s.codec_context, "height", None))
            for s in container.streams]


def join_pieces(pieces: list[Path], output: Path, overwrite: bool = False) -> JoinReport:
    """Join the pieces of one ``--shard`` run into ``output`` by copying their packets (nothing re-encoded).

    The pieces may be given in any order; they must be one complete set (0 .. N-1 of the same N) with the
    same streams. Written to a hidden file beside ``output`` and renamed when complete.
    """
    av = require_av()
    if not pieces:
        raise DerainError("--join needs the pieces to join")
    for piece in pieces:
        if not piece.is_file():
            raise DerainError(f"no such file: {piece}")
        if output.exists() and output.resolve() == piece.resolve():
            raise DerainError(f"output {output} is one of the pieces; choose another name with -o")
    if not output.suffix:
        raise DerainError(f"output {output} has no container suffix; name it like the pieces ({pieces[0].suffix})")
    refuse_existing([output], overwrite)
    if not output.parent.is_dir():
        raise DerainError(f"output folder {output.parent} does not exist")

    containers = []
    try:
        for piece in pieces:
            try:
                containers.append((av.open(str(piece)), piece))
            except av.error.FFmpegError as exc:
                raise DerainError(f"cannot read {piece} as a video ({exc})") from None
        indexed = sorted(((_piece_index(c, p), c, p) for c, p in containers), key=lambda item: item[0])
        count = indexed[0][0][1]
        found = [i for (i, n), _, _ in indexed]
        other = [path for (_, n), _, path in indexed if n != count]
        if other:
            raise DerainError(f"{other[0]} belongs to a split in other than {count} pieces")
        twice = sorted({i for i in found if found.count(i) > 1})
        if twice:
            raise DerainError(f"piece {twice[0]} of {count} is given twice")
        missing = sorted(set(range(count)) - set(found))
        if missing:
            raise DerainError(f"the pieces are not one complete set of {count}: missing "
                              + ", ".join(map(str, missing)))
        reference = _layout(indexed[0][1])
        for _, container, path in indexed[1:]:
            if _layout(container) != reference:
                raise DerainError(f"{path} was encoded differently from {indexed[0][2]} (other streams, codec, "
                                  "size or settings); its packets cannot follow them without re-encoding")
        partial = output.with_name(f".{output.stem}.partial{output.suffix}")
        try:
            frames = _copy_packets([(c, p) for _, c, p in indexed], partial)
            os.replace(partial, output)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        for container, _ in containers:
            container.close()
    return JoinReport(output=output, pieces=count, frames=frames)


def _copy_packets(pieces: list, partial: Path) -> int:
    """Mux every packet of ``pieces`` (open containers, in order) into ``partial``; returns the video frames."""
    av = require_av()
    first = pieces[0][0]
    try:
        out = av.open(str(partial), mode="w")
    except (av.error.FFmpegError, ValueError) as exc:
        raise DerainError(f"cannot write {partial.with_name(partial.name[1:].replace('.partial', ''))} "
                          f"({exc})") from None
    frames = 0
    try:
        targets = [out.add_stream_from_template(s) for s in first.streams]
        for source, target in zip(first.streams, targets):
            if source.type == "video" and source.average_rate:
                # The template carries the codec, not the frame rate: without it Matroska records its
                # millisecond tick (1000 fps) as the clip's rate.
                target.codec_context.framerate = source.average_rate
        last_dts: dict[int, int] = {}
        last_video_pts = None
        stores_no_dts = "matroska" in first.format.name
        for container, path in pieces:
            piece_first_pts = None
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None:  # the demuxer's flush packets carry nothing
                    continue
                index = packet.stream.index
                if packet.stream.type == "video":
                    if piece_first_pts is None:
                        piece_first_pts = packet.pts
                        if last_video_pts is not None and packet.pts <= last_video_pts:
                            raise DerainError(f"{path} overlaps the piece before it in time")
                    frames += 1
                # Each piece's encoder started its decode times a frame or two before its first frame; keep
                # them increasing across the seam (a decode time may come earlier than its presentation time).
                if stores_no_dts and packet.stream.type == "video":
                    # Matroska keeps no decode times: the ones its demuxer guesses do not continue across pieces,
                    # so leave them all to the muxer, which derives them from the presentation times.
                    packet.dts = None
                elif packet.dts is not None:
                    if index in last_dts and packet.dts <= last_dts[index]:
                        packet.dts = min(last_dts[index] + 1, packet.pts)
                    last_dts[index] = packet.dts
                if packet.stream.type == "video":
                    last_video_pts = packet.pts if last_video_pts is None else max(last_video_pts, packet.pts)
                packet.stream = targets[index]
                try:
                    out.mux(packet)
                except av.error.FFmpegError as exc:
                    raise DerainError(f"cannot join {path} after the piece before it ({exc})") from None
    finally:
        out.close()
    return frames
