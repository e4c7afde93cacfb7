"""Image files: exact 8-bit pixels, EXIF orientation, 16-bit depth, metadata kept, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from derain.errors import DerainError
from derain.files.imageio import expand_inputs, read_image, read_uint8_rgb, write_image


@pytest.fixture
def photo(shared):
    return shared("data/real-rain/1.jpg")


def test_reads_exact_pixels(shared):
    path = shared("data/rain100l/rainy/rain-001.png")
    expected = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(read_uint8_rgb(path), expected)
    image = read_image(path)
    assert image.bit_depth == 8 and image.pixels.dtype == np.float32
    assert np.array_equal(np.rint(image.pixels * 255).astype(np.uint8), expected)
    webp = shared("data/rain100l-train/rainy/rain-001.webp")
    assert read_uint8_rgb(webp).shape[2] == 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation, photo, tmp_path):
    source = Image.open(photo).convert("RGB").crop((0, 0, 64, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "RainCam"  # Make: must survive the round trip
    path = tmp_path / "oriented.png"
    source.save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    image = read_image(path)
    assert np.array_equal(np.rint(image.pixels * 255).astype(np.uint8), expected)

    out = tmp_path / "out.jpg"
    write_image(out, image.pixels, exif=image.exif)
    written = Image.open(out)
    assert written.size == (expected.shape[1], expected.shape[0])
    assert written.getexif().get(0x0112, 1) == 1  # already upright: viewers must not rotate it again
    assert written.getexif().get(0x010F) == "RainCam"


def test_sixteen_bit_png_keeps_its_depth(photo, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, size=(24, 32, 3)).astype(np.float32) / 65535.0
    path = write_image(tmp_path / "deep.png", pixels, bit_depth=16)
    image = read_image(path)
    assert image.bit_depth == 16
    assert np.abs(image.pixels - pixels).max() < 0.5 / 65535
    # 16-bit requested for a format without it: written at 8 bits, not refused
    jpg = write_image(tmp_path / "deep.jpg", pixels, bit_depth=16)
    assert read_image(jpg).bit_depth == 8


def test_icc_profile_is_kept(photo, tmp_path):
    icc = b"\x00" * 128 + b"fake-but-opaque-profile"
    image = read_image(photo)
    path = write_image(tmp_path / "x.png", image.pixels[:16, :16], icc_profile=icc)
    assert Image.open(path).info.get("icc_profile") == icc


def test_bad_files_fail_with_one_clear_line(photo, tmp_path):
    with pytest.raises(DerainError, match="not found"):
        read_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(DerainError, match="not an image"):
        read_image(text)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(photo.read_bytes()[:5000])
    with pytest.raises(DerainError, match="corrupt or truncated"):
        read_image(truncated)
    with pytest.raises(DerainError, match="unknown image format"):
        write_image(tmp_path / "x.xyz", np.zeros((4, 4, 3)))


def test_expand_inputs_files_folders_globs(tmp_path):
    for name in ("img10.png", "img2.png", "img1.png"):
        write_image(tmp_path / name, np.zeros((4, 4, 3)))
    (tmp_path / "readme.txt").write_text("not an image")
    assert [p.name for p in expand_inputs([tmp_path])] == ["img1.png", "img2.png", "img10.png"]
    assert [p.name for p in expand_inputs([str(tmp_path / "img1*.png")])] == ["img1.png", "img10.png"]
    both = expand_inputs([tmp_path / "img2.png", tmp_path])  # a file named twice is processed once
    assert [p.name for p in both] == ["img2.png", "img1.png", "img10.png"]
    with pytest.raises(DerainError, match="no such file"):
        expand_inputs([tmp_path / "nope.png"])
    with pytest.raises(DerainError, match="no images match"):
        expand_inputs([str(tmp_path / "*.jpg")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DerainError, match="no images"):
        expand_inputs([empty])
