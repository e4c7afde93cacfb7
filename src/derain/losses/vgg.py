"""VGG16 feature trunk and the perceptual loss on it (:class:`Perceptual`), defined here so that torchvision
is never needed.

The trunk is ``torchvision.models.vgg16().features`` up to and including the third max-pool (layers 0-16:
conv1_1 ... relu3_3, pool3; 256 channels at 1/8 resolution), with the same module indices, so its state
dict keys are torchvision's (``features.0.weight`` ... ``features.14.bias``) and torchvision's ImageNet file
``vgg16-397923af.pth`` loads as it is (its deeper layers and classifier are ignored).

Weights are never downloaded: they come from a path the user gives or from the standard torch hub cache,
``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (``TORCH_HOME`` defaults to ``~/.cache/torch``), where
torchvision itself would have put them. Without the file, :func:`load_vgg16_trunk` raises one line that says
where to put which file; it never falls back to a random network.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from derain.errors import DerainError

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
# Channels of VGG16's convolutions up to pool3; "M" is a 2x2 max-pool (torchvision's configuration "D").
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Trunk(nn.Module):
    """VGG16 ``features[:17]`` (output of the third max-pool). ``normalize`` applies ImageNet mean/std to
    [0, 1] inputs first; FSDerain's original code feeds raw [0, 1] images (``normalize=False``)."""

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)


class Perceptual(nn.Module):
    """L1 between VGG16 pool3 features of prediction and target; the VGG is frozen and stays in eval mode."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk.eval()
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Perceptual":
        super().train(mode)
        self.trunk.eval()  # frozen: never in training mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.trunk(target.float())
        return (self.trunk(pred.float()) - target_features).abs().mean()


def hub_weights_path() -> Path:
    """Where torchvision keeps its VGG16 ImageNet weights: ``<torch hub dir>/checkpoints/vgg16-397923af.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def find_vgg16_weights(path: str | Path | None = None) -> Path:
    """The weights file to use: ``path`` when given, else the hub cache; one clear line when it is absent."""
    if path is not None:
        path = Path(os.path.expanduser(str(path)))
        if not path.is_file():
            raise DerainError(f"VGG16 weights not found at {path} (expected torchvision's {VGG16_FILE}, "
                              f"from {VGG16_URL})")
        return path
    cached = hub_weights_path()
    if not cached.is_file():
        raise DerainError(f"the perceptual loss needs ImageNet VGG16 weights: put torchvision's {VGG16_FILE} "
                          f"({VGG16_URL}) at {cached}, or give its path (loss.vgg_weights), "
                          "or switch the term off (loss.perceptual: 0)")
    return cached


def load_vgg16_trunk(path: str | Path | None = None, normalize: bool = False) -> VGG16Trunk:
    """A frozen, eval-mode :class:`VGG16Trunk` with torchvision-format ImageNet weights (see the module
    docstring for where they are looked up)."""
    from derain.files.checkpoints import extract_state_dict, load_weights, read_checkpoint

    weights = find_vgg16_weights(path)
    trunk = VGG16Trunk(normalize=normalize)
    state = extract_state_dict(read_checkpoint(weights))
    own = trunk.state_dict().keys()
    # torchvision's file also holds the deeper convolutions and the classifier: only the trunk's keys count.
    load_weights(trunk, {k: v for k, v in state.items() if k in own},
                 what=f"VGG16 weights {weights} (torchvision key format features.N.weight)")
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


def save_torchvision_format(trunk: VGG16Trunk, path: str | Path) -> Path:
    """Write ``trunk``'s weights as torchvision does (a bare ``features.N.*`` state dict): for tests and for
    converting weights obtained elsewhere."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in trunk.state_dict().items()}, path)
    return path
