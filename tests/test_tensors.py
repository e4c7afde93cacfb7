"""derain.data.tensors: the image <-> tensor conversions give exactly what the hand-written expressions they
replaced gave, bit for bit, layout included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derain.data.tensors import image_to_tensor, quantize, tensor_to_image, tensor_to_images, tensor_to_uint8


def _photo(h: int = 21, w: int = 34, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 image: smooth gradients plus noise, every value 0..255 reachable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], axis=2) * 255.0
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _floats(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    """Network-output-like floats, some outside [0, 1], plus every exact tie k/255 + 1/510 and k/255."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    flat = x.reshape(-1)
    ties = np.concatenate([np.arange(256) / 255.0, (np.arange(255) + 0.5) / 255.0]).astype(np.float32)
    flat[:ties.size] = ties[:flat.size]
    return torch.from_numpy(x)


def test_uint8_image_matches_the_hand_written_division_and_layout():
    pixels = _photo()
    x = image_to_tensor(pixels)
    old = torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div_(255.0)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 21, 34)
    assert torch.equal(x, old) and x.stride() == old.stride()
    # the division, not a multiplication by 1/255 (which differs in the last bit for some values)
    assert torch.equal(x, torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1)[None])


def test_uint8_batch_matches_the_hand_written_batch():
    frames = np.stack([_photo(seed=s) for s in range(3)])
    x = image_to_tensor(frames)
    old = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    assert x.shape == (3, 3, 21, 34) and torch.equal(x, old) and x.stride() == old.stride()


def test_float_pixels_keep_their_values_and_memory():
    pixels = _photo().astype(np.float32) / 255.0
    x = image_to_tensor(pixels)
    assert torch.equal(x, torch.from_numpy(pixels).permute(2, 0, 1)[None])
    pixels[0, 0, 0] = 0.25  # float32 input is shared, as torch.from_numpy shared it
    assert x[0, 0, 0, 0].item() == 0.25
    assert image_to_tensor(pixels.astype(np.float64)).dtype == torch.float32


def test_round_trips_single_and_batched():
    pixels = _photo()
    assert np.array_equal(tensor_to_uint8(image_to_tensor(pixels)), pixels)
    assert np.array_equal(tensor_to_uint8(image_to_tensor(pixels), "half_up"), pixels)
    as_float = pixels.astype(np.float32) / 255.0
    back = tensor_to_image(image_to_tensor(as_float))
    assert back.dtype == np.float32 and np.array_equal(back, as_float)
    frames = np.stack([_photo(seed=s) for s in range(2)])
    assert np.array_equal(tensor_to_images(quantize(image_to_tensor(frames))), frames)


def test_tensor_to_image_takes_one_image_and_does_not_clamp():
    y = _floats((1, 3, 20, 30))  # more values than the ties, so some fall outside [0, 1]
    assert np.array_equal(tensor_to_image(y), y[0].permute(1, 2, 0).numpy())
    assert np.array_equal(tensor_to_image(y[0]), y[0].permute(1, 2, 0).numpy())
    assert tensor_to_image(y).min() < 0 and tensor_to_image(y).max() > 1
    with pytest.raises(ValueError, match="1 x C x H x W"):
        tensor_to_image(_floats((2, 3, 5, 7)))


def test_half_even_matches_each_site_that_rounded_to_even():
    y = _floats((1, 3, 30, 40))
    new = tensor_to_uint8(y)
    assert np.array_equal(new, (y[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy())  # train/loop
    assert np.array_equal(new, torch.round(y[0].permute(1, 2, 0) * 255.0).clamp_(0, 255)
                          .to(torch.uint8).numpy())  # data/tasks
    inside = y.clamp(0, 1)  # the video sites rounded outputs already in [0, 1] with np.rint and no clamp
    frames = torch.cat([inside, inside.flip(-1)])
    assert np.array_equal(tensor_to_images(quantize(frames)),
                          np.rint(frames.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.uint8))


def test_half_up_matches_the_plus_one_half_sites():
    y = _floats((1, 3, 30, 40))
    old = (y[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # data/heavyval, synth JPEG
    assert np.array_equal(tensor_to_uint8(y, "half_up"), old)
    assert not np.array_equal(tensor_to_uint8(y, "half_up"), tensor_to_uint8(y))  # the ties do differ
    with pytest.raises(ValueError, match="rounding"):
        quantize(y, "nearest")  # type: ignore[arg-type]
