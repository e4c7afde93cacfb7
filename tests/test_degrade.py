"""Five-task degradation data: synthetic noise/haze/blur/low light, balanced resumable batches, fixed test sets,
and the loaders of the real SOTS, GoPro and LOL layouts (on small fake folders)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.data.datasets import PairedPatches, load_clean_images, to_tensor
from derain.data.degrade import (BlurConfig, HazeConfig, add_gaussian_noise, add_haze, add_low_light,
                                 add_motion_blur, blur_with_kernels, motion_kernels)
from derain.data.synth import add_rain
from derain.data.pairs import find_pairs
from derain.data.realsets import gopro_pairs, load_real_set, lol_pairs, real_set_pairs, sots_pairs
from derain.data.tasks import (TASKS, TaskBatches, TaskSettings, load_synthetic_test_set, make_test_set,
                               synthetic_set_name, task_index, write_test_set)
from derain.errors import DerainError

_CACHE: dict[str, list] = {}


def clean_images(shared, n: int = 4) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` CBSD68 images (read once per session)."""
    root = shared("data/clean/cbsd68")
    if "cbsd68" not in _CACHE:
        _CACHE["cbsd68"] = load_clean_images(str(root))
    return _CACHE["cbsd68"][:n]


def crops(shared, n: int = 4, size: int = 192) -> torch.Tensor:
    """B x 3 x size x size centre crops of real clean photos, floats in [0, 1]."""
    out = []
    for _, a in clean_images(shared, n):
        top, left = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
        out.append(a[top:top + size, left:left + size])
    return to_tensor(np.stack(out))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared Laplacian (away from the borders)."""
    lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:])
    return lap[..., 8:-8, 8:-8].pow(2).mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_std_matches_sigma(shared, sigma):
    x = crops(shared)
    y = add_gaussian_noise(x, sigma, gen())
    std = float((y - x).std())
    # Clipping at 0 and 1 removes part of the noise in dark and bright areas: a little below sigma / 255.
    assert 0.88 * sigma / 255 < std <= 1.01 * sigma / 255
    unclipped = add_gaussian_noise(x, sigma, gen(), clip=False)
    assert abs(float((unclipped - x).std()) - sigma / 255) < 0.01 * sigma / 255
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert abs(float((unclipped - x).mean())) < 0.002  # zero-mean


def test_noise_quantize_is_the_all_in_one_protocol(shared):
    # np.clip(clean + n * sigma, 0, 255).astype(np.uint8), the AirNet/PromptIR data code, with the same n.
    x = crops(shared, 2, 64)
    y = add_gaussian_noise(x, 25, gen(3), quantize=True)
    n = torch.randn(x.shape, generator=gen(3)).double().numpy()  # their randn is float64
    want = np.clip(np.round(x.numpy() * 255) + n * 25, 0, 255).astype(np.uint8)
    assert np.array_equal(np.round(y.numpy() * 255).astype(np.uint8), want)


def test_noise_sigma_per_image(shared):
    x = crops(shared, 2, 96)
    y = add_gaussian_noise(x, torch.tensor([15.0, 50.0]), gen(), clip=False)
    stds = (y - x).flatten(1).std(dim=1)
    assert abs(float(stds[0]) - 15 / 255) < 0.003 and abs(float(stds[1]) - 50 / 255) < 0.006


# ----------------------------------------------------------------------------------------------- haze
def test_haze_lowers_contrast_and_moves_towards_airlight_with_depth(shared):
    x = crops(shared)
    hazy, p = add_haze(x, gen(1), HazeConfig(beta=(1.5, 2.5)))
    assert hazy.shape == x.shape and 0.0 <= float(hazy.min()) and float(hazy.max()) <= 1.0
    # Local contrast drops (details are scaled by t < 1). The global std need not: a far, dark region turning
    # bright adds a large-scale brightness ramp.
    assert bool((high_frequency_energy(hazy) < 0.7 * high_frequency_energy(x)).all())
    depth, t, a = p["depth"], p["transmission"], p["airlight"][:, :, None, None]
    assert depth.shape == (4, 1, 192, 192) and float(depth.min()) >= 0.0 and float(depth.max()) <= 1.0 + 1e-6
    assert bool(((t > 0) & (t <= 1)).all())
    far, near = depth.expand_as(x) > 0.8, depth.expand_as(x) < 0.3
    gap_clean, gap_hazy = (x - a).abs(), (hazy - a).abs()
    # Far away the image is mostly airlight, and much closer to it than the clean image was ...
    assert float(gap_hazy[far].mean()) < 0.4 * float(gap_clean[far].mean())
    # ... and the haze is thicker there than near the camera (transmission falls with depth).
    assert float((gap_hazy / gap_clean.clamp_min(1e-3))[far].median()) < float(
        (gap_hazy / gap_clean.clamp_min(1e-3))[near].median())
    # The model itself: I = J t + A (1 - t).
    assert float((hazy - (x * t + a * (1 - t)).clamp(0, 1)).abs().max()) < 1e-6


def test_depth_is_smooth():
    d = add_haze(torch.full((3, 3, 128, 128), 0.5), gen(2))[1]["depth"]
    step = max(float(d.diff(dim=2).abs().max()), float(d.diff(dim=3).abs().max()))
    assert step < 0.05  # no edges: a pixel step never jumps by more than 5 % of the depth range


# ----------------------------------------------------------------------------------------------- blur
def test_motion_kernels_are_normalised_centred_and_varied():
    config = BlurConfig()
    k = motion_kernels(16, config, gen(4))
    assert k.shape == (16, config.size, config.size)
    assert bool((k >= 0).all()) and torch.allclose(k.sum(dim=(1, 2)), torch.ones(16), atol=1e-5)
    r = torch.arange(config.size, dtype=torch.float32) - config.size // 2
    # Centre of mass at the kernel centre: blurring never shifts the image against its ground truth.
    assert float((k * r[None, None, :]).sum(dim=(1, 2)).abs().max()) < 1e-3
    assert float((k * r[None, :, None]).sum(dim=(1, 2)).abs().max()) < 1e-3
    support = (k > 1e-4).sum(dim=(1, 2))
    assert int(support.min()) >= 5 and len(set(support.tolist())) > 8  # lines of several lengths, not points


def test_blur_removes_high_frequencies(shared):
    x = crops(shared)
    y, p = add_motion_blur(x, gen(5))
    assert y.shape == x.shape and torch.allclose(p["kernel"].sum(dim=(1, 2)), torch.ones(4), atol=1e-5)
    assert bool((high_frequency_energy(y) < 0.6 * high_frequency_energy(x)).all())
    assert abs(float(y.mean() - x.mean())) < 0.01  # a normalised kernel keeps the brightness


def test_blur_uses_each_images_own_kernel(shared):
    x = crops(shared, 3, 64)
    k = motion_kernels(3, BlurConfig(), gen(6))
    together = blur_with_kernels(x, k)
    alone = torch.cat([blur_with_kernels(x[i:i + 1], k[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)
    delta = torch.zeros(3, 5, 5)
    delta[:, 2, 2] = 1
    assert torch.allclose(blur_with_kernels(x, delta), x, atol=1e-6)


# ------------------------------------------------------------------------------------------ low light
def test_low_light_darkens_and_keeps_order_in_expectation(shared):
    x = crops(shared)
    y, p = add_low_light(x, gen(7))
    assert bool((y.flatten(1).mean(1) < 0.6 * x.flatten(1).mean(1)).all())
    assert set(p) == {"gamma", "gain", "photons", "read"}
    # Mean degraded value per band of clean values rises with the clean value (per image and channel).
    edges = torch.linspace(0, 1, 9)
    for b in range(4):
        for c in range(3):
            xs, ys = x[b, c].flatten(), y[b, c].flatten()
            means = [float(ys[(xs >= lo) & (xs < hi)].mean()) for lo, hi in zip(edges[:-1], edges[1:])
                     if int(((xs >= lo) & (xs < hi)).sum()) >= 200]
            assert all(m2 >= m1 - 1e-3 for m1, m2 in zip(means, means[1:])), (b, c, means)
    assert bool((y * 255 == torch.round(y * 255)).all())  # 8-bit levels


def test_every_degradation_is_reproducible_from_the_generator(shared):
    x = crops(shared, 2, 64)
    fns = [lambda g: add_gaussian_noise(x, 25, g), lambda g: add_haze(x, g)[0], lambda g: add_motion_blur(x, g)[0],
           lambda g: add_low_light(x, g)[0], lambda g: add_rain(x, g)]
    for fn in fns:
        a, b, c = fn(gen(11)), fn(gen(11)), fn(gen(12))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_shapes_and_configs_fail_clearly():
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        add_haze(torch.zeros(3, 8, 8), gen())
    with pytest.raises(ValueError, match="odd"):
        BlurConfig(size=30)
    with pytest.raises(ValueError, match="low <= high"):
        HazeConfig(beta=(2.0, 1.0))


# ------------------------------------------------------------------------------------------- batches
def small_batches(shared, seed: int = 0, **settings) -> TaskBatches:
    rain = PairedPatches([(f"r{i}", np.clip(a.astype(int) + 40, 0, 255).astype(np.uint8), a)
                          for i, (_, a) in enumerate(clean_images(shared, 2))], seed=seed)
    clean = PairedPatches([(n, a, a) for n, a in clean_images(shared, 3)], seed=seed + 1)
    return TaskBatches(clean, rain, TaskSettings(**settings), seed=seed)


def test_task_order_is_the_selector_order():
    assert TASKS == ("rain", "haze", "noise", "blur", "lowlight")
    assert task_index("lowlight") == 4
    with pytest.raises(DerainError, match="unknown task 'snow'"):
        task_index("snow")


def test_tasks_are_balanced(shared):
    data = small_batches(shared)
    counts = np.bincount(data.next_tasks(1000), minlength=5)
    assert counts.tolist() == [200] * 5  # shuffled rounds: exactly balanced at every multiple of 5
    drawn = torch.cat([data.sample(7, 32)[2] for _ in range(30)])  # 210 samples in odd-sized batches
    counts = np.bincount(drawn.numpy(), minlength=5)
    assert counts.min() >= 41 and counts.max() <= 43
    assert len({tuple(data.next_tasks(5)) for _ in range(20)}) > 5  # the order within a round varies


def test_batches_hold_the_right_degradation_per_task(shared):
    data = small_batches(shared, rain_synth_ratio=0.0)
    x, y, task = data.sample(20, 64)
    assert x.shape == y.shape == (20, 3, 64, 64) and task.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    diff = (x - y).flatten(1)
    rain = task == 0  # the fake real pairs are the clean image + 40 levels
    assert bool((diff[rain].mean(1) > 0.1).all())
    noise = task == 2
    # Clipping at sigma 50 on a dark or bright patch biases the mean a little; the noise is still centred.
    assert bool((diff[noise].std(1) > 10 / 255).all()) and bool((diff[noise].mean(1).abs() < 0.06).all())
    dark = task == 4
    assert bool((x[dark].flatten(1).mean(1) < y[dark].flatten(1).mean(1)).all())


def test_subset_of_tasks_and_synthetic_rain(shared):
    data = small_batches(shared, tasks=("rain", "noise"), rain_synth_ratio=1.0)
    x, y, task = data.sample(12, 48)
    assert set(task.tolist()) == {0, 2}
    assert "2 tasks balanced" in data.describe()


def test_resume_draws_the_same_next_batch(shared):
    data = small_batches(shared, seed=3, rain_synth_ratio=0.5)
    data.sample(6, 48)
    data.next_tasks(2)  # leave a round half used
    state = data.state_dict()
    want = [data.sample(6, 48) for _ in range(2)]
    other = small_batches(shared, seed=99, rain_synth_ratio=0.5)
    other.load_state_dict(state)
    for expected in want:
        got = other.sample(6, 48)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_missing_sources_are_one_clear_error(shared):
    clean = PairedPatches([(n, a, a) for n, a in clean_images(shared, 1)])
    with pytest.raises(DerainError, match="rain task needs rainy/clean pairs"):
        TaskBatches(clean, None)
    with pytest.raises(DerainError, match="need clean images"):
        TaskBatches(None, clean, TaskSettings(tasks=("rain", "haze")))
    with pytest.raises(DerainError, match="patch size 999"):
        TaskBatches(clean, None, TaskSettings(tasks=("haze",))).sample(1, 999)


def test_from_paths_reads_the_shared_data(shared):
    data = TaskBatches.from_paths(clean=str(shared("data/clean/kodak24")), rain=str(shared("data/rain100l-train")),
                                  rain_max_images=2)
    x, y, task = data.sample(5, 64)
    assert sorted(task.tolist()) == [0, 1, 2, 3, 4]
    assert "rain from 2 pairs" in data.describe() and "24 clean images" in data.describe()


# ---------------------------------------------------------------------------------------- test sets
@pytest.mark.parametrize("task,sigma", [("noise", 25.0), ("haze", None), ("blur", None), ("lowlight", None)])
def test_synthetic_test_sets_are_fixed(shared, task, sigma):
    images = [(n, a[:96, :128]) for n, a in clean_images(shared, 3)]
    first = make_test_set(task, images, seed=0, sigma=sigma)
    again = make_test_set(task, images, seed=0, sigma=sigma)
    assert [n for n, _, _ in first] == [Path(n).stem for n, _ in images]
    for (n1, d1, c1), (n2, d2, c2) in zip(first, again):
        assert n1 == n2 and d1.dtype == np.uint8 and np.array_equal(d1, d2) and np.array_equal(c1, c2)
        assert d1.shape == c1.shape and not np.array_equal(d1, c1)
    # One image's degradation does not depend on the others in the list.
    alone = make_test_set(task, images[1:2], seed=0, sigma=sigma)
    assert np.array_equal(alone[0][1], first[1][1])
    other = make_test_set(task, images, seed=1, sigma=sigma)
    assert not np.array_equal(other[0][1], first[0][1])


def test_noise_test_set_levels_and_name(shared):
    images = [(n, a[:128, :128]) for n, a in clean_images(shared, 2)]
    stds = [np.std(make_test_set("noise", images, sigma=s)[0][1].astype(float) - images[0][1]) for s in (15, 50)]
    assert 13 < stds[0] < 16 and 40 < stds[1] < 51
    assert synthetic_set_name("noise", "cbsd68", 25.0) == "cbsd68-noise25-synthetic"
    assert synthetic_set_name("haze") == "cbsd68-haze-synthetic"
    with pytest.raises(DerainError, match="needs a sigma"):
        make_test_set("noise", images, sigma=None)


def test_synthetic_test_set_written_and_read_back(shared, tmp_path):
    name, triples = load_synthetic_test_set("lowlight", shared("data/clean/cbsd68"), limit=2)
    assert name == "cbsd68-lowlight-synthetic" and len(triples) == 2
    folder = write_test_set(triples, tmp_path / name)
    pairs = find_pairs(folder)
    assert [p.name for p in pairs] == [n for n, _, _ in triples]
    assert np.array_equal(np.asarray(Image.open(pairs[0].input)), triples[0][1])


# ---------------------------------------------------------------------------------------- real sets
def png(path: Path, value: int = 0, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def test_sots_outdoor_layout(tmp_path):
    for scene in ("0001", "0002"):
        png(tmp_path / "SOTS" / "outdoor" / "gt" / f"{scene}.png", 10)
    png(tmp_path / "SOTS" / "outdoor" / "hazy" / "0001_0.8_0.2.jpg", 200)
    png(tmp_path / "SOTS" / "outdoor" / "hazy" / "0002_1_0.08.jpg", 200)
    pairs = sots_pairs(tmp_path / "SOTS")
    assert [(p.input.name, p.target.name) for p in pairs] == [("0001_0.8_0.2.jpg", "0001.png"),
                                                              ("0002_1_0.08.jpg", "0002.png")]
    assert sots_pairs(tmp_path / "SOTS" / "outdoor") == pairs
    png(tmp_path / "clear-layout" / "clear" / "0003.png")
    png(tmp_path / "clear-layout" / "hazy" / "0003_0.9_0.16.png")
    assert sots_pairs(tmp_path / "clear-layout")[0].target.name == "0003.png"
    png(tmp_path / "SOTS" / "outdoor" / "hazy" / "0009_0.8_0.2.jpg")
    with pytest.raises(DerainError, match="0009_0.8_0.2.jpg"):
        sots_pairs(tmp_path / "SOTS")


def test_sots_indoor_border_is_cropped(tmp_path):
    png(tmp_path / "gt" / "1400.png", 50, size=(28, 24))
    png(tmp_path / "hazy" / "1400_1.png", 90, size=(8, 4))
    (name, inp, tgt), = load_real_set("sots", tmp_path)
    assert name == "1400_1" and inp.shape == tgt.shape == (4, 8, 3)


def test_gopro_layout(tmp_path):
    for scene in ("GOPR0384_11_00", "GOPR0385_11_01"):
        for frame in ("000001", "000002"):
            png(tmp_path / "GoPro" / "test" / scene / "blur" / f"{frame}.png", 100)
            png(tmp_path / "GoPro" / "test" / scene / "sharp" / f"{frame}.png", 120)
    pairs = gopro_pairs(tmp_path / "GoPro")
    assert [p.name for p in pairs] == ["GOPR0384_11_00/000001", "GOPR0384_11_00/000002",
                                       "GOPR0385_11_01/000001", "GOPR0385_11_01/000002"]
    assert all(p.input.parent.name == "blur" and p.target.parent.name == "sharp" for p in pairs)
    assert gopro_pairs(tmp_path / "GoPro" / "test") == pairs
    assert len(gopro_pairs(tmp_path / "GoPro" / "test" / "GOPR0384_11_00")) == 2
    data = load_real_set("gopro", tmp_path / "GoPro")
    assert len(data) == 4 and int(data[0][1][0, 0, 0]) == 100 and int(data[0][2][0, 0, 0]) == 120


def test_lol_layout(tmp_path):
    for split, names in (("eval15", ("1", "22")), ("our485", ("2", "5", "7"))):
        for n in names:
            png(tmp_path / "LOL" / split / "low" / f"{n}.png", 5)
            png(tmp_path / "LOL" / split / "high" / f"{n}.png", 150)
    assert [p.name for p in lol_pairs(tmp_path / "LOL")] == ["1", "22"]
    assert len(lol_pairs(tmp_path / "LOL", split="our485")) == 3
    assert len(real_set_pairs("lol", tmp_path / "LOL" / "eval15")) == 2
    (tmp_path / "LOL" / "eval15" / "high" / "22.png").unlink()
    with pytest.raises(DerainError, match="have no ground truth of the same name: 22.png"):
        lol_pairs(tmp_path / "LOL")


def test_unrecognised_layouts_are_one_clear_error(tmp_path):
    png(tmp_path / "photos" / "a.png")
    for fn, what in ((sots_pairs, "not a SOTS folder"), (gopro_pairs, "not a GoPro folder"),
                     (lol_pairs, "not a LOL folder")):
        with pytest.raises(DerainError, match=what) as info:
            fn(tmp_path / "photos")
        assert str(tmp_path / "photos") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DerainError, match="dataset folder not found"):
        lol_pairs(tmp_path / "missing")
    with pytest.raises(DerainError, match="unknown real set 'rain200'"):
        real_set_pairs("rain200", tmp_path)
