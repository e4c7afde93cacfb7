"""derain video: the round trip through real encoded clips (frames, timestamps, audio, rotation), the temporal
combination, the synthetic clips, and one clear line for every bad input."""
from __future__ import annotations

import fractions
import os
import sys
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="derain video needs PyAV: pip install -e '.[video]' (in the dev extra)")

from derain.cli import main  # noqa: E402
from derain.errors import DerainError  # noqa: E402
from derain.video.score import flicker, score_clip  # noqa: E402
from derain.video.streams import Frame, read_frames, require_av, write_frames  # noqa: E402
from derain.video.synthclip import ClipSpec, make_clip  # noqa: E402
from derain.video.temporal import TemporalOptions, temporal_filter  # noqa: E402


def _photo(seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """A smooth, textured stand-in photo (no data needed): gradients and a few blobs."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * xs + c) * np.cos(4 * ys - c) for c in range(3)], axis=2)
    base += 0.05 * rng.standard_normal((h, w, 1))
    return np.clip(base * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def rainy_clip(tmp_path, one_thread) -> Path:
    """8 rainy frames of 64x48 at 25 fps with an AAC track and a 90-degree display rotation."""
    spec = ClipSpec(frames=8, width=64, height=48, preset="heavy", seed=1, object_speed=8.0)
    rainy, _ = make_clip(_photo(), spec)
    return write_frames(tmp_path / "rainy.mp4", rainy, rate=25, audio=True, rotation=90)


def _streams(path: Path) -> dict:
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        audio = [(s.codec_context.name, s.sample_rate) for s in c.streams.audio]
        audio_packets = sum(1 for p in c.demux(*c.streams.audio) if p.dts is not None) if c.streams.audio else 0
    with av.open(str(path)) as c:
        frames = [(float(f.time), f.rotation, f.width, f.height) for f in c.decode(video=0)]
    return {"frames": frames, "audio": audio, "audio_packets": audio_packets, "codec": video.codec_context.name}


@pytest.mark.parametrize("temporal", [True, False])
def test_round_trip_keeps_frames_timestamps_audio_and_rotation(rainy_clip, tmp_path, temporal, capsys):
    out = tmp_path / "clean.mp4"
    args = ["video", str(rainy_clip), "-o", str(out), "-q"] + ([] if temporal else ["--no-temporal"])
    assert main(args) == 0
    assert f"8 frames, {'temporal' if temporal else 'single-frame'}" in capsys.readouterr().out
    before, after = _streams(rainy_clip), _streams(out)
    assert len(after["frames"]) == 8
    assert after["frames"] == before["frames"]  # same times (so same duration and rate), rotation and size
    assert after["frames"][0][1] == 90
    assert after["audio"] == before["audio"] == [("aac", 16000)]
    assert after["audio_packets"] == before["audio_packets"] > 0  # copied packet for packet
    assert not list(tmp_path.glob(".*partial*"))
    # The rain went down: the output is closer to the clean frames than the input.
    rainy, _ = read_frames(rainy_clip)
    derained, _ = read_frames(out)
    spec = ClipSpec(frames=8, width=64, height=48, preset="heavy", seed=1, object_speed=8.0)
    _, clean = make_clip(_photo(), spec)
    assert score_clip(derained, clean, "rgb").psnr > score_clip(rainy, clean, "rgb").psnr + 3


def test_variable_frame_rate_and_a_piece_of_the_clip(tmp_path, one_thread):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)]
    stamps = [0, 40, 80, 200, 240, 400]  # milliseconds: a gap, as phones write when the light drops
    src = write_frames(tmp_path / "vfr.mkv", frames, pts=stamps, time_base=fractions.Fraction(1, 1000))
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), "-o", str(out), "-q", "--no-temporal"]) == 0
    _, times = read_frames(out)
    assert times == pytest.approx([s / 1000 for s in stamps])
    piece = tmp_path / "piece.mp4"
    assert main(["video", str(src), "-o", str(piece), "-q", "--start", "0.07", "--duration", "0.2"]) == 0
    _, times = read_frames(piece)
    assert times == pytest.approx([0.01, 0.13, 0.17])  # the frames at 80, 200 and 240 ms, moved by the start


def test_existing_output_needs_overwrite(rainy_clip, tmp_path, capsys):
    out = tmp_path / "clean.mp4"
    out.write_bytes(b"mine")
    assert main(["video", str(rainy_clip), "-o", str(out), "-q"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main(["video", str(rainy_clip), "-o", str(out), "-q", "--no-temporal", "--overwrite"]) == 0
    assert len(read_frames(out)[0]) == 8


def _one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("derain: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_bad_inputs_give_one_line_and_leave_nothing(rainy_clip, tmp_path, capsys):
    out = tmp_path / "out" / "clean.mp4"
    out.parent.mkdir()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 50)
    assert main(["video", str(not_video), "-o", str(out), "-q"]) == 1
    _one_error_line(capsys, "cannot read", "notes.mp4")

    truncated = tmp_path / "truncated.mkv"  # Matroska streams its frames: a cut file still opens
    whole = write_frames(tmp_path / "whole.mkv", [_photo(i, 48, 64) for i in range(12)], audio=True)
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["video", str(truncated), "-o", str(out), "-q", "--no-temporal"]) == 1
    _one_error_line(capsys, "truncated")

    cut_mp4 = tmp_path / "cut.mp4"  # MP4 keeps its index at the end: a cut file does not open
    cut_mp4.write_bytes(rainy_clip.read_bytes()[: rainy_clip.stat().st_size // 2])
    assert main(["video", str(cut_mp4), "-o", str(out), "-q"]) == 1
    _one_error_line(capsys, "cut.mp4")

    sound_only = tmp_path / "sound.m4a"
    with av.open(str(rainy_clip)) as src, av.open(str(sound_only), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert main(["video", str(sound_only), "-o", str(out), "-q"]) == 1
    _one_error_line(capsys, "no video stream")

    assert main(["video", str(rainy_clip), "-o", str(out), "-q", "--codec", "no-such-codec"]) == 1
    _one_error_line(capsys, "no-such-codec")
    assert main(["video", str(rainy_clip), "-o", str(out), "-q", "--codec", "aac"]) == 1
    _one_error_line(capsys, "audio encoder")

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["video", str(rainy_clip), "-o", str(blocker / "clean.mp4"), "-q"]) == 1
    _one_error_line(capsys, "does not exist")
    assert main(["video", str(rainy_clip), "-o", str(out.with_suffix(".nosuchformat")), "-q"]) == 1
    _one_error_line(capsys, "cannot write")
    assert main(["video", str(rainy_clip), "-o", str(rainy_clip), "-q", "--overwrite"]) == 1
    _one_error_line(capsys, "the input itself")
    assert list(out.parent.iterdir()) == []  # no output, no partial file


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(rainy_clip, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    assert main(["video", str(rainy_clip), "-o", str(folder / "clean.mp4"), "-q"]) == 1
    _one_error_line(capsys, "not writable")


def test_failure_midway_removes_the_partial_output(rainy_clip, tmp_path, monkeypatch):
    import derain.video.job as job_module

    calls = {"n": 0}
    real = job_module.frame_derainer

    def failing(*args, **kwargs):
        run = real(*args, **kwargs)

        def once(frames):
            calls["n"] += len(frames)
            if calls["n"] >= 5:
                raise DerainError("simulated failure at frame 5")
            return run(frames)
        return once

    monkeypatch.setattr(job_module, "frame_derainer", failing)
    out = tmp_path / "clean.mp4"
    with pytest.raises(DerainError, match="frame 5"):
        job_module.derain_video(job_module.VideoJob(input=rainy_clip, output=out, quiet=True))
    assert not out.exists() and not list(tmp_path.glob(".clean*"))


def test_photo_commands_point_videos_to_derain_video(rainy_clip, tmp_path, capsys):
    assert main([str(rainy_clip), "-o", str(tmp_path / "out")]) == 1
    _one_error_line(capsys, "derain video")


def test_missing_pyav_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails, as without the extra
    with pytest.raises(DerainError, match=r'pip install "derain\[video\]"'):
        require_av()


def _moving_square(frames: int, streak_at: int | None = None) -> list[Frame]:
    """A textured background with a red square moving 6 px per frame; optionally, in one frame, the faint streak
    a network leaves of heavy rain."""
    background = _photo(3, 64, 96)
    clip = []
    for t in range(frames):
        pixels = background.copy()
        pixels[20:36, 10 + 6 * t:26 + 6 * t] = [250, 30, 30]
        if t == streak_at:
            pixels[5:60, 70] = np.minimum(pixels[5:60, 70].astype(int) + 40, 255)
        clip.append(Frame(pixels, t * 10, t))
    return clip


def test_temporal_removes_a_streak_of_one_frame_without_ghosting_a_moving_object():
    clip = _moving_square(7, streak_at=3)
    out = list(temporal_filter(clip, TemporalOptions(radius=2)))
    assert [f.index for f in out] == list(range(7)) and [f.pts for f in out] == [f.pts for f in clip]
    centre = out[3].pixels.astype(int)
    reference = _moving_square(7)[3].pixels.astype(int)
    # The streak (present in frame 3 only) is gone; the moving square is where it is, unsmeared.
    assert np.abs(clip[3].pixels[5:60, 70].astype(int) - reference[5:60, 70]).mean() > 30
    assert np.abs(centre[5:60, 70] - reference[5:60, 70]).mean() < 8
    square = (slice(20, 36), slice(28, 44))
    assert np.abs(centre[square] - reference[square]).max() <= 8
    behind = (slice(20, 36), slice(10, 26))  # where the square was two frames earlier: no trail
    assert np.abs(centre[behind] - reference[behind]).mean() < 10


def test_flicker_and_synthetic_clips():
    spec = ClipSpec(frames=4, width=64, height=48, preset="light", seed=5)
    rainy, clean = make_clip(_photo(), spec)
    again, _ = make_clip(_photo(), spec)
    assert all(np.array_equal(a, b) for a, b in zip(rainy, again))  # same seed, same clip
    assert not np.array_equal(rainy[1] - clean[1], rainy[2] - clean[2])  # new rain in every frame
    assert all(r.shape == (48, 64, 3) and r.dtype == np.uint8 for r in rainy)
    assert flicker(clean, clean) == 0.0
    assert flicker(rainy, clean) > 1.0
    assert not np.array_equal(clean[0], clean[3])  # the camera moves


def _audio_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [round(float(p.pts * p.time_base), 4) for p in c.demux(*c.streams.audio) if p.dts is not None]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])  # MP4 stores decode times, Matroska does not
def test_two_shards_joined_give_every_frame_once_with_the_sound(tmp_path, one_thread, capsys, suffix):
    spec = ClipSpec(frames=12, width=64, height=48, preset="heavy", seed=2, object_speed=6.0)
    rainy, _ = make_clip(_photo(1), spec)
    src = write_frames(tmp_path / f"rainy{suffix}", rainy, rate=25, audio=True)
    lossless = ["--codec", "libx264", "--crf", "0"]  # exact pixels: the seam can be compared with one run
    whole = tmp_path / f"whole{suffix}"
    assert main(["video", str(src), "-o", str(whole), "-q", *lossless]) == 0
    out = tmp_path / f"clean{suffix}"
    for i in (1, 0):  # any order
        assert main(["video", str(src), "-o", str(out), "-q", "--shard", f"{i}/2", *lossless]) == 0
    pieces = [tmp_path / f"clean.shard-0-of-2{suffix}", tmp_path / f"clean.shard-1-of-2{suffix}"]
    assert [len(read_frames(p)[0]) for p in pieces] == [6, 6]
    assert "piece 0 of 2" in capsys.readouterr().out
    assert not out.exists()

    assert main(["video", "--join", str(pieces[1]), str(pieces[0]), "-o", str(out)]) == 0  # order from the tags
    assert "12 frames from 2 pieces" in capsys.readouterr().out
    frames, times = read_frames(out)
    _, source_times = read_frames(src)
    assert times == pytest.approx(source_times)  # every frame once, in order, at its own time
    assert _audio_times(out) == _audio_times(src) and len(_audio_times(src)) > 5  # every audio packet once
    # The temporal filter saw the same neighbours at the seam as in one run: the same pixels, frame by frame.
    one_run, _ = read_frames(whole)
    assert all(np.array_equal(a, b) for a, b in zip(frames, one_run))

    assert main(["video", "--join", str(pieces[0]), "-o", str(tmp_path / "j.mp4")]) == 1
    _one_error_line(capsys, "missing 1")
    assert main(["video", "--join", str(pieces[0]), str(pieces[0]), "-o", str(tmp_path / "j.mp4")]) == 1
    _one_error_line(capsys, "piece 0 of 2 is given twice")
    assert main(["video", "--join", str(src), "-o", str(tmp_path / "j.mp4")]) == 1
    _one_error_line(capsys, "not a piece")
    assert main(["video", "--join", *map(str, pieces), "-o", str(out)]) == 1
    _one_error_line(capsys, "already exists")
    assert not (tmp_path / "j.mp4").exists() and not list(tmp_path.glob(".*partial*"))


def test_torchrun_environment_picks_the_piece(rainy_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["video", str(rainy_clip), "-o", str(tmp_path / "clean.mp4"), "-q", "--no-temporal"]) == 0
    frames, times = read_frames(tmp_path / "clean.shard-1-of-2.mp4")
    assert len(frames) == 4 and times[0] == pytest.approx(0.16)  # the second half of 8 frames at 25 fps


def test_frames_derained_in_batches_match_one_at_a_time(one_thread):
    import torch

    import derain
    from derain.inference.restore import InferenceOptions
    from derain.video.job import derain_frames, frame_derainer

    model, name = derain.load_model()
    # A working side below the frame's: the batch also goes through the downscale-and-back path.
    run = frame_derainer(model, name, InferenceOptions(working_side=32), torch.device("cpu"))
    spec = ClipSpec(frames=5, width=64, height=48, preset="heavy", seed=4)
    rainy, _ = make_clip(_photo(2), spec)
    alone = [run([f])[0] for f in rainy]
    out = list(derain_frames((Frame(f, 10 * i, i) for i, f in enumerate(rainy)), run, temporal=False, batch=3))
    assert [f.pts for f in out] == [0, 10, 20, 30, 40]  # every frame once, in order (a batch of 3, then of 2)
    assert max(int(np.abs(a.astype(int) - b.pixels.astype(int)).max()) for a, b in zip(alone, out)) <= 1
    assert all(np.abs(a.astype(int) - r.astype(int)).mean() > 1 for a, r in zip(alone, rainy))  # derained
