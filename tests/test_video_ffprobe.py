"""What derain video writes plays in FFmpeg's own tools: ffprobe counts the input's frames, duration (to one
frame) and audio in it, and ffmpeg decodes it without an error (issue 39). Skips where FFmpeg's programs are
not installed (`apt-get install ffmpeg`; .ci/run installs them)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="derain video needs PyAV: pip install -e '.[video]' (in the dev extra)")
if not (shutil.which("ffprobe") and shutil.which("ffmpeg")):
    pytest.skip("FFmpeg's programs (ffprobe, ffmpeg) are not installed: apt-get install ffmpeg",
                allow_module_level=True)

from derain.cli import main  # noqa: E402
from derain.video.streams import write_frames  # noqa: E402
from derain.video.synthclip import ClipSpec, make_clip  # noqa: E402


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    return np.clip(np.stack([0.5 + 0.4 * np.sin(6 * xs + c) * np.cos(4 * ys - c) for c in range(3)], 2) * 255,
                   0, 255).astype(np.uint8)


def ffprobe(path: Path) -> dict:
    """ffprobe's view of ``path``: per stream its type, codec, frames it decoded and duration; the container's."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams",
                          "-show_format", str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _video(info: dict) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def _audio(info: dict) -> list[tuple[str, str]]:
    return [(s["codec_name"], s["sample_rate"]) for s in info["streams"] if s["codec_type"] == "audio"]


def _decodes_cleanly(path: Path) -> str:
    """ffmpeg's complaints while decoding every stream of ``path`` (empty: none)."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True,
                          text=True)
    return done.stderr.strip() if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("pieces", [1, 2])
def test_output_plays_with_the_inputs_frames_duration_and_sound(tmp_path, one_thread, suffix, pieces):
    rainy, _ = make_clip(_photo(), ClipSpec(frames=14, width=64, height=48, preset="heavy", seed=3))
    src = write_frames(tmp_path / f"rainy{suffix}", rainy, rate=25, audio=True)
    out = tmp_path / f"clean{suffix}"
    if pieces == 1:
        assert main(["video", str(src), "-o", str(out), "-q"]) == 0
    else:  # derained in two pieces by time and joined without re-encoding
        for i in range(pieces):
            assert main(["video", str(src), "-o", str(out), "-q", "--shard", f"{i}/{pieces}"]) == 0
        parts = [tmp_path / f"clean.shard-{i}-of-{pieces}{suffix}" for i in range(pieces)]
        assert main(["video", "--join", *map(str, parts), "-o", str(out)]) == 0

    before, after = ffprobe(src), ffprobe(out)
    assert int(_video(after)["nb_read_frames"]) == int(_video(before)["nb_read_frames"]) == 14
    frame = 1 / 25
    assert abs(float(after["format"]["duration"]) - float(before["format"]["duration"])) <= frame + 1e-6
    assert _audio(after) == _audio(before) != []
    assert (_video(after)["width"], _video(after)["height"]) == (64, 48)
    assert _video(after)["avg_frame_rate"] == _video(before)["avg_frame_rate"]
    assert _decodes_cleanly(out) == ""
