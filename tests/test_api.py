"""The small public API: ``derain.derain`` with the bundled model, uint8 images, and bad arrays."""
from __future__ import annotations

import io

import numpy as np
import pytest

import derain
from derain.errors import DerainError
from derain.files.imageio import read_image
from derain.metrics import psnr_ssim


@pytest.fixture
def crop(shared) -> tuple[np.ndarray, np.ndarray]:
    """A 96x160 crop of a Rain100L pair (rainy, clean) as float32 in [0, 1]."""
    data = shared("data/rain100l")
    rainy = read_image(data / "rainy" / "rain-001.png").pixels[100:196, 200:360]
    clean = read_image(data / "clean" / "norain-001.png").pixels[100:196, 200:360]
    return rainy, clean


def test_bundled_model_by_default_and_uint8_in_uint8_out(crop):
    rainy, clean = crop
    model, name = derain.load_model()
    out = derain.derain(rainy)
    assert out.dtype == np.float32 and out.shape == rainy.shape
    np.testing.assert_array_equal(out, derain.derain(rainy, model, name))  # the same network as load_model()
    def score(x):
        return psnr_ssim(np.rint(x * 255).astype(np.uint8), np.rint(clean * 255).astype(np.uint8))[0]
    assert score(out) > score(rainy) + 3  # it removed rain
    out8 = derain.derain(np.rint(rainy * 255).astype(np.uint8))
    assert out8.dtype == np.uint8 and out8.shape == rainy.shape
    assert np.abs(out8.astype(np.float64) - np.rint(out * 255)).max() <= 1


