"""Rain for real photos: the realism options of derain.data.synth, the heavy-rain validation set, the real-photo
split, preset mixtures in training batches, grown networks and the bundled Rain100L specialist."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from derain.data.synth import PRESETS, preset, sample_rain, synthesize, synthesize_pair

REAL = preset("real")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def grey(b: int = 2, h: int = 96, w: int = 96, level: float = 0.4) -> torch.Tensor:
    return torch.full((b, 3, h, w), level)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- synthesis ------------------------------------------------------------------------------------------
def test_realism_options_off_give_the_old_rain():
    # A config whose realism options are all off must draw exactly what the presets always drew (recorded
    # recipes stay reproducible); switching one on changes the rain.
    off = replace(REAL, near_probability=0.0, light_probability=0.0, night_probability=0.0, veil_depth=False,
                  noise_probability=0.0, jpeg_probability=0.0)
    base = replace(off)  # same values: the reference
    a = synthesize(grey(), off, gen(1))
    b = synthesize(grey(), base, gen(1))
    assert torch.equal(a, b)
    g = gen(1)
    sample_rain(2, 96, 96, off, g)
    assert torch.equal(g.get_state(), _state_after(off)), "options off must not draw from the generator"
    c = synthesize(grey(), replace(off, near_probability=1.0), gen(1))
    assert not torch.equal(a, c)


def _state_after(config) -> torch.Tensor:
    g = gen(1)
    sample_rain(2, 96, 96, config, g)
    return g.get_state()


def test_real_preset_is_reproducible_and_changes_with_the_seed():
    a, ta = synthesize_pair(grey(3), REAL, gen(5))
    b, tb = synthesize_pair(grey(3), REAL, gen(5))
    c, _ = synthesize_pair(grey(3), REAL, gen(6))
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, c)


def test_night_scenes_darken_the_target_and_keep_streaks_bright():
    night = replace(REAL, night_probability=1.0, veil_probability=0.0, noise_probability=0.0, jpeg_probability=0.0,
                    density=(0.002, 0.003), brightness=(0.6, 0.6))
    clean = grey(2, level=0.6)
    rainy, target = synthesize_pair(clean, night, gen(2))
    assert float(target.mean()) < 0.6 * float(clean.mean()), "a night scene is darker than the day photo"
    streaks = rainy - target
    assert float(streaks.min()) >= -1e-6, "rain only adds light"
    assert float(torch.quantile(streaks.flatten(), 0.999)) > 0.3, "bright streaks on the dark scene"


def test_depth_veil_is_stronger_far_away():
    veiled = replace(REAL, veil=(0.6, 0.6), veil_probability=1.0, density=(0.0001, 0.0001), light_probability=0.0,
                     night_probability=0.0, noise_probability=0.0, jpeg_probability=0.0, near_probability=0.0,
                     airlight=(1.0, 1.0))
    clean = grey(8, 128, 128, level=0.2)
    rainy = synthesize(clean, veiled, gen(3))
    top, bottom = rainy[:, :, :32].mean(), rainy[:, :, -32:].mean()
    assert float(top) > float(bottom) + 0.05, (float(top), float(bottom))  # depth ramps are far at the top
    assert float(rainy.mean()) < 0.2 + 0.6 * 0.8 + 0.01  # never more than the uniform veil of the farthest point


def test_near_layer_adds_wide_soft_streaks():
    from derain.data.rainstats import rain_stats

    base = replace(REAL, near_probability=0.0, light_probability=0.0, night_probability=0.0, veil_probability=0.0,
                   noise_probability=0.0, jpeg_probability=0.0, density=(0.00002, 0.00002))
    near = replace(base, near_probability=1.0, near_density=(0.0008, 0.0008), near_brightness=(0.3, 0.3))
    clean = grey(1, 321, 481, level=0.3)
    a = synthesize(clean, base, gen(4), wrap=False)
    b = synthesize(clean, near, gen(4), wrap=False)
    assert float((b - a).min()) >= -1e-6 and float((b - a).mean()) > 0.01
    wide = rain_stats(b[0].permute(1, 2, 0).numpy())
    thin = rain_stats(synthesize(clean, replace(base, density=(0.002, 0.002)), gen(4), wrap=False)[0]
                      .permute(1, 2, 0).numpy())
    assert wide.width > thin.width


def test_jpeg_round_trip_degrades_the_input_only():
    jpeg = replace(REAL, jpeg_probability=1.0, jpeg_quality=(30.0, 30.0), night_probability=0.0)
    plain = replace(jpeg, jpeg_probability=0.0)
    x = torch.rand(1, 3, 64, 64, generator=gen(0))
    a, ta = synthesize_pair(x, jpeg, gen(7))
    b, tb = synthesize_pair(x, plain, gen(7))
    assert torch.equal(ta, x) and torch.equal(tb, x)
    diff = float((a - b).abs().mean())
    assert 0.005 < diff < 0.2, diff


def test_real_preset_is_closer_to_the_real_photos_than_the_old_presets(shared):
    # The fit of docs/journal/general-model.md in small: 20 real training photos against 12 synthetic images per preset.
    from derain.data.rainstats import distribution_distance, rain_stats
    from derain.data.realrain import split_real_photos
    from derain.files.imageio import read_uint8_rgb

    train, _ = split_real_photos(shared("data/real-rain"))
    real = [rain_stats(read_uint8_rgb(p)) for p in train[::6]]
    backgrounds = sorted(shared("data/clean/bsds-extra").glob("*.jpg"))[1::14][:12]
    distance = {}
    for name in ("light", "heavy", "real"):
        stats = []
        for i, path in enumerate(backgrounds):
            x = torch.from_numpy(np.array(read_uint8_rgb(path))).permute(2, 0, 1)[None].float() / 255
            y = synthesize(x, PRESETS[name], gen(i), wrap=False)[0].permute(1, 2, 0).numpy()
            stats.append(rain_stats(y))
        distance[name] = distribution_distance(real, stats)["mean"]
    assert distance["real"] < 0.7 * min(distance["light"], distance["heavy"]), distance


# ----- held-out sets --------------------------------------------------------------------------------------
def test_real_photo_split_holds_out_thirty(shared):
    from derain.data.realrain import HELD_OUT, split_real_photos

    train, held = split_real_photos(shared("data/real-rain"))
    assert len(held) == 30 and len(train) == 117
    assert {int(p.stem) for p in held} == set(HELD_OUT)
    assert not {p.name for p in train} & {p.name for p in held}


def test_heavy_val_backgrounds_are_left_out_of_training(shared, tmp_path):
    from derain.data.heavyval import held_out_backgrounds, is_held_out, make_pair
    from derain.files.imageio import read_uint8_rgb
    from derain.train.batches import TrainBatches
    from derain.train.config import DataConfig

    data = shared("data")
    backgrounds = held_out_backgrounds(data)
    assert len(backgrounds) == 52 and all(is_held_out(p) for p in backgrounds)
    assert not any(is_held_out(p) for p in (data / "rain100l-train" / "clean").iterdir())
    config = DataConfig(train=None, synth_ratio=1.0, synth_preset="real",
                        synth_clean=f"{data}/clean/bsds-extra,{data}/clean/kodak24", synth_exclude="heavy-val")
    batches = TrainBatches.from_config(config, seed=0, log=lambda _: None)
    assert batches.clean is not None and len(batches.clean) == 165 - 28
    # The set is a function of the code: the same pair twice, heavy rain (far below the clean image).
    from derain.metrics import psnr_ssim

    clean = read_uint8_rgb(backgrounds[0])
    rainy1, target1 = make_pair(clean, backgrounds[0].stem, 1)
    rainy2, _ = make_pair(clean, backgrounds[0].stem, 1)
    assert np.array_equal(rainy1, rainy2) and np.array_equal(target1, clean)
    assert psnr_ssim(rainy1, clean, "matlab-y")[0] < 22.0


def test_preset_mixture_uses_every_preset():
    from derain.data.datasets import PairedPatches
    from derain.train.batches import TrainBatches

    image = (np.random.default_rng(0).random((64, 64, 3)) * 100 + 50).astype(np.uint8)
    clean = PairedPatches([("a", image, image)], seed=0)
    batches = TrainBatches(None, clean, synth_ratio=1.0, synth_preset="light,real", seed=3)
    assert len(batches.rain_configs) == 2
    x1, y1 = batches.sample(16, 48)
    assert x1.shape == y1.shape == (16, 3, 48, 48)
    again = TrainBatches(None, PairedPatches([("a", image, image)], seed=0), synth_ratio=1.0,
                         synth_preset="light,real", seed=3)
    x2, y2 = again.sample(16, 48)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


# ----- models ---------------------------------------------------------------------------------------------
def test_grown_network_starts_from_the_same_function():
    from derain.models.fastderain import FastDerain

    small = FastDerain(unshuffle=1, widths=[8, 16, 16], enc_blocks=[1, 1, 1], dec_blocks=[1, 1])
    with torch.no_grad():
        for block in small.modules():
            if hasattr(block, "scale") and block.scale is not None:
                block.scale.fill_(0.5)  # a trained-looking network, not the identity
        small.head.weight.normal_(0, 0.1)
    big = FastDerain(unshuffle=1, widths=[8, 16, 16], enc_blocks=[1, 2, 3], dec_blocks=[2, 1])
    state, added = big.grown_state_dict(small.state_dict())
    assert added == ["decoders.0.1", "encoders.1.1", "encoders.2.1", "encoders.2.2"]
    big.load_state_dict(state)
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(small(x), big(x), atol=1e-6)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())


def test_rain100l_specialist_is_bundled_and_selectable():
    from derain.weights.load import load_model
    from derain.weights.resolve import resolve_weights

    path = resolve_weights("fastderain-rain100l", None)
    assert Path(path).name == "rain100l.safetensors"
    model, name = load_model("fastderain-rain100l", path)
    assert name == "fastderain-rain100l"
    # The same weights load as the plain network too (a warm start names the network, not the bundle).
    plain, plain_name = load_model("fastderain", path)
    assert plain_name == "fastderain"
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


# ----- real photos and large photos -----------------------------------------------------------------------
def test_pseudo_pairs_skip_held_out_photos_and_never_add_light(shared, tmp_path):
    import shutil

    from derain.train.pseudo import pseudo_pairs

    folder = tmp_path / "real"
    folder.mkdir()
    for n in (2, 3, 6):  # 6 is held out
        shutil.copy(shared("data/real-rain") / f"{n}.jpg", folder / f"{n}.jpg")
    logs: list[str] = []
    pairs = pseudo_pairs(folder, 128, "src/derain/weights/rain100l.safetensors", "none", tmp_path / "cache",
                         log=logs.append)
    assert [Path(name).name for name, _, _ in pairs] == ["2.jpg", "3.jpg"]
    for _, photo, target in pairs:
        assert min(photo.shape[:2]) == 128 and photo.shape == target.shape
        assert (target <= photo).all(), "a pseudo-target never has more light than the rainy photo"
        assert (target < photo).mean() > 0.05, "the teacher removed something"
    again = pseudo_pairs(folder, 128, "src/derain/weights/rain100l.safetensors", "none", tmp_path / "cache",
                         log=logs.append)
    assert any("teacher targets from" in line for line in logs), "the second call reads the cache"
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(pairs, again))


def test_working_side_removes_rain_at_the_networks_scale_and_keeps_detail():
    import torch.nn.functional as F

    from derain.inference.restore import InferenceOptions, restore, working_scale

    assert working_scale(300, 400, 640) == 1.0 and working_scale(1280, 2000, 640) == 0.5

    class Halve(torch.nn.Module):  # "removes" half of whatever lies above the image's blurred self
        def forward(self, x):
            smooth = F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
            return x - 0.5 * (x - smooth)

    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 384)
    net = Halve()
    cpu = torch.device("cpu")
    whole = restore(net, image, 1, InferenceOptions(fast=False, tile=0), cpu)
    small = restore(net, image, 1, InferenceOptions(fast=False, tile=0, working_side=128), cpu)
    assert small.shape == image.shape
    # At the working side the network sees a downscaled copy: the change differs from the whole-image one,
    # but the full-resolution detail the network did not touch is kept (the change is smooth).
    change = image - small
    assert float(change.abs().mean()) > 0.001
    assert not torch.allclose(whole, small)
    untouched = restore(torch.nn.Identity(), image, 1, InferenceOptions(fast=False, tile=0, working_side=128), cpu)
    assert torch.allclose(untouched, image, atol=1e-6), "a network that changes nothing changes nothing"


def test_derain_synth_writes_the_targets_of_night_scenes(tmp_path, capsys):
    from derain.cli import main
    from derain.files.imageio import read_uint8_rgb, write_image

    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        write_image(folder / f"c{i}.png", rng.random((64, 80, 3)).astype(np.float32) * 0.5 + 0.25)
    assert main(["synth", str(folder), "-o", str(tmp_path / "out"), "--preset", "real", "--count", "3"]) == 0
    targets = sorted((tmp_path / "out" / "targets").glob("*.png"))
    rainy = sorted((tmp_path / "out").glob("*.png"))
    assert len(rainy) == 18 and 0 < len(targets) < 18  # about 12 % of the scenes are night scenes
    for target in targets:
        dark = read_uint8_rgb(target).astype(float).mean()
        source = read_uint8_rgb(folder / (target.stem.rsplit("_", 1)[0] + ".png")).astype(float).mean()
        assert dark < 0.7 * source


def test_working_side_auto_is_for_rain_networks_and_bench_scores_native_resolution():
    from derain.cli import build_parser
    from derain.commands import inference_options
    from derain.inference.restore import DEFAULT_WORKING_SIDE, InferenceOptions, count_tiles, resolve_working_side

    auto = InferenceOptions(working_side="auto")
    assert resolve_working_side(auto, "fastderain").working_side == DEFAULT_WORKING_SIDE
    assert resolve_working_side(auto, "fsdrnet-small").working_side is None  # noise and blur need every pixel
    parser = build_parser()
    assert inference_options(parser.parse_args(["run", "x.jpg"])).working_side == "auto"
    assert inference_options(parser.parse_args(["run", "x.jpg", "--working-side", "0"])).working_side is None
    assert inference_options(parser.parse_args(["run", "x.jpg", "--working-side", "800"])).working_side == 800
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "x.jpg", "--working-side", "12"])
    # A 12-megapixel photo at the working side is one tile, not fifteen.
    tiled = InferenceOptions(tile=1024, working_side=None)
    assert count_tiles(2848, 4288, tiled, 16) > 1
    assert count_tiles(2848, 4288, replace(tiled, working_side=640), 16) == 1


def test_bench_leaves_the_working_side_off(shared, monkeypatch, capsys):
    import derain.commands.bench as bench_module
    from derain.cli import main

    seen = []
    real_run_bench = bench_module.run_bench

    def spy(job):
        seen.append(job.options.working_side)
        return real_run_bench(job)

    monkeypatch.setattr(bench_module, "run_bench", spy)
    assert main(["bench", "fastderain-rain100l", str(shared("data/rain100l")), "--limit", "1", "-q"]) == 0
    assert seen == [None]


def test_real_rain_layers_put_real_streaks_on_known_backgrounds(shared, tmp_path):
    import shutil

    from derain.data.datasets import PairedPatches
    from derain.train.batches import TrainBatches
    from derain.train.pseudo import real_rain_layers

    folder = tmp_path / "real"
    folder.mkdir()
    for n in (37, 41):  # 41 is held out
        shutil.copy(shared("data/real-rain") / f"{n}.jpg", folder / f"{n}.jpg")
    layers = real_rain_layers(folder, 320, log=lambda _: None)
    assert [Path(name).name for name, _, _ in layers] == ["37.jpg"]
    layer = layers[0][1]
    assert min(layer.shape[:2]) == 320 and (layer[..., 0] == layer[..., 2]).all(), "a grey layer at the side"
    assert 0.002 < layer.mean() / 255 < 0.2, "37.jpg is dense rain: the layer holds streaks"
    image = np.full((96, 96, 3), 80, np.uint8)
    clean = PairedPatches([("c", image, image)], seed=0)
    batches = TrainBatches(None, clean, synth_ratio=0.0, seed=1,
                           layers=PairedPatches(layers, seed=2), layer_ratio=1.0)
    x, y = batches.sample(4, 64)
    assert torch.equal(y, torch.full_like(y, 80 / 255))
    assert float((x - y).min()) >= 0 and float((x - y).mean()) > 0.001
