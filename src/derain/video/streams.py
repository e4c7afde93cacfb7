"""Reading and writing video streams with PyAV: probe, decode to RGB frames, encode, copy the other streams.

Nothing here knows about rain: :func:`transcode` hands decoded frames to a function that returns frames, and
writes what it gets back with the input's timestamps, while the audio and subtitle packets are copied as they
are (never re-encoded). PyAV is optional (``pip install "derain[video]"``); it is imported on first use.
"""
from __future__ import annotations

import fractions
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from derain.errors import DerainError

# Containers ``derain run`` recognises as video by their suffix (it points them to ``derain video``).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                  ".wmv", ".flv", ".3gp", ".ogv")
# Encoders tried, in order, when the user names none: H.264 plays everywhere.
DEFAULT_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")


def require_av():
    """The ``av`` module, or one clear line saying how to install it."""
    try:
        import av
    except ImportError:
        raise DerainError('video needs PyAV, which is not installed: pip install "derain[video]"') from None
    return av


def looks_like_video(path: str | Path) -> bool:
    """Whether ``path`` is named like a video container."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoInfo:
    """What :func:`probe` learnt about a video file."""

    path: Path
    width: int
    height: int
    frames: int  # frames the container says it holds (0: unknown)
    rate: fractions.Fraction  # average frame rate (frames per second)
    time_base: fractions.Fraction
    duration: float  # seconds (0: unknown)
    start_time: float  # the video stream's first timestamp in seconds (often 0)
    stream_duration: float  # the video stream's own duration in seconds, as its header says (0: unknown)
    codec: str
    pix_fmt: str
    rotation: int  # display rotation in degrees (metadata, the pixels are stored unrotated)
    copied_streams: int  # audio and subtitle streams that will be copied


@dataclass
class Frame:
    """One decoded frame: RGB pixels and its presentation timestamp (in the input stream's time base)."""

    pixels: np.ndarray  # H x W x 3 uint8
    pts: int
    index: int
    keep: bool = True  # False: a margin frame, read so the temporal filter sees its neighbours, not written


def _open_input(path: Path):
    av = require_av()
    if not path.is_file():
        raise DerainError(f"no such file: {path}")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise DerainError(f"cannot read {path} as a video ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for an error, without the errno and file name PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().rstrip(".").lower() or type(exc).__name__


def _copyable(stream) -> bool:
    return stream.type in ("audio", "subtitle")


def probe(path: str | Path) -> VideoInfo:
    """Open ``path``, check it holds a decodable video stream, decode its first frame; one clear line if not."""
    av = require_av()
    path = Path(path)
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise DerainError(f"{path} holds no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DerainError(f"{path}: its video codec cannot be decoded by this FFmpeg build")
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.error.FFmpegError as exc:
            raise DerainError(f"cannot decode the video of {path} ({_reason(exc)})") from None
        if first is None:
            raise DerainError(f"{path} holds no decodable video frame (empty or damaged)")
        rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(25)
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else 0.0)
        return VideoInfo(path=path, width=first.width, height=first.height, frames=int(stream.frames or 0),
                         rate=fractions.Fraction(rate), time_base=stream.time_base, duration=duration,
                         start_time=float(stream.start_time * stream.time_base) if stream.start_time else 0.0,
                         stream_duration=_stream_duration(stream),
                         codec=stream.codec_context.name, pix_fmt=first.format.name,
                         rotation=int(round(getattr(first, "rotation", 0) or 0)),
                         copied_streams=sum(_copyable(s) for s in container.streams))
    finally:
        container.close()


def _stream_duration(stream) -> float:
    """The video stream's duration from its header: MP4 and MOV store it, Matroska as a DURATION tag."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return 0.0


def choose_encoder(name: str | None) -> str:
    """The encoder ``name`` if this PyAV build has it, or the first available of :data:`DEFAULT_CODECS`."""
    av = require_av()
    candidates = (name,) if name else DEFAULT_CODECS
    for candidate in candidates:
        try:
            codec = av.codec.Codec(candidate, "w")
        except Exception:  # PyAV raises several types for an unknown codec
            continue
        if codec.type != "video":
            raise DerainError(f"--codec {candidate} is a{'n' if codec.type[0] in 'aeiou' else ''} {codec.type} "
                              "encoder, not a video one")
        return candidate
    if name:
        raise DerainError(f"unknown or unavailable video encoder {name!r} (try libx264, mpeg4 or ffv1)")
    raise DerainError("this PyAV build has no H.264 or MPEG-4 encoder; pass --codec NAME")


def _output_pix_fmt(codec_name: str, wanted: str) -> str:
    """The input's pixel format where the encoder takes it (yuv444p stays yuv444p), else yuv420p or the
    encoder's first."""
    av = require_av()
    formats = [f.name for f in (av.codec.Codec(codec_name, "w").video_formats or [])]
    if not formats or wanted in formats:
        return wanted
    return "yuv420p" if "yuv420p" in formats else formats[0]


@dataclass
class EncodeSettings:
    """How the output video is encoded."""

    codec: str | None = None  # None: libx264 where available
    crf: int | None = None  # constant quality (x264/x265/vpx); None: 18 when no bitrate is given
    bitrate: int | None = None  # bits per second
    start: float = 0.0  # seconds into the input
    duration: float | None = None  # seconds from ``start`` (None: to the end)


def parse_bitrate(text: str) -> int:
    """``"2M"``, ``"800k"`` or ``"1500000"`` -> bits per second."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise DerainError(f"--bitrate expects bits per second such as 2M or 800k, got {text!r}") from None
    if value <= 0:
        raise DerainError(f"--bitrate must be positive, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Span:
    """The part of the input a run writes, in input seconds: frames with ``begin <= time < end`` (None: no
    limit). ``margin`` frames on each side beyond it are decoded and handed to ``process`` too, marked
    ``keep=False`` (the temporal filter needs a frame's neighbours), but not written. ``shift``: seconds taken
    off every timestamp written (``--start``: a piece of a clip starts at 0). ``whole``: the span runs to the
    end of the clip, so a clip that stops early is reported as truncated."""

    begin: float | None = None
    end: float | None = None
    margin: int = 0
    shift: float = 0.0
    whole_start: bool = True
    whole_end: bool = True


def span_of(settings: EncodeSettings, margin: int = 0) -> Span:
    """The :class:`Span` of ``--start``/``--duration``."""
    return Span(begin=settings.start or None,
                end=settings.start + settings.duration if settings.duration else None,
                margin=margin, shift=settings.start, whole_start=not settings.start,
                whole_end=not settings.duration)


def transcode(info: VideoInfo, output: Path, process: Callable[[Iterable[Frame]], Iterator[Frame]],
              settings: EncodeSettings, on_frame: Callable[[], None] | None = None, span: Span | None = None,
              metadata: dict[str, str] | None = None) -> int:
    """Decode ``info.path``, pass its frames through ``process`` and encode what it yields into ``output``.

    ``process`` may hold frames back (a temporal window) as long as it yields each frame once, in order, with
    its ``pts`` and ``keep``. ``span`` (default: from ``settings.start``/``duration``) says which frames are
    written; audio and subtitle packets whose time falls in it are copied, shifted like the video. Returns the
    number of frames written; any decoding problem is one clear line. The caller removes ``output`` if this
    raises.
    """
    av = require_av()
    span = span or span_of(settings)
    codec = choose_encoder(settings.codec)
    container = _open_input(info.path)
    try:
        out = av.open(str(output), mode="w")
    except (av.error.FFmpegError, ValueError) as exc:
        container.close()
        raise DerainError(f"cannot write {output} ({_reason(exc)}; name it .mp4, .mkv or .mov)") from None
    decoded = 0
    try:
        video = container.streams.video[0]
        copied = [s for s in container.streams if _copyable(s)]
        out_video = out.add_stream(codec, rate=info.rate)
        out_video.width, out_video.height = info.width, info.height
        out_video.pix_fmt = _output_pix_fmt(codec, info.pix_fmt)
        out_video.time_base = video.time_base
        out_video.codec_context.time_base = video.time_base
        options = {}
        if settings.bitrate:
            out_video.bit_rate = settings.bitrate
        elif codec in ("libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"):
            options["crf"] = str(18 if settings.crf is None else settings.crf)
        elif settings.crf is not None:
            raise DerainError(f"--crf applies to x264/x265/VP9/AV1 encoders, not {codec}; use --bitrate")
        out_video.options = options
        if info.rotation and hasattr(out_video, "set_display_rotation"):
            out_video.set_display_rotation(info.rotation)
        out_video.metadata.update({k: v for k, v in video.metadata.items() if k == "language"})
        out.metadata.update(metadata or {})
        mapping = {}
        for stream in copied:
            try:
                mapping[stream.index] = out.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError):  # e.g. a subtitle format this container cannot hold
                continue

        tb = video.time_base
        begin_pts = int(round(span.begin / tb)) if span.begin is not None else None
        end_pts = int(round(span.end / tb)) if span.end is not None else None
        shift_pts = int(round(span.shift / tb))
        if span.begin is not None:
            # Back far enough for the margin frames (a keyframe at or before the target; decoding runs forward).
            target = span.begin - (span.margin + 2) / float(info.rate) - (1.0 if span.margin else 0.0)
            if target > info.start_time:
                container.seek(int(target * 1e6), backward=True, any_frame=False)

        last_time = [0.0]  # seconds: the latest frame decoded

        def frames() -> Iterator[Frame]:
            nonlocal decoded
            streams = [video] + [s for s in copied if s.index in mapping]
            last_pts = -1
            before: deque = deque(maxlen=span.margin)  # (pts, av frame) just before the span
            after = 0  # margin frames read after the span
            video_done = False
            try:
                for packet in container.demux(streams):
                    if packet.stream.index != video.index:
                        if _in_span(packet, span):
                            _copy_packet(packet, mapping[packet.stream.index], span.shift, out)
                        elif video_done and packet.pts is not None and span.end is not None and \
                                float(packet.pts * packet.time_base) > span.end + 2.0:
                            return  # the streams are interleaved within far less than 2 s
                        continue
                    if video_done:
                        continue
                    for frame in packet.decode():
                        pts = frame.pts if frame.pts is not None else last_pts + 1
                        last_pts = pts
                        if begin_pts is not None and pts < begin_pts:
                            if span.margin:
                                before.append((pts, frame))
                            continue
                        while before:
                            early_pts, early = before.popleft()
                            decoded += 1
                            yield Frame(early.to_ndarray(format="rgb24"), early_pts - shift_pts, decoded - 1, False)
                        if end_pts is not None and pts >= end_pts:
                            if after >= span.margin:
                                video_done = True
                                break
                            after += 1
                            decoded += 1
                            yield Frame(frame.to_ndarray(format="rgb24"), pts - shift_pts, decoded - 1, False)
                            continue
                        decoded += 1
                        last_time[0] = float(pts * tb)
                        # The input's own timestamps (variable frame rate kept); a piece starts at 0.
                        yield Frame(frame.to_ndarray(format="rgb24"), pts - shift_pts, decoded - 1)
            except av.error.FFmpegError as exc:
                raise DerainError(f"{info.path} is damaged: decoding stopped after {decoded} frames "
                                  f"({_reason(exc)})") from None

        written = 0
        for item in process(frames()):
            if not item.keep:
                continue
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item.pixels), format="rgb24")
            frame.pts, frame.time_base = item.pts, tb
            for packet in out_video.encode(frame):
                out.mux(packet)
            written += 1
            if on_frame is not None:
                on_frame()
        for packet in out_video.encode(None):
            out.mux(packet)
        if written == 0:
            raise DerainError(f"no frames of {info.path} fall in the asked range (--start/--duration/--shard)")
        whole = span.whole_start and span.whole_end
        if whole and info.frames and decoded < info.frames:
            raise DerainError(f"{info.path} looks truncated: {decoded} of the {info.frames} frames its header "
                              "lists could be decoded")
        # Containers that do not count frames (Matroska) still say how long the video lasts.
        if span.whole_end and info.stream_duration and \
                last_time[0] - info.start_time + 2.0 / float(info.rate) < info.stream_duration:
            raise DerainError(f"{info.path} looks truncated: its video ends at {last_time[0] - info.start_time:.2f}"
                              f" s of the {info.stream_duration:.2f} s its header gives")
        return written
    finally:
        try:
            out.close()
        finally:
            container.close()


def _in_span(packet, span: Span) -> bool:
    """Whether an audio/subtitle ``packet`` belongs to ``span`` (each packet goes to exactly one piece)."""
    if packet.dts is None or packet.pts is None:  # demuxer flush packets carry nothing
        return False
    time = float(packet.pts * packet.time_base)
    return (span.begin is None or time >= span.begin) and (span.end is None or time < span.end)


def _copy_packet(packet, target, shift: float, out) -> None:
    """Mux an audio/subtitle ``packet`` into ``target``, its timestamps moved back by ``shift`` seconds like
    the video's."""
    if shift:
        delta = int(round(shift / packet.time_base))
        packet.pts -= delta
        packet.dts -= delta
    packet.stream = target
    out.mux(packet)


def write_frames(path: str | Path, frames: Iterable[np.ndarray], rate: int = 25, codec: str = "libx264",
                 lossless: bool = False, pts: list[int] | None = None, time_base: fractions.Fraction | None = None,
                 audio: bool = False, rotation: int = 0) -> Path:
    """Encode uint8 RGB ``frames`` into ``path`` (test clips, generated clips).

    ``lossless``: x264 at qp 0 in 4:4:4 (the clean and rainy clips of :mod:`derain.video.synthclip` keep their
    pixels up to the RGB -> YUV rounding); ``pts``: each frame's timestamp in ``time_base`` (a variable frame
    rate), default one per ``1 / rate``; ``audio``: a 440 Hz AAC tone as long as the video; ``rotation``:
    display rotation metadata.
    """
    av = require_av()
    frames = list(frames)
    if not frames:
        raise DerainError("no frames to write")
    time_base = time_base or fractions.Fraction(1, rate)
    pts = pts if pts is not None else [round(i / (rate * time_base)) for i in range(len(frames))]
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = w, h
        video.pix_fmt = "yuv444p" if lossless else "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        if lossless:
            video.options = {"qp": "0"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for pixels, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            seconds = float((pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)) * time_base)
            samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * 16000)) / 16000).astype(np.float32) * 0.2
            for start in range(0, len(samples), 1024):
                chunk = samples[start:start + 1024][None]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return Path(path)


def read_frames(path: str | Path) -> tuple[list[np.ndarray], list[float]]:
    """(uint8 RGB frames, their times in seconds) of the first video stream of ``path``."""
    container = _open_input(Path(path))
    try:
        frames, times = [], []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        return frames, times
    finally:
        container.close()


def refuse_videos(files: Iterable[Path]) -> None:
    """One clear line pointing to ``derain video`` when photo commands are given a video file."""
    for path in files:
        if looks_like_video(path):
            raise DerainError(f"{path} is a video; derain video {path} -o CLEAN{Path(path).suffix.lower()} "
                              "removes its rain frame by frame and keeps its sound")
