"""Inference engine: padding, tiling with blending, self-ensemble, precision and device choice."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from derain.errors import DerainError
from derain.data.dihedral import dihedral, dihedral_tensor, undo_dihedral_tensor
from derain.inference.ensembles import ENSEMBLES, ensemble_forward
from derain.inference.precision import compute_dtype
from derain.inference.restore import InferenceOptions, count_tiles, pad_to_multiple, resolve_device, restore
from derain.inference.tiling import tile_layout, tile_starts
from derain.models import build


class LocalConvNet(nn.Module):
    """A random 4-layer 3x3 conv net: receptive radius 4 px, so tiles with enough overlap must agree."""

    def __init__(self, multiple: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.multiple = multiple
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 16, 3, padding=1),
                                  nn.GELU(), nn.Conv2d(16, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % self.multiple == 0 and x.shape[-1] % self.multiple == 0, x.shape
        return x + 0.1 * self.body(x)


def load_tensor(path) -> torch.Tensor:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


@pytest.fixture
def rainy(shared) -> torch.Tensor:
    return load_tensor(shared("data/rain100l/rainy/rain-001.png"))


def test_pad_to_multiple_reflects_bottom_right(rainy):
    padded = pad_to_multiple(rainy, 8)
    assert padded.shape[-2:] == (328, 488)
    torch.testing.assert_close(padded[..., :321, :481], rainy)
    # Reflection about the last row/column, as the official test script pads.
    torch.testing.assert_close(padded[..., 321, :481], rainy[..., 319, :])
    torch.testing.assert_close(padded[..., :321, 481], rainy[..., :, 479])


def test_pad_tiny_image_falls_back_to_replicate():
    x = torch.rand(1, 3, 3, 5)
    padded = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 8)
    torch.testing.assert_close(padded[..., 7, 4], x[..., 2, 4])


def test_restore_crops_back_and_clamps(rainy):
    y = restore(LocalConvNet(), rainy, 8)
    assert y.shape == rainy.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float((y - rainy).abs().mean()) > 1e-3  # the network did something


@pytest.mark.parametrize("tile,overlap", [(128, 32), (96, 16), (200, 64)])
def test_tiled_matches_whole_image(rainy, tile, overlap):
    model = LocalConvNet()
    whole = restore(model, rainy, 8, InferenceOptions(tile=0))
    opts = InferenceOptions(tile=tile - tile % 8, tile_overlap=overlap, tile_threshold=0)
    assert count_tiles(321, 481, opts) > 4
    tiled = restore(model, rainy, 8, opts)
    assert float((tiled - whole).abs().max()) < 1e-3


@pytest.mark.parametrize("multiple", [1, 16])
def test_tiles_cover_the_image_with_enough_overlap(multiple):
    for length in (96, 480, 2848, 4288):
        for tile, overlap in ((128, 32), (512, 64), (256, 96), (1024, 64)):
            side, starts = tile_layout(length, tile, overlap, multiple)
            assert starts == tile_starts(length, tile, overlap, multiple)
            assert side <= tile and side % multiple == 0 and (side == tile or len(starts) > 1 or side == length)
            assert starts[0] == 0 and starts[-1] + side == length  # the last tile ends at the border
            assert all(s % multiple == 0 for s in starts)
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            assert all(side - g >= overlap for g in gaps)
            # As few tiles as the overlap allows, so no more pixels computed than with tiles of the full side.
            fewest = 1 if length <= tile else math.ceil((length - overlap) / (tile - overlap))
            assert len(starts) == fewest
    # A 12-megapixel photo's long side: 5 tiles of 912 instead of 5 of 1024 (4,560 pixels computed, not 5,120).
    assert tile_layout(4288, 1024, 64, 16) == (912, [0, 848, 1696, 2528, 3376])


@pytest.mark.parametrize("tile,overlap", [(256, 64), (256, 96), (512, 64)])
def test_tiled_default_architecture_matches_whole_image(shared, tile, overlap):
    """The default model's U-Net (16x downsampling, wide receptive field) on a real 600x407 photo."""
    torch.manual_seed(0)
    model = build("fastderain").eval()
    with torch.no_grad():  # an untrained FastDerain is the identity: give it random, active weights
        for module in model.modules():
            if hasattr(module, "scale"):
                module.scale.fill_(0.3)
        model.head.weight.normal_(0, 0.01)
    photo = load_tensor(shared("data/real-rain/1.jpg"))
    # float32 (bf16 rounding would hide the tiling error this test measures)
    whole = restore(model, photo, 16, InferenceOptions(tile=0, precision="fp32"))
    assert float((whole - photo).abs().mean()) > 1e-2
    opts = InferenceOptions(tile=tile, tile_overlap=overlap, tile_threshold=0, precision="fp32")
    assert count_tiles(407, 600, opts, 16) >= 2
    tiled = restore(model, photo, 16, opts)
    assert float((tiled - whole).abs().max()) < 1e-3


