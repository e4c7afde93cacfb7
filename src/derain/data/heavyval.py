"""The heavy-rain validation set: our own dense rain with a veil, on backgrounds no rain model trains on.

    python scripts/make_heavy_val.py work/heavy-val        # writes work/heavy-val/{rainy,clean}/*.png

Backgrounds (52, held out from every rain training config through ``data.synth_exclude: heavy-val``): all 24
Kodak24 photos and every 6th photo of ``clean/bsds-extra`` in name order (28). Each gets two rainy versions,
104 pairs in all, from :data:`HEAVY_VAL`: the ``real`` preset's streaks (up to four depth layers, near drops),
denser, longer and brighter, always with rain accumulation (a depth veil), no night, noise or JPEG, so that the clean
image is the exact target. The rain of a pair depends only on the seed, the background's name and k.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from derain.data.synth import PRESETS, RainConfig, synthesize_pair
from derain.data.tensors import image_to_tensor, tensor_to_uint8

NAME = "heavy-val"
SEED = 2026
VERSIONS = 2  # rainy versions per background
BSDS_EVERY = 6  # every 6th bsds-extra photo is held out

HEAVY_VAL: RainConfig = replace(
    PRESETS["real"], density=(0.001, 0.004), length=(10.0, 50.0), width=(1.0, 3.0), brightness=(0.35, 0.75),
    veil=(0.1, 0.4), veil_probability=1.0,
    light_probability=0.0, night_probability=0.0, noise_probability=0.0, jpeg_probability=0.0)


def held_out_backgrounds(data_root: Path) -> list[Path]:
    """The 52 background photos of the set, under ``data_root`` (``../shared/data``)."""
    kodak = sorted((data_root / "clean" / "kodak24").glob("*.png"))
    bsds = sorted((data_root / "clean" / "bsds-extra").glob("*.jpg"))[::BSDS_EVERY]
    return kodak + bsds


def is_held_out(path: str | Path) -> bool:
    """Whether ``path`` is one of the set's backgrounds (by folder and name, wherever the data lies)."""
    p = Path(path)
    if p.parent.name == "kodak24":
        return p.suffix.lower() == ".png"
    if p.parent.name == "bsds-extra":
        return p.name in _held_out_bsds(str(p.parent.resolve()))
    return False


@lru_cache(maxsize=4)
def _held_out_bsds(folder: str) -> frozenset[str]:
    """Names of the held-out bsds-extra photos of ``folder`` (listed once, not once per photo asked about)."""
    return frozenset(sorted(q.name for q in Path(folder).glob("*.jpg"))[::BSDS_EVERY])


def pair_seed(name: str, k: int, seed: int = SEED) -> int:
    """Generator seed of version ``k`` of background ``name``."""
    import zlib

    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode()), k]).generate_state(1)[0])


def make_pair(clean: np.ndarray, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) uint8 arrays of version ``k`` of background ``name`` (HxWx3 uint8 in)."""
    x = image_to_tensor(clean)
    rainy, target = synthesize_pair(x, HEAVY_VAL, torch.Generator().manual_seed(pair_seed(name, k)), wrap=False)
    return tensor_to_uint8(rainy, "half_up"), tensor_to_uint8(target, "half_up")
