"""Learning from real rainy photos, which have no ground truth: the semi-supervised part of training.

Two sources, each a fraction of the batch (derain.train.config.DataConfig):

- **pseudo-targets** (``real_photos_ratio``), below;
- **real rain layers** (``real_layers_ratio``): the rain of each training photo estimated without any model
  (:func:`derain.data.rainstats.rain_layer`: the photo minus a median background, kept where it survives an
  opening by thin lines near vertical, i.e. streaks) is added to clean training patches, whose targets are
  exact. The streaks are real (their density, widths, blur and texture), the backgrounds known.

Pseudo-targets:

A trained model (the teacher, usually the run's own previous stage) restores each training photo under a
self-ensemble; its output, with the rain-only-adds-light prior applied (a target never brighter than the
photo, channel by channel), becomes the photo's target. Photos are first downscaled so that their shorter side
is at most ``side``: the scale at which ``derain run`` shows photos to the network (its working side), so the
rain in the patches has the size the network sees at inference. The photos that
:mod:`derain.data.realrain` holds out are never loaded. Targets are cached in the run folder like
:mod:`derain.train.teacher`'s, so a resumed run trains on the same targets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from derain.data.realrain import split_real_photos
from derain.errors import DerainError

Pair = tuple[str, np.ndarray, np.ndarray]


def _training_photos(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(training photos, held-out photos) of ``folder``; a clear error when there are none to train on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DerainError(f"data.real_photos: no folder at {folder}")
    train, held = split_real_photos(folder)
    if not train:
        raise DerainError(f"data.real_photos: no photos named N.jpg in {folder}")
    return train, held


def downscaled(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (HxWx3 uint8) with its shorter side brought down to ``side`` (area filter), or as it is."""
    import cv2

    h, w = image.shape[:2]
    if min(h, w) <= side:
        return image
    scale = side / min(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def pseudo_pairs(folder: str | Path, side: int, teacher: str | Path, ensemble: str,
                 cache_dir: Path | None = None, device: torch.device | None = None,
                 log: Callable[[str], None] = print) -> list[Pair]:
    """(name, photo, pseudo-target) of every training photo of ``folder`` (held-out photos excluded)."""
    from derain.files.imageio import read_uint8_rgb
    from derain.train.teacher import distilled_pairs

    train, held = _training_photos(folder)
    log(f"real photos: {len(train)} for training, {len(held)} held out and not loaded")
    photos = [(str(p), downscaled(read_uint8_rgb(p), side)) for p in train]
    pairs = distilled_pairs([(n, x, x) for n, x in photos], teacher, ensemble, 1.0, cache_dir, device, log)
    return [(name, x, np.minimum(target, x)) for name, x, target in pairs]


def real_rain_layers(folder: str | Path, side: int, log: Callable[[str], None] = print) -> list[Pair]:
    """(name, rain layer, rain layer) of every training photo of ``folder``, HxWx3 uint8 grey, at ``side``.

    The layer is estimated at the photo's working scale (its shorter side brought down to ``side``), where
    the network sees it at inference; the held-out photos are never loaded.
    """
    from derain.data.rainstats import rain_layer
    from derain.files.imageio import read_uint8_rgb

    train, held = _training_photos(folder)
    out = []
    for path in train:
        x = downscaled(read_uint8_rgb(path), side).astype(np.float32) / 255.0
        layer = np.rint(np.clip(rain_layer(x), 0.0, 1.0) * 255.0).astype(np.uint8)
        grey = np.repeat(layer[..., None], 3, axis=2)
        out.append((str(path), grey, grey))
    mean = float(np.mean([layer.mean() for _, layer, _ in out])) / 255.0
    log(f"real rain layers: {len(out)} training photos ({len(held)} held out, not loaded), mean {mean:.4f}")
    return out
