"""PSNR/SSIM protocols against the official MATLAB table, scikit-image and exact arithmetic."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.errors import DerainError
from derain.metrics import (PROTOCOLS, describe, psnr, psnr_ssim, rgb_to_y_matlab, ssim_gaussian,
                            ssim_skimage)


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _reference_rows(path):
    """(rainy, clean, psnr, ssim) rows and the MEAN row of rain100l_input_matlab_y.tsv."""
    rows, mean = [], None
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] == "MEAN":
            mean = (int(fields[1]), float(fields[2]), float(fields[3]))
        else:
            rows.append((fields[0], fields[1], float(fields[2]), float(fields[3])))
    return rows, mean


@lru_cache(maxsize=None)
def _load_pairs(root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    return tuple((_rgb(root / f"rainy/rain-{i:03d}.png"), _rgb(root / f"clean/norain-{i:03d}.png"))
                 for i in range(1, 6))


@pytest.fixture
def rain100l_pairs(shared):
    """The first five real Rain100L (rainy, clean) pairs (read once per session)."""
    return _load_pairs(shared("data/rain100l"))


def test_matlab_y_reproduces_the_official_table_on_all_of_rain100l(shared):
    rows, mean = _reference_rows(shared("reference/rain100l_input_matlab_y.tsv"))
    root = shared("data/rain100l")
    assert len(rows) == 100 and mean is not None and mean[0] == 100
    psnrs, ssims, worst_p, worst_s = [], [], 0.0, 0.0
    for rainy, clean, ref_p, ref_s in rows:
        p, s = psnr_ssim(_rgb(root / "rainy" / rainy), _rgb(root / "clean" / clean), "matlab-y")
        worst_p, worst_s = max(worst_p, abs(p - ref_p)), max(worst_s, abs(s - ref_s))
        psnrs.append(p)
        ssims.append(s)
    # The table has 6 decimals, so agreement to its rounding means the same computation.
    assert worst_p < 1e-4, f"max PSNR deviation {worst_p:.2e} dB"
    assert worst_s < 1e-5, f"max SSIM deviation {worst_s:.2e}"
    assert np.mean(psnrs) == pytest.approx(mean[1], abs=5e-5)
    assert np.mean(ssims) == pytest.approx(mean[2], abs=5e-5)


def test_rgb_to_y_matches_exact_matlab_rounding():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    img[0, :3] = [[0, 0, 0], [255, 255, 255], [255, 0, 0]]
    weights = [Fraction("65.481"), Fraction("128.553"), Fraction("24.966")]

    def exact(r, g, b):
        y = 16 + (weights[0] * r + weights[1] * g + weights[2] * b) / 255
        return math.floor(y + Fraction(1, 2))  # MATLAB: half away from zero (y > 0)

    want = np.array([[exact(*map(int, px)) for px in row] for row in img])
    got = rgb_to_y_matlab(img)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] == 16 and got[0, 1] == 235 and got[0, 2] == 81
    grey = img[..., 0]
    assert rgb_to_y_matlab(grey) is grey  # grey images are used as they are
    with pytest.raises(DerainError, match="uint8"):
        rgb_to_y_matlab(img.astype(np.float32))


def test_skimage_rgb_matches_scikit_image_on_real_images(rain100l_pairs):
    metrics = pytest.importorskip("skimage.metrics")
    for rainy, clean in rain100l_pairs:
        p, s = psnr_ssim(rainy, clean, "skimage-rgb")
        assert p == pytest.approx(metrics.peak_signal_noise_ratio(clean, rainy), abs=1e-9)
        assert s == pytest.approx(metrics.structural_similarity(rainy, clean, channel_axis=2, data_range=255),
                                  abs=1e-9)
        # FSDerain calls it on [0, 1] floats with data_range=1: the same number.
        s01 = metrics.structural_similarity(rainy / 255.0, clean / 255.0, channel_axis=2, data_range=1.0)
        assert s == pytest.approx(s01, abs=1e-9)


def test_gaussian_ssim_matches_scikit_image_gaussian_mode(rain100l_pairs):
    # skimage with gaussian_weights, sigma 1.5 and population covariance is Wang's 11x11 'valid' SSIM.
    metrics = pytest.importorskip("skimage.metrics")
    rainy, clean = rain100l_pairs[0]
    y_rainy, y_clean = rgb_to_y_matlab(rainy), rgb_to_y_matlab(clean)
    want = metrics.structural_similarity(y_rainy.astype(float), y_clean.astype(float), data_range=255,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim_gaussian(y_rainy, y_clean) == pytest.approx(want, abs=1e-9)


def test_rgb_protocol_is_rgb_psnr_and_channel_mean_of_gaussian_ssim(rain100l_pairs):
    rainy, clean = rain100l_pairs[1]
    p, s = psnr_ssim(rainy, clean, "rgb")
    mse = np.mean((rainy.astype(float) - clean.astype(float)) ** 2)
    assert p == pytest.approx(10 * math.log10(255.0 ** 2 / mse), abs=1e-12)
    assert s == pytest.approx(np.mean([ssim_gaussian(rainy[..., c], clean[..., c]) for c in range(3)]))
    assert 0.0 < s < 1.0
    # Three different protocols, three different numbers.
    values = {proto: psnr_ssim(rainy, clean, proto) for proto in PROTOCOLS}
    assert len({v[1] for v in values.values()}) == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_identical_images_give_infinite_psnr_and_ssim_one(protocol, rain100l_pairs):
    clean = rain100l_pairs[0][1]
    p, s = psnr_ssim(clean, clean.copy(), protocol)
    assert p == math.inf
    assert s == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scores_are_symmetric_and_accept_grey(protocol, rain100l_pairs):
    rainy, clean = rain100l_pairs[2]
    assert psnr_ssim(rainy, clean, protocol) == pytest.approx(psnr_ssim(clean, rainy, protocol), rel=1e-12)
    p, s = psnr_ssim(rainy[..., 1], clean[..., 1], protocol)
    assert 10.0 < p < 60.0 and 0.0 < s < 1.0


def test_psnr_known_value_and_no_overflow():
    a = np.full((20, 20), 200, dtype=np.uint8)
    b = a + np.uint8(1)  # an error of 1 everywhere; uint8 arithmetic must not wrap inside psnr
    assert psnr(a, b) == pytest.approx(20 * math.log10(255.0))
    assert psnr(b, a) == psnr(a, b)
    assert psnr(a, a) == math.inf


def test_ssim_skimage_uses_sample_covariance():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, (32, 32)), 0, 255).astype(np.uint8)
    assert 0.0 < ssim_skimage(a, b) < 1.0
    assert ssim_skimage(a, a) == pytest.approx(1.0)


@pytest.mark.parametrize("pred,target,match", [
    (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 31, 3), np.uint8), "shape"),
    (np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32), "uint8"),
    (np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 4), np.uint8), "HxWx3"),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "11x11"),
    ([[0]], np.zeros((32, 32, 3), np.uint8), "numpy"),
])
def test_user_errors_raise_one_line_derain_errors(pred, target, match):
    with pytest.raises(DerainError, match=match) as info:
        psnr_ssim(pred, target)
    assert "\n" not in str(info.value)


def test_unknown_protocol_and_descriptions():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(DerainError, match="unknown metric protocol 'ycbcr'.*matlab-y"):
        psnr_ssim(img, img, "ycbcr")
    with pytest.raises(DerainError):
        describe("psnr")
    assert PROTOCOLS == ("matlab-y", "rgb", "skimage-rgb")
    texts = [describe(p) for p in PROTOCOLS]
    assert len(set(texts)) == 3 and all(t and "\n" not in t for t in texts)
    assert "rgb2ycbcr" in describe("matlab-y") and "7x7" in describe("skimage-rgb")


def test_rgb_to_y_rounds_exact_ties_up():
    # (15, 195, 75): 16 + (65.481*15 + 128.553*195 + 24.966*75) / 255 = 125.5 exactly -> 126, whatever a
    # float evaluation order would make of it.
    ties = [(r, g, b) for r in range(0, 256, 5) for g in range(256) for b in range(0, 256, 3)
            if (65481 * r + 128553 * g + 24966 * b) % 255000 == 127500]
    assert (15, 195, 75) in ties and len(ties) > 5
    img = np.array([ties], dtype=np.uint8)
    below = [16 + (65481 * r + 128553 * g + 24966 * b) // 255000 for r, g, b in ties]
    np.testing.assert_array_equal(rgb_to_y_matlab(img)[0], np.array(below) + 1)
    assert rgb_to_y_matlab(np.array([[[15, 195, 75]]], dtype=np.uint8))[0, 0] == 126
