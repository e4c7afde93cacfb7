"""Rain statistics without ground truth: rain is found, its angle, width and veil measured, distributions compared.

Angles follow ``derain.data.synth``: degrees from vertical, positive when the streak's lower end lies to the
right ('\\'), so synthetic rain drawn at +20 degrees must measure about +20, not -20.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from derain.data.rainstats import (ANALYSIS_SIDE, STAT_NAMES, RainStats, distribution_distance, rain_stats,
                                   stats_table, to_analysis_scale)
from derain.data.synth import preset, synthesize
from derain.files.imageio import read_uint8_rgb

LIGHT = preset("light")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture
def photo(shared) -> np.ndarray:
    """Kodak's kodim03 (caps: mostly smooth, little thin bright texture), 500 x 500 uint8."""
    return read_uint8_rgb(shared("data/clean/kodak24") / "kodim03.png")


def rainy(image: np.ndarray, config, seed: int = 0) -> np.ndarray:
    x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    y = synthesize(x, config, torch.Generator().manual_seed(seed), wrap=False)
    return y[0].permute(1, 2, 0).numpy()


def test_analysis_scale_fixes_the_shorter_side_and_accepts_uint8_or_float(photo):
    wide = np.ascontiguousarray(photo[:250])  # 250 x 500: enlarged to 320 x 640
    assert to_analysis_scale(wide).shape == (ANALYSIS_SIDE, 2 * ANALYSIS_SIDE, 3)
    assert to_analysis_scale(photo).shape == (ANALYSIS_SIDE, ANALYSIS_SIDE, 3)
    assert rain_stats(photo) == rain_stats(photo.astype(np.float32) / 255.0)
    with pytest.raises(ValueError):
        rain_stats(photo[..., 0])


def test_an_image_without_rain_has_no_density_and_undefined_streak_shape():
    stats = rain_stats(np.full((200, 300, 3), 0.4, np.float32))
    assert stats.density == 0.0 and math.isnan(stats.contrast) and math.isnan(stats.angle)
    assert math.isnan(stats.width) and math.isnan(stats.length)
    assert stats.veil == pytest.approx(0.4, abs=1e-3) and stats.brightness == pytest.approx(0.4, abs=1e-3)


def test_synthetic_rain_raises_density_far_above_the_clean_photo(photo):
    clean = rain_stats(photo)
    for seed in (0, 1):
        wet = rain_stats(rainy(photo, LIGHT, seed))
        assert wet.density > 4 * clean.density, (seed, clean.density, wet.density)
        assert wet.density > 0.03
        assert abs(wet.brightness - clean.brightness) < 0.05  # light rain hardly changes the mean level


@pytest.mark.parametrize("angle", [0.0, 20.0, -20.0])
def test_measured_angle_follows_the_synthetic_angle_with_its_sign(photo, angle):
    stats = rain_stats(rainy(photo, replace(LIGHT, angle=(angle, angle), angle_jitter=0.0)))
    assert abs(stats.angle - angle) < 2.5, stats.angle
    assert stats.angle_spread < 20.0  # one direction: a narrow spread of local orientations


def test_blown_rain_of_varied_directions_has_a_wider_spread(photo):
    straight = rain_stats(rainy(photo, replace(LIGHT, angle=(10.0, 10.0), angle_jitter=0.0)))
    varied = rain_stats(rainy(photo, replace(LIGHT, layers=4, angle=(10.0, 10.0), angle_jitter=30.0)))
    assert varied.angle_spread > straight.angle_spread + 3.0


def test_wider_and_longer_streaks_measure_wider_and_longer():
    flat = np.full((ANALYSIS_SIDE, 480, 3), 0.3, np.float32)  # already at the analysis scale: pixels = pixels
    base = replace(LIGHT, layers=1, angle=(0.0, 0.0), angle_jitter=0.0, blur=(0.0, 0.0), depth_gradient=(0.0, 0.0))
    thin = rain_stats(rainy(flat, replace(base, width=(1.2, 1.2), length=(30.0, 30.0))))
    wide = rain_stats(rainy(flat, replace(base, width=(3.0, 3.0), length=(30.0, 30.0))))
    long = rain_stats(rainy(flat, replace(base, width=(1.2, 1.2), length=(50.0, 50.0))))
    assert wide.width > thin.width + 0.8, (thin.width, wide.width)
    assert 25.0 < thin.length < 36.0 and 44.0 < long.length < 58.0, (thin.length, long.length)


def test_a_veil_raises_the_dark_channel(photo):
    clean = rain_stats(photo)
    veiled = rain_stats(photo.astype(np.float32) / 255.0 * 0.5 + 0.5)
    assert veiled.veil > clean.veil + 0.2
    assert veiled.brightness > clean.brightness


def test_the_heavy_preset_is_denser_and_hazier_than_the_light_one(photo):
    light = [rain_stats(rainy(photo, LIGHT, seed)) for seed in range(3)]
    heavy = [rain_stats(rainy(photo, preset("heavy"), seed)) for seed in range(3)]
    table_light, table_heavy = stats_table(light), stats_table(heavy)
    assert np.median(table_heavy["density"]) > np.median(table_light["density"])
    assert np.median(table_heavy["veil"]) > np.median(table_light["veil"])


def sample(n: int, seed: int) -> list[RainStats]:
    rng = np.random.default_rng(seed)
    return [RainStats(*rng.normal(1.0, 0.2, len(STAT_NAMES))) for _ in range(n)]


def test_stats_table_has_one_column_per_statistic():
    stats = sample(5, 0)
    table = stats_table(stats)
    assert set(table) == set(STAT_NAMES) and "angle_spread" in table
    assert table["density"].shape == (5,) and table["width"][3] == stats[3].width


def test_distribution_distance_is_zero_for_the_same_sample_and_counts_standard_deviations():
    real = sample(40, 1)
    same = distribution_distance(real, list(real))
    assert set(same) == set(STAT_NAMES) | {"mean"}
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())

    std = float(np.std(stats_table(real)["density"], ddof=1))
    shifted = [replace(s, density=s.density + 0.5 * std) for s in real]
    far = distribution_distance(real, shifted)
    assert far["density"] == pytest.approx(0.5)  # W1 of a shifted sample is the shift: half a std
    assert far["contrast"] == pytest.approx(0.0, abs=1e-12)
    assert far["mean"] == pytest.approx(0.5 / len(STAT_NAMES))
    assert distribution_distance(real, sample(40, 2))["mean"] > 0.0


def test_distribution_distance_leaves_out_undefined_values():
    real = sample(10, 3)
    synthetic = [replace(s, contrast=math.nan) for s in real[:5]] + real[5:]
    assert math.isfinite(distribution_distance(real, synthetic)["contrast"])
    assert math.isnan(distribution_distance(real, [replace(s, width=math.nan) for s in real])["width"])