def test_ensemble_of_equivariant_model_is_identity_and_of_biased_model_averages():
    x = torch.rand(1, 3, 16, 24)
    torch.testing.assert_close(ensemble_forward(lambda t: t)(x), x)
    # A model that adds a horizontal ramp is not flip-invariant: the ensemble averages the ramp away to
    # its mean, which is what a self-ensemble is supposed to do.
    def ramp(t: torch.Tensor) -> torch.Tensor:
        return t + torch.linspace(0, 1, t.shape[-1])
    out = ensemble_forward(ramp)(torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(out, torch.full((1, 3, 8, 8), 0.5))


def test_tensor_dihedral_matches_the_training_augmentation_and_inverts():
    x = torch.rand(1, 3, 6, 10)
    for k in range(8):
        t = dihedral_tensor(x, k)
        expected = dihedral(x[0].permute(1, 2, 0).numpy(), k)  # what training patches get for the same k
        np.testing.assert_array_equal(t[0].permute(1, 2, 0).numpy(), expected)
        torch.testing.assert_close(undo_dihedral_tensor(t, k), x)


def test_named_ensembles_average_their_transforms_only():
    # A model that adds a horizontal ramp: every upright transform either keeps the ramp or mirrors it, so
    # hflip and flips average it to its mean along x; the quarter turns of dihedral move it to the y axis.
    def ramp(t: torch.Tensor) -> torch.Tensor:
        return t + torch.linspace(0, 1, t.shape[-1])
    x = torch.zeros(1, 1, 4, 4)
    torch.testing.assert_close(ensemble_forward(ramp, "none")(x), ramp(x))
    torch.testing.assert_close(ensemble_forward(ramp, "hflip")(x), torch.full_like(x, 0.5))
    torch.testing.assert_close(ensemble_forward(ramp, "flips")(x), torch.full_like(x, 0.5))
    calls = []
    ensemble_forward(lambda t: calls.append(1) or t, "flips")(x)
    assert len(calls) == len(ENSEMBLES["flips"]) == 4
    # A vertical ramp survives the upright ensembles: none of them turns rows into columns.
    def vramp(t: torch.Tensor) -> torch.Tensor:
        return t + torch.linspace(0, 1, t.shape[-2]).view(-1, 1)
    y = ensemble_forward(vramp, "hflip")(x)
    torch.testing.assert_close(y, vramp(x))
    # The unnamed ensemble (True, as a bare --ensemble) is the upright one: 4 passes, none of them turned a
    # tall image on its side (the quarter turns of dihedral do).
    def shapes_seen(ensemble: bool | str) -> list[tuple[int, ...]]:
        seen: list[tuple[int, ...]] = []
        ensemble_forward(lambda t: seen.append(tuple(t.shape)) or t, ensemble)(torch.zeros(1, 1, 6, 4))
        return seen
    assert shapes_seen(True) == [(1, 1, 6, 4)] * 4
    assert (1, 1, 4, 6) in shapes_seen("dihedral")


def test_unknown_ensemble_is_one_clear_error(rainy):
    with pytest.raises(DerainError, match="ensemble must be one of none, hflip, flips, dihedral"):
        restore(LocalConvNet(), rainy[..., :16, :16], 8, InferenceOptions(ensemble="x4"))


def test_ensemble_restore_keeps_size(rainy):
    for ensemble in (True, "hflip", "flips"):
        y = restore(LocalConvNet(), rainy[..., :40, :56], 8, InferenceOptions(ensemble=ensemble))
        assert y.shape == (1, 3, 40, 56)


def test_precision_choices():
    cpu = torch.device("cpu")
    assert compute_dtype("auto", cpu, fast=False) is None  # the reference path computes in float32
    assert compute_dtype("fp32", cpu) is None
    assert compute_dtype("bf16", cpu, fast=False) is torch.bfloat16
    with pytest.raises(DerainError, match="fp16"):
        compute_dtype("fp16", cpu)
    with pytest.raises(DerainError, match="unknown precision"):
        compute_dtype("int4", cpu)


def test_bf16_close_to_fp32(rainy):
    model = LocalConvNet()
    crop = rainy[..., :64, :64]
    fp32 = restore(model, crop, 8, InferenceOptions(precision="fp32"))
    bf16 = restore(model, crop, 8, InferenceOptions(precision="bf16"))
    assert 0 < float((fp32 - bf16).abs().max()) < 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_absent_gpu_is_a_clear_error():
    with pytest.raises(DerainError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("name, message", [("mps", "not supported"), ("meta", "not supported"),
                                           ("gpu7", "unknown device")])
def test_unsupported_device_is_a_clear_error(name, message):
    with pytest.raises(DerainError, match=message):
        resolve_device(name)


def test_tile_must_fit_the_size_multiple(rainy):
    with pytest.raises(DerainError, match="multiple of 8"):
        restore(LocalConvNet(), rainy, 8, InferenceOptions(tile=100, tile_threshold=0))


def test_auto_tile_keeps_a_24_megapixel_photo_within_the_free_memory(monkeypatch, shared):
    import derain.inference.restore as infer

    cpu = torch.device("cpu")
    restormer = build("restormer")  # official size: about 12 KB of activations per pixel
    gib = 1024 ** 3
    previous = 0
    for available in (2 * gib, 4 * gib, 8 * gib, 64 * gib):
        tile = infer.auto_tile(restormer, 8, 64, cpu, available=available)
        assert tile % 8 == 0 and tile > 2 * 64
        # One tile's activations plus the buffers of a 24-megapixel photo fit in what is free.
        assert tile * tile * restormer.bytes_per_pixel + infer.IMAGE_BYTES_PER_PIXEL * 24e6 <= available
        assert previous <= tile <= infer.MAX_TILE["cpu"]  # more memory, larger tiles, up to the cap
        previous = tile
    assert infer.auto_tile(restormer, 8, 64, cpu, available=64 * gib) == infer.MAX_TILE["cpu"]
    # A network that does not declare its cost is assumed to be as hungry as the hungriest measured.
    assert infer.auto_tile(nn.Conv2d(3, 3, 3), 1, 64, cpu, available=4 * gib) <= infer.auto_tile(
        restormer, 1, 64, cpu, available=4 * gib)
    # Almost no memory: the smallest useful tile, still a multiple of the network's size.
    assert infer.auto_tile(restormer, 8, 64, cpu, available=1) == 192

    # restore() with the automatic tile uses the memory it finds: little memory, several tiles, same result.
    monkeypatch.setattr(infer, "available_memory_bytes", lambda device: int(1.2e9))
    model = build("fastderain").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.01)
    photo = load_tensor(shared("data/real-rain/1.jpg"))
    options = InferenceOptions(tile_threshold=0, precision="fp32")
    resolved = infer.resolve_tile(options, model, 16, cpu)
    assert resolved.tile < 400 and infer.count_tiles(407, 600, resolved, 16) >= 4
    tiled = restore(model, photo, 16, options)
    whole = restore(model, photo, 16, InferenceOptions(tile=0, precision="fp32"))
    assert float((tiled - whole).abs().max()) < 1e-3


def test_batched_tiles_give_the_same_image(shared):
    """Tiles of one shape run several per call (the GPU default); the blended result does not change."""
    torch.manual_seed(0)
    model = build("fastderain").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.01)
    photo = load_tensor(shared("data/real-rain/1.jpg"))  # 600x407: tiles of two shapes at 256
    one = restore(model, photo, 16, InferenceOptions(tile=256, tile_threshold=0, precision="fp32", tile_batch=1))
    calls = []
    three = restore(model, photo, 16, InferenceOptions(tile=256, tile_threshold=0, precision="fp32", tile_batch=3),
                    progress=calls.append)
    assert sum(calls) == count_tiles(407, 600, InferenceOptions(tile=256, tile_threshold=0), 16)
    assert len(calls) < sum(calls)  # some calls really carried several tiles
    assert float((one - three).abs().max()) < 1e-5
