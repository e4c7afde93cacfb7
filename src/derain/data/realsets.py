"""Pairs of the real all-in-one benchmarks in the layouts their authors ship: SOTS-outdoor, GoPro and LOL.

None of these sets is on this machine; users point at their own copy. Each function takes the dataset's
folder (or a folder inside it, see each docstring) and returns :class:`derain.data.pairs.Pair` objects
(``input``, ``target``, ``name``) in natural order, like :func:`derain.data.pairs.find_pairs`; a layout
it does not recognise is one :class:`DerainError` that names the folder and the layouts it expected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from derain.data.pairs import Pair, images_in
from derain.errors import DerainError
from derain.files.imageio import natural_key


def _folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DerainError(f"dataset folder not found: {root}")
    return root


def _same_name(inputs: list[Path], targets: list[Path], where: Path, prefix: str = "") -> list[Pair]:
    """Pair files of the same stem (GoPro, LOL); an input without a target is an error naming it."""
    by_stem = {t.stem: t for t in targets}
    missing = [p.name for p in inputs if p.stem not in by_stem]
    if missing:
        raise DerainError(f"{len(missing)} input file(s) in {where} have no ground truth of the same name: "
                          f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    return [Pair(p, by_stem[p.stem], prefix + p.stem) for p in inputs]


# ------------------------------------------------------------------------------------------------- SOTS
SOTS_LAYOUTS: tuple[tuple[str, str], ...] = (("hazy", "gt"), ("hazy", "GT"), ("hazy", "clear"), ("input", "target"))


def sots_pairs(root: str | Path) -> list[Pair]:
    """SOTS (RESIDE) pairs: ``hazy/0001_0.8_0.2.jpg`` -> ``gt/0001.png`` (also ``clear/``, ``GT/``).

    ``root`` is the folder holding ``hazy/`` and the ground truth, or its parent holding ``outdoor/`` (the
    SOTS download has ``outdoor/`` and ``indoor/``; outdoor is the all-in-one benchmark). PromptIR's copy
    (``input/`` + ``target/`` with the same names) is read too. A hazy file's scene is the part of its name
    before the first ``_`` (``<scene>_<A>_<beta>``; indoor's ``1400_1``); several hazy versions of one scene
    (RESIDE's OTS/ITS training sets) all pair with its ground truth; ground truths without a hazy version
    are ignored.
    """
    root = _folder(root)
    for base in (root, root / "outdoor"):
        for inp, tgt in SOTS_LAYOUTS:
            if (base / inp).is_dir() and (base / tgt).is_dir():
                hazy, gts = images_in(base / inp), images_in(base / tgt)
                if not hazy:
                    raise DerainError(f"no hazy images in {base / inp}")
                by_scene: dict[str, list[Path]] = {}
                for g in gts:
                    by_scene.setdefault(g.stem, []).append(g)
                pairs, missing = [], []
                for h in hazy:
                    found = by_scene.get(h.stem.split("_")[0], [])
                    if len(found) > 1:
                        raise DerainError(f"ambiguous ground truth for {h.name} in {base / tgt}: "
                                          f"{', '.join(f.name for f in found)}")
                    if found:
                        pairs.append(Pair(h, found[0], h.stem))
                    else:
                        missing.append(h.name)
                if missing:
                    raise DerainError(f"{len(missing)} hazy file(s) in {base / inp} have no ground truth "
                                      f"<scene>.* in {base / tgt}: {', '.join(missing[:4])}")
                return pairs
    known = ", ".join(f"{a}/ + {b}/" for a, b in SOTS_LAYOUTS)
    raise DerainError(f"not a SOTS folder: {root} (expected {known}, there or in {root / 'outdoor'})")


# ------------------------------------------------------------------------------------------------ GoPro
def gopro_pairs(root: str | Path, split: str = "test", blur: str = "blur") -> list[Pair]:
    """GoPro pairs: ``<split>/<scene>/blur/*.png`` with ``<split>/<scene>/sharp/*.png`` of the same name.

    ``root``: the GoPro folder (holding ``train/`` and ``test/``), the split folder itself (holding the
    scene folders), or one scene folder (holding ``blur/`` + ``sharp/``). ``blur="blur_gamma"`` picks the
    gamma-corrected blurry frames that the download also ships. Names are ``<scene>/<frame>``.
    """
    root = _folder(root)

    def is_scene(d: Path) -> bool:
        return (d / blur).is_dir() and (d / "sharp").is_dir()

    if is_scene(root):
        scenes = [root]
    else:
        base = root / split if (root / split).is_dir() else root
        scenes = sorted((d for d in base.iterdir() if d.is_dir() and is_scene(d)), key=natural_key)
        if not scenes:
            raise DerainError(f"not a GoPro folder: {root} (expected {split}/<scene>/{blur}/ + sharp/, "
                              f"<scene>/{blur}/ + sharp/, or {blur}/ + sharp/)")
    pairs: list[Pair] = []
    for scene in scenes:
        inputs = images_in(scene / blur)
        if not inputs:
            raise DerainError(f"no blurry images in {scene / blur}")
        pairs += _same_name(inputs, images_in(scene / "sharp"), scene / blur, prefix=f"{scene.name}/")
    return pairs


# -------------------------------------------------------------------------------------------------- LOL
def lol_pairs(root: str | Path, split: str = "eval15") -> list[Pair]:
    """LOL pairs: ``eval15/low/N.png`` with ``eval15/high/N.png`` (``split="our485"`` for the training set).

    ``root``: the LOL folder (holding ``eval15/`` and ``our485/``) or the split folder itself (holding
    ``low/`` + ``high/``).
    """
    root = _folder(root)
    for base in (root / split, root):
        if (base / "low").is_dir() and (base / "high").is_dir():
            inputs = images_in(base / "low")
            if not inputs:
                raise DerainError(f"no low-light images in {base / 'low'}")
            return _same_name(inputs, images_in(base / "high"), base / "low")
    raise DerainError(f"not a LOL folder: {root} (expected {split}/low/ + {split}/high/, or low/ + high/)")


# ------------------------------------------------------------------------------------------------ reading
REAL_SETS: dict[str, tuple[str, Callable[..., list[Pair]]]] = {
    "sots": ("haze", sots_pairs), "gopro": ("blur", gopro_pairs), "lol": ("lowlight", lol_pairs)}


def real_set_pairs(kind: str, root: str | Path, **options: str) -> list[Pair]:
    """Pairs of the real set ``kind`` (``sots``, ``gopro`` or ``lol``); ``options`` go to its function."""
    if kind not in REAL_SETS:
        raise DerainError(f"unknown real set {kind!r}; choose one of {', '.join(REAL_SETS)}")
    return REAL_SETS[kind][1](root, **options)


def load_real_set(kind: str, root: str | Path, limit: int | None = None,
                  **options: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, input, target) uint8 H x W x 3 arrays of a real set, the format of ``load_pairs``."""
    from derain.files.imageio import read_uint8_rgb

    pairs = real_set_pairs(kind, root, **options)[:limit]
    out = []
    for pair in pairs:
        inp, tgt = read_uint8_rgb(pair.input), read_uint8_rgb(pair.target)
        dh, dw = tgt.shape[0] - inp.shape[0], tgt.shape[1] - inp.shape[1]
        if kind == "sots" and dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0:
            # SOTS-indoor's hazy images are the ground truth less a 10-pixel border: crop it the same way.
            tgt = tgt[dh // 2:tgt.shape[0] - dh // 2, dw // 2:tgt.shape[1] - dw // 2]
        if inp.shape != tgt.shape:
            raise DerainError(f"pair {pair.name}: input {inp.shape[:2]} and target {tgt.shape[:2]} differ in size")
        out.append((pair.name, inp, tgt))
    return out
