"""Synthetic rain: reproducible, additive where it should be, streaks along the angle, Rain100L-like statistics."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from derain.cli import main
from derain.data.synth import PRESETS, RainConfig, line_kernels, preset, sample_rain, synthesize
from derain.files.imageio import read_uint8_rgb, write_image

LIGHT = preset("light")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def clean_batch(b: int = 4, size: int = 96) -> torch.Tensor:
    """Smooth, mid-grey images that leave room for the rain to brighten them."""
    ramp = torch.linspace(0.1, 0.6, size)
    return (ramp[None, None, :, None] * torch.ones(b, 3, size, size)).contiguous()


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def streak_angle(streaks: torch.Tensor) -> float:
    """Dominant streak direction of a 2-D map in degrees from vertical, positive for '\\'.

    The structure tensor with exact (spectral) derivatives, summed over the image by Parseval: finite
    differences are anisotropic on one-pixel lines and bias the angle by several degrees.
    """
    power = torch.fft.fft2(streaks.double() - streaks.double().mean()).abs() ** 2
    fy = torch.fft.fftfreq(streaks.shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(streaks.shape[1], dtype=torch.float64)[None, :]
    jxx, jyy, jxy = float((power * fx * fx).sum()), float((power * fy * fy).sum()), float((power * fx * fy).sum())
    gradient = 0.5 * math.atan2(2 * jxy, jxx - jyy)  # gradients point across the streaks
    angle = math.degrees(math.atan2(-math.sin(gradient), math.cos(gradient)))
    return (angle + 90) % 180 - 90


@pytest.mark.parametrize("name", list(PRESETS))
def test_same_seed_same_rain_other_seed_other_rain(name):
    x = clean_batch()
    a = synthesize(x, preset(name), generator(3))
    b = synthesize(x, preset(name), generator(3))
    c = synthesize(x, preset(name), generator(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float((a - x).abs().mean()) > 1e-3  # there is rain


def test_shape_dtype_and_size_are_kept_for_odd_sizes():
    x = torch.rand(2, 3, 37, 101, dtype=torch.float64)
    for wrap in (True, False):
        y = synthesize(x, LIGHT, generator(0), wrap=wrap)
        assert y.shape == x.shape and y.dtype == torch.float64
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_additive_rain_only_brightens_and_is_grey():
    x = clean_batch()
    rain = sample_rain(4, 96, 96, LIGHT, generator(1))
    y = synthesize(x, LIGHT, generator(1))
    assert float((y - x).min()) >= 0.0
    assert torch.allclose(y, (x + rain.streaks).clamp(0, 1))  # the exposed rain layer is what was added
    assert float(rain.streaks.min()) >= 0.0 and float(rain.streaks.max()) <= 1.0


def test_veil_and_screen_mode_stay_in_range():
    config = replace(PRESETS["heavy"], veil_probability=1.0, mode="screen")
    x = torch.rand(3, 3, 64, 64, generator=generator(0))
    y = synthesize(x, config, generator(2))
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert float(y.mean()) > float(x.mean())  # haze towards bright airlight, plus streaks


@pytest.mark.parametrize("angle", [-25.0, 0.0, 10.0, 30.0])
def test_streaks_follow_the_angle(angle):
    config = replace(LIGHT, angle=(angle, angle), angle_jitter=0.0, density=(0.002, 0.002),
                     depth_gradient=(0.0, 0.0))
    streaks = sample_rain(1, 192, 192, config, generator(5)).streaks[0, 0]
    assert abs(streak_angle(streaks) - angle) < 1.5
    kernel = line_kernels(torch.tensor(30.0), torch.tensor(1.5), torch.tensor(angle), torch.tensor(0.0), 41)
    assert abs(streak_angle(kernel) - angle) < 1.0


def test_density_is_monotonic_in_rainy_pixels():
    fractions = []
    for density in (0.0002, 0.0006, 0.002, 0.006):
        config = replace(LIGHT, density=(density, density))
        streaks = sample_rain(4, 96, 96, config, generator(7)).streaks
        fractions.append(float((streaks > 0.05).float().mean()))
    assert all(a < b for a, b in zip(fractions, fractions[1:])), fractions


def test_presets_and_config_validation():
    assert set(PRESETS) >= {"light", "heavy"}
    with pytest.raises(ValueError, match="unknown rain preset"):
        preset("drizzle")
    with pytest.raises(ValueError, match="range"):
        RainConfig(length=(40.0, 20.0))
    with pytest.raises(ValueError, match="mode"):
        RainConfig(mode="multiply")  # type: ignore[arg-type]


def residual_stats(rainy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """(mean, 99th percentile, fraction > 0.1) of the grey residual rainy - clean of uint8 images."""
    r = (rainy.astype(np.float32) - clean.astype(np.float32)).mean(axis=2) / 255.0
    return np.array([r.mean(), np.percentile(r, 99), (r > 0.1).mean()])


def test_light_preset_matches_rain100l_residual_statistics(shared):
    root = shared("data/rain100l-train")
    cleans = sorted((root / "clean").glob("norain-*"))[::10]  # 20 of the 200 training pairs
    gen = generator(0)
    real, synthetic = [], []
    for path in cleans:
        clean = read_uint8_rgb(path)
        rainy = read_uint8_rgb(root / "rainy" / path.name.replace("norain-", "rain-"))
        real.append(residual_stats(rainy, clean))
        x = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        y = synthesize(x, LIGHT, gen)[0].permute(1, 2, 0).numpy()
        synthetic.append(residual_stats(np.rint(y * 255.0).astype(np.uint8), clean))
    ratio = np.mean(synthetic, axis=0) / np.mean(real, axis=0)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), f"synthetic / real (mean, p99, frac>0.1): {ratio}"


@pytest.fixture
def clean_dir(tmp_path) -> Path:
    folder = tmp_path / "clean"
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        write_image(folder / name, rng.uniform(0.1, 0.5, (48, 64, 3)))
    return folder


def run_cli(*args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_skips_and_overwrites(clean_dir, tmp_path, capsys):
    out = tmp_path / "rainy"
    code, stdout, err = run_cli("synth", clean_dir, "-o", out, "--seed", 1, capsys=capsys)
    assert code == 0, err
    assert "wrote 2" in stdout and sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    clean, rainy = read_uint8_rgb(clean_dir / "a.png"), read_uint8_rgb(out / "a.png")
    assert rainy.shape == clean.shape and (rainy.astype(int) - clean.astype(int)).min() >= 0
    assert (rainy != clean).any()
    stamp = (out / "a.png").stat().st_mtime_ns
    code, stdout, _ = run_cli("synth", clean_dir, "-o", out, "--seed", 1, capsys=capsys)
    assert code == 0 and "wrote 0" in stdout and "skipped 2" in stdout
    assert (out / "a.png").stat().st_mtime_ns == stamp
    code, stdout, _ = run_cli("synth", clean_dir / "a.png", "-o", out, "--seed", 1, "--overwrite", capsys=capsys)
    assert code == 0 and "wrote 1" in stdout
    assert np.array_equal(read_uint8_rgb(out / "a.png"), rainy)  # same seed and name: same rain


def test_cli_count_names_versions_and_presets_differ(clean_dir, tmp_path, capsys):
    out = tmp_path / "rainy"
    code, _, err = run_cli("synth", clean_dir / "a.png", "-o", out, "--count", 2, "--preset", "heavy",
                           capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_1.png", "a_2.png"]
    assert not np.array_equal(read_uint8_rgb(out / "a_1.png"), read_uint8_rgb(out / "a_2.png"))


@pytest.mark.parametrize("args, message", [
    (["missing.png"], "no such file or folder"),
    (["{clean}/a.png", "--count", "0"], "--count"),
])
def test_cli_errors_are_one_line(args, message, clean_dir, tmp_path, capsys):
    args = [a.format(clean=clean_dir) for a in args]
    code, _, err = run_cli("synth", *args, "-o", tmp_path / "out", capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("derain: error:") and message in lines[0], err


def test_the_command_line_offers_every_rain_preset(tmp_path):
    # The torch-free names the CLI offers are the ones the code defines (derain synth --preset dense was
    # refused while the command line kept its own list).
    from derain.cli import main
    from derain.data.degradations import RAIN_PRESETS
    from derain.data.synth import PRESETS
    from derain.files.imageio import write_image

    assert RAIN_PRESETS == tuple(PRESETS)
    clean = tmp_path / "clean.png"
    write_image(clean, np.full((48, 64, 3), 0.5, dtype=np.float32))
    assert main(["synth", str(clean), "-o", str(tmp_path / "out"), "--preset", "dense"]) == 0
    assert (tmp_path / "out" / "clean.png").is_file()
