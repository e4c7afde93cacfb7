"""VGG16 trunk without torchvision: torchvision key format, loading from a path or the hub cache, messages."""
from __future__ import annotations

import pytest
import torch

from derain.errors import DerainError
from derain.losses.vgg import (VGG16_FILE, IMAGENET_MEAN, IMAGENET_STD, VGG16Trunk, hub_weights_path,
                               load_vgg16_trunk, save_torchvision_format)


def random_torchvision_file(path, seed: int = 0) -> VGG16Trunk:
    """A random trunk saved as torchvision's full VGG16 file looks: features.N.* plus deeper layers and the
    classifier, which the loader must ignore."""
    torch.manual_seed(seed)
    trunk = VGG16Trunk()
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    state["features.17.weight"] = torch.randn(512, 256, 3, 3)
    state["features.17.bias"] = torch.randn(512)
    state["classifier.0.weight"] = torch.randn(16, 8)
    torch.save(state, path)
    return trunk


def test_keys_and_shapes_are_torchvisions() -> None:
    trunk = VGG16Trunk()
    convs = [0, 2, 5, 7, 10, 12, 14]  # torchvision's vgg16().features indices of the first seven convolutions
    assert set(trunk.state_dict()) == {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    assert len(trunk.features) == 17  # up to and including the third max-pool (node "16")
    assert isinstance(trunk.features[16], torch.nn.MaxPool2d)
    assert trunk(torch.rand(1, 3, 48, 64)).shape == (1, 256, 6, 8)


def test_loads_a_torchvision_format_file(tmp_path) -> None:
    path = tmp_path / VGG16_FILE
    source = random_torchvision_file(path)
    loaded = load_vgg16_trunk(path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), source.eval()(x))


def test_hub_cache_is_the_default_location(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert hub_weights_path() == tmp_path / "torch" / "hub" / "checkpoints" / VGG16_FILE
    with pytest.raises(DerainError) as err:
        load_vgg16_trunk()
    message = str(err.value)
    assert "\n" not in message
    assert VGG16_FILE in message and str(hub_weights_path()) in message and "loss.perceptual: 0" in message
    hub_weights_path().parent.mkdir(parents=True)
    source = random_torchvision_file(hub_weights_path(), seed=1)
    loaded = load_vgg16_trunk()
    assert torch.equal(loaded.features[0].weight, source.features[0].weight)


def test_missing_explicit_path_and_wrong_format(tmp_path) -> None:
    with pytest.raises(DerainError, match="VGG16 weights not found at"):
        load_vgg16_trunk(tmp_path / "nope.pth")
    trunk = VGG16Trunk()
    bad = tmp_path / "prefixed.pth"
    torch.save({f"vgg.{k}": v for k, v in trunk.state_dict().items()}, bad)
    with pytest.raises(DerainError, match="missing 14"):
        load_vgg16_trunk(bad)
    # save_torchvision_format round-trips
    path = save_torchvision_format(trunk, tmp_path / "ok.pth")
    assert torch.equal(load_vgg16_trunk(path).features[14].bias, trunk.features[14].bias)


def test_imagenet_normalisation_is_optional() -> None:
    torch.manual_seed(0)
    raw, normed = VGG16Trunk(normalize=False), VGG16Trunk(normalize=True)
    normed.load_state_dict(raw.state_dict())
    x = torch.rand(1, 3, 16, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normed(x), raw((x - mean) / std), atol=1e-6)
    assert not torch.allclose(normed(x), raw(x))
