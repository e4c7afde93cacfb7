"""NIQE against the reference table, the MATLAB resize it depends on, and its basic behaviour."""
from __future__ import annotations

import hashlib
import math
import time
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from derain.errors import DerainError
from derain.metrics import niqe, rgb_to_y_matlab
from derain.metrics.niqe import imresize_half


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _reference(shared) -> list[tuple[str, tuple[int, int], float]]:
    rows = []
    for line in shared("reference/niqe_reference.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, size, value = line.split("\t")
            w, h = (int(v) for v in size.split("x"))
            rows.append((name, (w, h), float(value)))
    return rows


def test_niqe_reproduces_every_line_of_the_reference_table(shared):
    rows = _reference(shared)
    assert len(rows) == 16
    deviations = {}
    for name, (w, h), want in rows:
        img = _rgb(shared(f"data/{name}"))
        assert img.shape[:2] == (h, w), f"{name}: the table's WxH is the file's own size"
        deviations[name] = niqe(img) - want
    worst = max(deviations, key=lambda k: abs(deviations[k]))
    assert abs(deviations[worst]) < 1e-3, f"{worst}: off by {deviations[worst]:+.2e}"
    # The table has 6 decimals and we reproduce its float32 arithmetic, so lines agree to its rounding.
    # One line may flip a 0.001 grid step on exotic hardware; a systematic difference moves many
    # (a float64 pipeline is off by up to 9e-3 on 13 lines, another resize summation order on 6).
    loose = {k: f"{v:+.1e}" for k, v in deviations.items() if abs(v) > 1e-5}
    assert len(loose) <= 1, f"lines off by more than 1e-5: {loose}"


def _matlab_imresize_half_f64(img: np.ndarray) -> np.ndarray:
    """Independent float64 MATLAB imresize(img, 0.5): dense antialiased-bicubic matrices, mirrored taps."""
    def cubic(x):
        ax = np.abs(x)
        return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                        np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))

    def matrix(n):
        m = np.zeros((math.ceil(n / 2), n))
        for i in range(m.shape[0]):
            u = (i + 1) / 0.5 + 0.5 * (1 - 1 / 0.5)  # 1-based MATLAB coordinates
            taps = np.arange(math.floor(u - 4), math.floor(u - 4) + 10)
            weights = 0.5 * cubic(0.5 * (u - taps))
            weights /= weights.sum()
            for t, wt in zip(taps, weights):
                j = t - 1
                j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)  # symmetric edges
                m[i, j] += wt
        return m

    return matrix(img.shape[0]) @ img @ matrix(img.shape[1]).T


def test_imresize_half_is_matlab_bicubic_with_antialiasing():
    rng = np.random.default_rng(0)
    img = rng.random((96, 192)).astype(np.float32)
    got = imresize_half(img)
    assert got.shape == (48, 96) and got.dtype == np.float32
    np.testing.assert_allclose(got, _matlab_imresize_half_f64(img.astype(np.float64)), atol=2e-7)
    # Antialiasing: a pixel-level checkerboard averages out instead of aliasing into a pattern.
    checker = (np.indices((96, 96)).sum(axis=0) % 2).astype(np.float32)
    assert np.ptp(imresize_half(checker)[4:-4, 4:-4]) < 0.05
    # Linear ramps are reproduced in the interior: output i sits at input 2i + 0.5.
    ramp = np.tile(np.arange(96, dtype=np.float32), (96, 1))
    np.testing.assert_allclose(imresize_half(ramp)[:, 4:-4], (2 * np.arange(48) + 0.5)[4:-4][None].repeat(48, 0),
                               atol=1e-4)


def test_rgb_niqe_is_niqe_of_the_matlab_y_plane_and_uses_whole_blocks(shared):
    img = _rgb(shared("data/real-rain/1.jpg"))  # 600x407 -> 6x4 blocks: 576x384 used
    value = niqe(img)
    assert niqe(rgb_to_y_matlab(img)) == value
    assert niqe(img[:384, :576].copy()) == value
    assert niqe(img[:384, :480].copy()) != value


def test_niqe_ranks_distortions_worse_than_the_clean_photo(shared):
    clean = _rgb(shared("data/clean/kodak24/kodim01.png"))
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(clean).resize((125, 125), Image.BILINEAR).resize((500, 500),
                                                                                          Image.BILINEAR))
    base = niqe(clean)
    assert 2.0 < base < 6.0
    assert niqe(noisy) > base + 2.0
    assert niqe(blurred) > base + 2.0


def test_niqe_is_fast_enough_for_vga(shared):
    img = np.asarray(Image.open(shared("data/real-rain/3.jpg")).convert("RGB").resize((640, 480)))
    niqe(img)  # warm the cached model and gamma tables
    start = time.perf_counter()
    value = niqe(img)
    assert math.isfinite(value)
    assert time.perf_counter() - start < 1.0


def test_flat_images_have_no_niqe_and_flat_blocks_are_skipped():
    assert math.isnan(niqe(np.full((192, 192, 3), 128, np.uint8)))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (192, 288), dtype=np.uint8)
    img[:96, :96] = 50
    assert math.isfinite(niqe(img))


@pytest.mark.parametrize("img,match", [
    (np.zeros((192, 192, 3), np.float32), "uint8"),
    (np.zeros((192, 192, 4), np.uint8), "HxWx3"),
    (np.zeros((95, 500, 3), np.uint8), "two 96x96 blocks"),
    (np.zeros((96, 96, 3), np.uint8), "two 96x96 blocks"),
    ([[1, 2]], "uint8"),
])
def test_bad_inputs_raise_derain_errors(img, match):
    with pytest.raises(DerainError, match=match):
        niqe(img)


def test_package_ships_the_standard_pristine_model(shared):
    shipped = resources.files("derain.metrics").joinpath("niqe_pris_params.npz").read_bytes()
    reference = shared("reference/niqe_pris_params.npz").read_bytes()
    assert hashlib.sha256(shipped).digest() == hashlib.sha256(reference).digest()
    with np.load(resources.files("derain.metrics").joinpath("niqe_pris_params.npz")) as params:
        assert params["mu_pris_param"].shape == (1, 36) and params["cov_pris_param"].shape == (36, 36)
        assert params["gaussian_window"].sum() == pytest.approx(1.0)
