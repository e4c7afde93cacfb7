"""Paired training data held in memory as uint8, cropped and augmented in the main process.

On a 2-core machine worker processes cost more than they save: the 200 RainTrainL pairs take ~90 MB as
uint8, and cropping a batch from memory takes well under a millisecond. Randomness comes from one
``numpy.random.Generator`` whose state (with the epoch order) is part of the resume state, so a resumed run
draws exactly the patches an uninterrupted run would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from derain.data.dihedral import TRANSFORMS, dihedral
from derain.data.tensors import image_to_tensor
from derain.errors import DerainError


def load_pairs(root: str | Path, limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, input, target) uint8 HxWx3 arrays of every pair under ``root`` (``limit``: the first N)."""
    from derain.data import find_pairs  # the pairing rules live in derain.data
    from derain.files.imageio import read_uint8_rgb

    root = Path(root)
    if not root.exists():
        raise DerainError(f"dataset folder not found: {root}")
    pairs = find_pairs(root)
    if not pairs:
        raise DerainError(f"no rainy/clean pairs found under {root}")
    if limit is not None:
        pairs = pairs[:limit]
    out = []
    for pair in pairs:
        inp, tgt = read_uint8_rgb(pair.input), read_uint8_rgb(pair.target)
        if inp.shape != tgt.shape:
            raise DerainError(f"pair {pair.name}: input {inp.shape[:2]} and target {tgt.shape[:2]} differ in size")
        out.append((pair.name, inp, tgt))
    return out


def load_clean_images(roots: str) -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) of every image under the comma-separated folders ``roots``, searched recursively.

    These are the clean sources of synthetic rain (e.g. ``../shared/data/clean`` with CBSD68 and Kodak24).
    """
    from derain.files.imageio import IMAGE_SUFFIXES, natural_key, read_uint8_rgb

    out = []
    for part in (r.strip() for r in roots.split(",")):
        if not part:
            continue
        root = Path(part)
        if not root.exists():
            raise DerainError(f"clean image folder not found: {root} (data.synth_clean)")
        files = [root] if root.is_file() else sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
        out += [(str(f), read_uint8_rgb(f)) for f in files]
    if not out:
        raise DerainError(f"no images found under {roots} (data.synth_clean)")
    return out


# Which dihedral transforms training patches get (``data.augment``; see derain.data.dihedral.TRANSFORMS).
AUGMENTATIONS: dict[str, tuple[int, ...]] = {name: TRANSFORMS[name] for name in ("dihedral", "flips", "none")}


def transplant_rain(clean: np.ndarray, rain_input: np.ndarray, rain_target: np.ndarray) -> np.ndarray:
    """``clean`` with the additive rain layer ``rain_input - rain_target`` of another patch (uint8 HxWx3).

    Where the donor's input is saturated (255) its rain is only known to be at least ``255 - target``, and
    that lower bound is what moves (measured on RainTrainL: its median, 16, is above the median of the
    unclipped rain, 8). Saturating such pixels instead would paint every overexposed donor background (255 in
    both images, 1.8% of RainTrainL's values) white onto the new scene.
    """
    rain = rain_input.astype(np.int16) - rain_target.astype(np.int16)
    return np.clip(clean.astype(np.int16) + rain, 0, 255).astype(np.uint8)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x H x W float32 in [0, 1]."""
    return image_to_tensor(batch)


class PairedPatches:
    """Random aligned crops of ``patch`` x ``patch``, each with a random one of the ``augment`` transforms
    (:data:`AUGMENTATIONS`: the 8 dihedral ones by default).

    Images are visited in shuffled epochs (every pair once per epoch) so that small sets are covered evenly.
    Clean images for synthetic rain use the same sampler with the image as both input and target (the arrays
    are shared, not copied); ``label`` names them in error messages.

    ``rain_mix`` is the probability that a sample's rain is another pair's: the rain layer (input - target) of
    a random crop of a random pair, with its own transform, added to this sample's clean patch (see
    :func:`transplant_rain`). It assumes additive rain, as synthetic benchmarks such as Rain100L/H make it,
    and multiplies the 200 scenes x 200 rain layers of RainTrainL into 40,000 combinations.
    """

    def __init__(self, pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], seed: int = 0,
                 label: str = "training image", augment: str = "dihedral", rain_mix: float = 0.0) -> None:
        if not pairs:
            raise DerainError("the training set has no pairs")
        if augment not in AUGMENTATIONS:
            raise DerainError(f"augment must be one of {', '.join(AUGMENTATIONS)}, not {augment!r}")
        if not 0.0 <= rain_mix <= 1.0:
            raise DerainError(f"rain_mix must be in [0, 1], not {rain_mix}")
        self.rain_mix = rain_mix
        self.transforms = AUGMENTATIONS[augment]
        self.label = label
        self.names = [p[0] for p in pairs]
        self.inputs = [p[1] for p in pairs]
        self.targets = [p[2] for p in pairs]
        self.min_side = min(min(a.shape[:2]) for a in self.inputs)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.inputs))
        self.position = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def check_patch(self, patch: int) -> None:
        """A patch larger than the smallest image is a config error, reported before training."""
        if patch > self.min_side:
            raise DerainError(f"patch size {patch} is larger than the smallest {self.label} "
                              f"(shortest side {self.min_side} px); lower data.patch")

    def _next_index(self) -> int:
        if self.position >= len(self.order):
            self.order = self.rng.permutation(len(self.inputs))
            self.position = 0
        index = int(self.order[self.position])
        self.position += 1
        return index

    def sample(self, batch: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: (inputs, targets) as B x 3 x patch x patch float tensors in [0, 1]."""
        self.check_patch(patch)
        xs = np.empty((batch, patch, patch, 3), dtype=np.uint8)
        ys = np.empty_like(xs)
        for b in range(batch):
            i = self._next_index()
            h, w = self.inputs[i].shape[:2]
            top = int(self.rng.integers(0, h - patch + 1))
            left = int(self.rng.integers(0, w - patch + 1))
            k = self.transforms[int(self.rng.integers(0, len(self.transforms)))]
            xs[b] = dihedral(self.inputs[i][top:top + patch, left:left + patch], k)
            ys[b] = dihedral(self.targets[i][top:top + patch, left:left + patch], k)
            # Drawn only when mixing is on, so runs without it draw exactly the patches they always did.
            if self.rain_mix > 0 and self.rng.random() < self.rain_mix:
                xs[b] = transplant_rain(ys[b], *self._random_crop_pair(patch))
        return to_tensor(xs), to_tensor(ys)

    def _random_crop_pair(self, patch: int) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) crops of a uniformly drawn pair at a random place, with a random transform."""
        j = int(self.rng.integers(0, len(self.inputs)))
        h, w = self.inputs[j].shape[:2]
        top = int(self.rng.integers(0, h - patch + 1))
        left = int(self.rng.integers(0, w - patch + 1))
        k = self.transforms[int(self.rng.integers(0, len(self.transforms)))]
        return (dihedral(self.inputs[j][top:top + patch, left:left + patch], k),
                dihedral(self.targets[j][top:top + patch, left:left + patch], k))

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next patches (for exact resume)."""
        return {"rng": self.rng.bit_generator.state, "order": self.order.tolist(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position = int(state["position"])
