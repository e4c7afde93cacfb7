"""The small public API: ``derain.derain`` with the bundled model, uint8 images, and bad arrays."""
from __future__ import annotations

import numpy as np
import pytest

import derain
from derain.errors import DerainError
from derain.imageio import read_image
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