@pytest.mark.parametrize("image, message", [
    (np.zeros((32, 32), np.float32), "HxWx3"),
    (np.zeros((32, 32, 4), np.float32), "HxWx3"),
    (np.zeros((32, 32, 3), np.int64), "uint8 or floats"),
    (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
])
def test_bad_arrays_are_one_clear_error(image, message):
    with pytest.raises(DerainError, match=message):
        derain.derain(image)


# --- issue 38: what users pass, and what they get back ---------------------------------------------------------
# Tiny images (48 x 40) through the bundled default model: the API's plumbing, not the network, is under test.
H, W = 40, 48


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A 40x48 RGB uint8 image with edges and smooth areas (a gradient, a bright bar, some noise)."""
    rng = np.random.default_rng(38)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x / W, y / H, 0.5 + 0.0 * x], axis=2)
    base[10:14, :, :] = 0.95
    return np.rint(np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(picture) -> np.ndarray:
    """The uint8 result of the plain array call, which every other way of passing the picture must match."""
    return derain.derain(picture)


def test_float_images_outside_0_1_are_refused_with_what_to_do(picture):
    # The common idiom np.asarray(img).astype(np.float32) gives 0..255 floats: it used to come back all white.
    as_255 = picture.astype(np.float32)
    with pytest.raises(DerainError, match=r"\[0, 1\].*255.*value_range"):
        derain.derain(as_255)
    with pytest.raises(DerainError, match=r"\[0, 1\]"):
        derain.derain(as_255 / 127.5 - 1.0)  # [-1, 1], the other common normalisation


def test_value_range_declares_the_scale_of_float_images(picture):
    unit = derain.derain(picture.astype(np.float32) / 255.0)
    out = derain.derain(picture.astype(np.float32), value_range=255)
    assert out.dtype == np.float32 and out.max() > 2  # given back on the scale it came in
    np.testing.assert_allclose(out / 255.0, unit, atol=1e-5)
    signed = derain.derain(picture.astype(np.float32) / 127.5 - 1.0, value_range=(-1, 1))
    np.testing.assert_allclose((signed + 1.0) / 2.0, unit, atol=1e-5)
    with pytest.raises(DerainError, match="value_range"):
        derain.derain(picture.astype(np.float32) * 2, value_range=255)  # values beyond the declared range
    with pytest.raises(DerainError, match="value_range"):
        derain.derain(picture, value_range=255)  # uint8 has its own range: saying another one is a mistake


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 32, 3), (32, 0, 3), (2, 0, 0, 3)])
def test_an_empty_image_is_one_clear_error(shape):
    with pytest.raises(DerainError, match="no pixels"):
        derain.derain(np.zeros(shape, np.uint8))


def test_an_empty_pil_image_is_one_clear_error():
    from PIL import Image
    with pytest.raises(DerainError, match="no pixels"):
        derain.derain(Image.new("RGB", (0, 0)))


def test_a_missing_path_says_so(tmp_path):
    with pytest.raises(DerainError, match="not found.*nothing.png"):
        derain.derain(str(tmp_path / "nothing.png"))


def test_a_path_or_its_bytes_are_derained(picture, expected, tmp_path):
    from PIL import Image
    path = tmp_path / "photo.png"
    Image.fromarray(picture).save(path)
    for source in (str(path), path):
        out = derain.derain(source)
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (W, H)
        np.testing.assert_array_equal(np.asarray(out), expected)
    data = derain.derain(path.read_bytes())
    assert isinstance(data, bytes)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG"  # the input's own format
    np.testing.assert_array_equal(np.asarray(decoded), expected)


def test_jpeg_bytes_come_back_as_jpeg_with_their_own_tables(picture):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=70, subsampling=2)
    source = Image.open(io.BytesIO(buffer.getvalue()))
    result = Image.open(io.BytesIO(derain.derain(buffer.getvalue())))
    assert result.format == "JPEG" and result.size == (W, H)
    assert result.quantization == source.quantization  # written as the input was, not at another quality
    assert not np.array_equal(np.asarray(result), np.asarray(source))  # and derained


def test_a_truncated_file_is_refused(picture, tmp_path):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    with pytest.raises(DerainError, match="cannot read image"):
        derain.derain(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    with pytest.raises(DerainError, match="not an image"):
        derain.derain(b"this is not an image at all")


def test_pil_images_come_back_as_pil_in_their_own_mode(picture, expected):
    from PIL import Image
    rgb = Image.fromarray(picture)
    out = derain.derain(rgb)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), expected)

    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    rgba = Image.fromarray(np.dstack([picture, alpha]), "RGBA")
    out = derain.derain(rgba)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)  # the transparency is kept as it was
    np.testing.assert_array_equal(np.asarray(out)[..., :3], expected)  # the colour is derained as RGB

    grey = rgb.convert("L")
    out = derain.derain(grey)
    assert out.mode == "L" and out.size == (W, H)
    grey_rgb = derain.derain(np.repeat(np.asarray(grey)[..., None], 3, axis=2))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Image.fromarray(grey_rgb).convert("L")))

    out = derain.derain(grey.convert("LA"))
    assert out.mode == "LA"

    out = derain.derain(rgb.convert("P"))  # a palette of 256 colours cannot hold the result: RGB comes back
    assert out.mode == "RGB" and out.size == (W, H)

    sixteen = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    out = derain.derain(sixteen)
    assert out.mode == "I;16" and np.abs(np.asarray(out).astype(np.int64) // 257
                                          - np.asarray(derain.derain(grey))).max() <= 1


def test_pil_keeps_the_colour_profile(picture):
    from PIL import Image, ImageCms
    rgb = Image.fromarray(picture)
    rgb.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert derain.derain(rgb).info.get("icc_profile") == rgb.info["icc_profile"]


def test_a_batch_and_a_list_are_each_image_derained(picture, expected):
    from PIL import Image
    flipped = np.ascontiguousarray(picture[::-1])
    batch = derain.derain(np.stack([picture, flipped]))
    assert batch.shape == (2, H, W, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], expected)
    np.testing.assert_array_equal(batch[1], derain.derain(flipped))
    results = derain.derain([picture, Image.fromarray(flipped)])
    assert isinstance(results, list) and len(results) == 2
    np.testing.assert_array_equal(results[0], expected)
    assert isinstance(results[1], Image.Image)
    np.testing.assert_array_equal(np.asarray(results[1]), batch[1])
    assert derain.derain([]) == []


@pytest.mark.parametrize("thing, message", [(42, "int"), ({"a": 1}, "dict"), ([[1, 2, 3]], "list")])
def test_other_things_are_refused_naming_what_is_accepted(thing, message):
    with pytest.raises(DerainError, match=f"{message}.*PIL"):
        derain.derain(thing)


def test_device_and_threads(picture, expected):
    import torch
    before = torch.get_num_threads()
    np.testing.assert_array_equal(derain.derain(picture, device="cpu", threads=1), expected)
    assert torch.get_num_threads() == before  # the caller's setting is given back
    with pytest.raises(DerainError, match="threads"):
        derain.derain(picture, threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(DerainError, match="no CUDA GPU"):
            derain.derain(picture, device="cuda")


def test_a_session_loads_once_and_needs_no_name(picture, expected):
    session = derain.Session()  # the bundled default model
    assert session.name == derain.load_model()[1] and session.size_multiple >= 1
    np.testing.assert_array_equal(session(picture), expected)
    np.testing.assert_array_equal(derain.derain(picture, session), expected)
    # A model loaded elsewhere needs no name beside it: the network says what it needs.
    model, name = derain.load_model()
    np.testing.assert_array_equal(derain.derain(picture, model), derain.derain(picture, model, name))
    np.testing.assert_array_equal(derain.Session(model)(picture), expected)
    # By registry name and weights, as `derain run --model ... --weights ...`.
    from derain.weights import default_checkpoint
    named = derain.Session(model=name, weights=default_checkpoint())
    np.testing.assert_array_equal(named(picture), expected)
    with pytest.raises(DerainError, match="unknown model"):
        derain.Session(model="no-such-model")
    with pytest.raises(DerainError, match="unknown option"):
        derain.Session(tiles=3)


def test_a_network_that_declares_no_size_multiple_needs_a_name(picture):
    from torch import nn
    with pytest.raises(DerainError, match="size_multiple"):
        derain.derain(picture, nn.Conv2d(3, 3, 3, padding=1))


def test_every_registry_network_declares_the_size_multiple_of_the_registry():
    from derain.models import build, list_specs
    for spec in list_specs():
        net = build(spec.name).eval()
        assert net.size_multiple == spec.size_multiple, spec.name


def test_restore_pads_to_what_the_network_declares():
    import torch
    from torch import nn

    from derain.inference.restore import InferenceOptions, restore

    seen: list[tuple[int, int]] = []  # outside the module: restore runs a prepared copy of it

    class Recorder(nn.Module):
        size_multiple = 16

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return x * self.scale

    restore(Recorder(), torch.rand(1, 3, 40, 48), 8, InferenceOptions(tile=0, fast=False))  # the caller's 8: too small
    assert seen == [(48, 48)]
