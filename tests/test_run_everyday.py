"""`derain run` as people use it every day: truncated files, transparency, animations, huge images, what made an
existing output, JPEG size, pipes, folder trees and machine-readable results (issue 38)."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.cli import main
from derain.files.imageio import read_provenance, read_uint8_rgb
from derain.weights import DEFAULT

SMALL = (72, 56)  # width, height: small enough for the bundled model to be quick, large enough to see rain


@pytest.fixture
def photo(shared, tmp_path) -> Path:
    """A crop of a real rainy JPEG, saved as a JPEG of its own (quality 80, 4:2:0)."""
    image = Image.open(shared("data/real-rain/15.jpg")).convert("RGB").crop((400, 300, 400 + SMALL[0], 300 + SMALL[1]))
    path = tmp_path / "in" / "photo.jpg"
    path.parent.mkdir()
    image.save(path, quality=80, subsampling=2)
    return path


def cli(*args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def truncated_png(path: Path, width: int = 64, height: int = 480, rows: int = 60) -> Path:
    """A well-formed PNG (every chunk and checksum right) whose image data holds only ``rows`` rows."""
    scanlines = b"".join(b"\0" + bytes([200]) * (3 * width) for _ in range(rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines))
                     + _chunk(b"IEND", b""))
    return path


def test_truncated_png_is_refused_and_nothing_written(tmp_path, capsys):
    src = truncated_png(tmp_path / "cut.png")
    code, _, err = cli(src, "-o", tmp_path / "out", "-q", capsys=capsys)
    assert code == 1
    assert "truncated" in err and "60 of 480 rows" in err
    assert not list((tmp_path / "out").glob("*"))


def test_whole_png_of_the_same_kind_is_accepted(tmp_path, capsys):
    src = truncated_png(tmp_path / "whole.png", height=40, rows=40)
    code, _, _ = cli(src, "-o", tmp_path / "out", "-q", capsys=capsys)
    assert code == 0 and (tmp_path / "out" / "whole.png").exists()


def test_too_many_pixels_names_the_count_and_the_option(photo, tmp_path, capsys):
    code, _, err = cli(photo, "-o", tmp_path / "out", "--max-pixels", "2000", "-q", capsys=capsys)
    assert code == 1
    assert "too many pixels" in err and "--max-pixels" in err and "72x56" in err
    assert "corrupt" not in err


def test_alpha_is_kept_for_png_and_reported_for_jpeg(photo, tmp_path, capsys):
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    alpha[:10] = 0
    src = tmp_path / "logo.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    code, _, err = cli(src, "-o", tmp_path / "out", "-q", capsys=capsys)
    assert code == 0
    out = Image.open(tmp_path / "out" / "logo.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    assert "transparency" not in err

    code, _, err = cli(src, "-o", tmp_path / "jpg", "--format", "jpg", "-q", capsys=capsys)
    assert code == 0 and "transparency dropped" in err and "--format png" in err


def test_missing_weights_fail_even_when_every_output_exists(photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(photo, "-o", out, "-q", capsys=capsys)[0] == 0
    code, _, err = cli(photo, "-o", out, "--weights", tmp_path / "missing.pth", "-q", capsys=capsys)
    assert code == 1 and "missing.pth" in err


def test_outputs_record_their_model_and_other_models_outputs_are_made_again(photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(photo, "-o", out, "--model", "fastderain-rain100l", "-q", capsys=capsys)[0] == 0
    result = out / "photo.jpg"
    first = read_provenance(result)
    assert first and "model=fastderain-rain100l" in first and "weights=" in first
    old = result.read_bytes()

    code, stdout, _ = cli(photo, "-o", out, "-q", capsys=capsys)  # the default model: another network
    assert code == 0 and "made again" in stdout
    assert f"model={DEFAULT} " in read_provenance(result) + " " and result.read_bytes() != old

    code, stdout, _ = cli(photo, "-o", out, "-q", capsys=capsys)  # the same model and weights: kept
    assert code == 0 and "skipped 1 existing" in stdout

    code, stdout, _ = cli(photo, "-o", out, "--model", "fastderain-rain100l", "--keep-existing", "-q",
                          capsys=capsys)
    assert code == 0 and "skipped 1 existing" in stdout and f"model={DEFAULT} " in read_provenance(result) + " "


def test_a_file_derain_did_not_make_is_never_replaced_without_overwrite(photo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "photo.jpg"
    Image.new("RGB", SMALL, "red").save(mine)
    before = mine.read_bytes()
    code, stdout, _ = cli(photo, "-o", out, "-q", capsys=capsys)
    assert code == 0 and "skipped 1 existing" in stdout and mine.read_bytes() == before


def test_animated_gif_is_refused_before_any_work(photo, tmp_path, capsys):
    frames = [Image.open(photo).convert("P"), Image.open(photo).transpose(Image.FLIP_LEFT_RIGHT).convert("P")]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0)
    for extra in ([], ["--format", "png"]):
        code, _, err = cli(src, "-o", tmp_path / "out", "-q", *extra, capsys=capsys)
        assert code == 1 and "animation (2 frames)" in err
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_still_gif_becomes_png(photo, tmp_path, capsys):
    src = tmp_path / "still.gif"
    Image.open(photo).convert("P").save(src)
    code, _, _ = cli(src, "-o", tmp_path / "out", "-q", capsys=capsys)
    assert code == 0 and (tmp_path / "out" / "still.png").exists()


def test_jpeg_output_keeps_the_input_encoding(photo, tmp_path, capsys):
    assert cli(photo, "-o", tmp_path / "out", "-q", capsys=capsys)[0] == 0
    result = tmp_path / "out" / "photo.jpg"
    src_image, out_image = Image.open(photo), Image.open(result)
    assert out_image.quantization == src_image.quantization
    from PIL import JpegImagePlugin
    assert JpegImagePlugin.get_sampling(out_image) == JpegImagePlugin.get_sampling(src_image) == 2
    assert result.stat().st_size < 1.5 * photo.stat().st_size

    assert cli(photo, "-o", tmp_path / "q", "--quality", "30", "--subsampling", "444", "-q", capsys=capsys)[0] == 0
    low = Image.open(tmp_path / "q" / "photo.jpg")
    assert JpegImagePlugin.get_sampling(low) == 0 and low.quantization != src_image.quantization


def test_stdin_to_stdout_in_the_input_format():
    # A subprocess, as in a shell pipe: cat photo.jpg | derain - -o - > clean.jpg
    src = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-rain" / "15.jpg"
    if not src.exists():
        pytest.skip("needs ../shared/data/real-rain/15.jpg")
    image = Image.open(src).convert("RGB").crop((0, 0, *SMALL))
    data = io.BytesIO()
    image.save(data, format="JPEG", quality=85)
    done = subprocess.run([sys.executable, "-m", "derain", "-", "-o", "-", "--threads", "1"], input=data.getvalue(),
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    result = Image.open(io.BytesIO(done.stdout))
    assert result.format == "JPEG" and result.size == SMALL
    assert b"wrote 1 image" in done.stderr

    done = subprocess.run([sys.executable, "-m", "derain", "-", "-o", "-", "--format", "png"],
                          input=data.getvalue(), capture_output=True, timeout=300)
    assert done.returncode == 0 and Image.open(io.BytesIO(done.stdout)).format == "PNG"


def test_stdin_needs_an_image(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, _, err = cli("-", "-o", "-", capsys=capsys)
    assert code == 1 and "stdin" in err


def test_recursive_mirrors_the_tree_with_a_name_suffix_and_json(photo, tmp_path, capsys):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.jpg").write_bytes(photo.read_bytes())
    (tree / "a" / "b" / "deep.jpg").write_bytes(photo.read_bytes())
    code, _, _ = cli(tree, "-o", tmp_path / "flat", "-q", capsys=capsys)
    assert code == 0 and sorted(p.name for p in (tmp_path / "flat").rglob("*.jpg")) == ["top.jpg"]

    out = tmp_path / "out"
    code, stdout, _ = cli(tree, "-o", out, "--recursive", "--suffix", "_derained", "--json", capsys=capsys)
    assert code == 0
    assert (out / "top_derained.jpg").exists() and (out / "a" / "b" / "deep_derained.jpg").exists()
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(Path(r["output"]).name for r in lines) == ["deep_derained.jpg", "top_derained.jpg"]
    assert {r["status"] for r in lines} == {"written"} and all(r["model"] == DEFAULT for r in lines)
    assert all(r["seconds"] > 0 for r in lines)

    code, stdout, _ = cli(tree, "-o", out, "--recursive", "--suffix", "_derained", "--json", capsys=capsys)
    assert code == 0 and {json.loads(line)["status"] for line in stdout.splitlines()} == {"skipped"}


def test_python_dash_m_derain_is_the_command():
    done = subprocess.run([sys.executable, "-m", "derain", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("derain ")


def test_bad_option_values_are_one_line(capsys, photo):
    for args in (["--quality", "0"], ["--threads", "0"], ["--max-pixels", "lots"]):
        with pytest.raises(SystemExit) as stop:
            main([str(photo), *args])
        assert stop.value.code == 2
        assert "expected" in capsys.readouterr().err
