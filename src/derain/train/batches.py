"""Training batches: real rainy/clean pairs, synthetic pairs made on the fly from clean images, or a mix.

A batch of B holds ``B * data.synth_ratio`` synthetic pairs (each of one of the comma-separated presets of
``data.synth_preset``) in expectation (stochastic rounding, so a
ratio of 0.1 with batch 8 still means 10 % synthetic pairs overall, not none). Synthetic inputs come from
:func:`derain.data.synth.synthesize` with a ``torch.Generator`` of our own, whose state is saved with the
samplers' so that a resumed run draws exactly the rain an uninterrupted run would.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from derain.data.datasets import PairedPatches, load_clean_images, load_pairs
from derain.errors import DerainError
from derain.train.config import DataConfig

if TYPE_CHECKING:
    from derain.data.tasks import TaskBatches


def _synth_module() -> ModuleType:
    # Imported when first needed: runs without synthetic rain never load it, and import_module reads
    # sys.modules, so tests can stand in for it.
    try:
        return importlib.import_module("derain.data.synth")
    except ImportError as exc:
        raise DerainError(f"data.synth_ratio > 0 needs derain.data.synth, which failed to import: {exc}") from None


def _derived_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for ``stream`` (so the samplers of one run are not correlated)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


class TrainBatches:
    """``sample(batch, patch) -> (inputs, targets)`` from real pairs, synthetic pairs, or both."""

    def __init__(self, real: PairedPatches | None, clean: PairedPatches | None = None, synth_ratio: float = 0.0,
                 synth_preset: str = "light", seed: int = 0, photos: PairedPatches | None = None,
                 photo_ratio: float = 0.0, layers: PairedPatches | None = None, layer_ratio: float = 0.0) -> None:
        without_pairs = (synth_ratio if clean is not None else 0.0) + (photo_ratio if photos is not None else 0.0) \
            + (layer_ratio if layers is not None and clean is not None else 0.0)
        if real is None and without_pairs < 1.0 - 1e-9:
            raise DerainError("no training data: set data.train, or data.synth_ratio 1 with data.synth_clean")
        self.real, self.clean, self.synth_ratio = real, clean, synth_ratio if clean is not None else 0.0
        self.photos, self.photo_ratio = photos, photo_ratio if photos is not None else 0.0
        self.layers = layers
        self.layer_ratio = layer_ratio if layers is not None and clean is not None else 0.0
        self.generator = torch.Generator().manual_seed(_derived_seed(seed, 2))
        self.rain_configs: list[Any] = []
        if self.synth_ratio > 0:
            synth = _synth_module()
            try:
                # "real,heavy": each synthetic pair draws one of the presets, with equal chances
                self.rain_configs = [synth.preset(name.strip()) for name in synth_preset.split(",")]
            except (KeyError, ValueError) as exc:
                raise DerainError(f"config key 'data.synth_preset': {exc}") from None
            self._synthesize = synth.synthesize_pair

    @classmethod
    def from_config(cls, data: DataConfig, seed: int, cache_dir: Path | None = None,
                    device: torch.device | None = None, log: Callable[[str], None] = print) -> "TrainBatches":
        """Load what ``data`` names (real pairs only when they are used; clean images only for synthesis).

        With ``data.teacher`` the real pairs' targets come from the teacher (:mod:`derain.train.teacher`, run on
        ``device``, cached in ``cache_dir``).
        """
        real = None
        if data.synth_ratio + data.real_photos_ratio + data.real_layers_ratio < 1.0:
            assert data.train is not None  # validate() guarantees it
            pairs = load_pairs(data.train, data.train_max_images)
            if data.teacher:
                from derain.train.teacher import distilled_pairs

                pairs = distilled_pairs(pairs, data.teacher, data.teacher_ensemble, data.teacher_mix,
                                        cache_dir, device, log)
            real = PairedPatches(pairs, seed=seed, augment=data.augment, rain_mix=data.rain_mix)
        clean = None
        if data.synth_ratio > 0 or data.real_layers_ratio > 0:
            assert data.synth_clean is not None
            images = load_clean_images(data.synth_clean)
            if data.synth_exclude == "heavy-val":
                from derain.data.heavyval import is_held_out

                kept = [(n, a) for n, a in images if not is_held_out(n)]
                log(f"data.synth_exclude: left out {len(images) - len(kept)} heavy-val backgrounds")
                images = kept
            clean = PairedPatches([(n, a, a) for n, a in images], seed=_derived_seed(seed, 1),
                                  label="clean image (data.synth_clean)")
        photos = None
        if data.real_photos_ratio > 0:
            from derain.train.pseudo import pseudo_pairs

            assert data.real_photos and data.real_photos_teacher  # validate() guarantees it
            pairs = pseudo_pairs(data.real_photos, data.real_photos_side, data.real_photos_teacher,
                                 data.teacher_ensemble, cache_dir / "real_photos" if cache_dir else None, device, log)
            photos = PairedPatches(pairs, seed=_derived_seed(seed, 3), augment=data.augment,
                                   label="real photo (data.real_photos)")
        layers = None
        if data.real_layers_ratio > 0:
            from derain.train.pseudo import real_rain_layers

            assert data.real_photos  # validate() guarantees it
            layers = PairedPatches(real_rain_layers(data.real_photos, data.real_photos_side, log),
                                   seed=_derived_seed(seed, 4), augment=data.augment, label="real rain layer")
        return cls(real, clean, data.synth_ratio, data.synth_preset, seed, photos, data.real_photos_ratio,
                   layers, data.real_layers_ratio)

    def describe(self) -> str:
        parts = []
        if self.real is not None and self.synth_ratio < 1.0:
            parts.append(f"{len(self.real)} pairs")
        if self.synth_ratio > 0 and self.clean is not None:
            parts.append(f"synthetic rain from {len(self.clean)} clean images ({self.synth_ratio:.0%} of each batch)")
        if self.photo_ratio > 0 and self.photos is not None:
            parts.append(f"{len(self.photos)} real photos with pseudo-targets ({self.photo_ratio:.0%} of each batch)")
        if self.layer_ratio > 0 and self.layers is not None:
            parts.append(f"the rain of {len(self.layers)} real photos on clean images ({self.layer_ratio:.0%} of "
                         "each batch)")
        return " + ".join(parts)

    def check_patch(self, patch: int) -> None:
        """A patch larger than any source image is a config error, reported before training."""
        if self.real is not None and self.synth_ratio < 1.0:
            self.real.check_patch(patch)
        if self.clean is not None and self.synth_ratio > 0:
            self.clean.check_patch(patch)
        if self.photos is not None and self.photo_ratio > 0:
            self.photos.check_patch(patch)
        if self.layers is not None and self.layer_ratio > 0:
            self.layers.check_patch(patch)

    def _synthetic_count(self, batch: int, ratio: float | None = None) -> int:
        ratio = self.synth_ratio if ratio is None else ratio
        if ratio <= 0:
            return 0
        if ratio >= 1:
            return batch
        exact = batch * ratio
        whole = math.floor(exact)
        extra = float(torch.rand(1, generator=self.generator)) < exact - whole if exact > whole else False
        return whole + int(extra)

    def sample(self, batch: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: real pairs first, then synthetic ones (B x 3 x patch x patch floats in [0, 1])."""
        n_synth = self._synthetic_count(batch)
        n_photos = min(self._synthetic_count(batch, self.photo_ratio), batch - n_synth)
        n_layers = min(self._synthetic_count(batch, self.layer_ratio), batch - n_synth - n_photos)
        xs, ys = [], []
        if batch - n_synth - n_photos - n_layers > 0:
            assert self.real is not None
            x, y = self.real.sample(batch - n_synth - n_photos - n_layers, patch)
            xs.append(x)
            ys.append(y)
        if n_layers > 0:
            assert self.clean is not None and self.layers is not None
            _, clean = self.clean.sample(n_layers, patch)
            _, layer = self.layers.sample(n_layers, patch)
            xs.append((clean + layer).clamp_(0.0, 1.0))  # rain only adds light
            ys.append(clean)
        if n_photos > 0:
            assert self.photos is not None
            x, y = self.photos.sample(n_photos, patch)
            xs.append(x)
            ys.append(y)
        if n_synth > 0:
            assert self.clean is not None
            _, clean = self.clean.sample(n_synth, patch)
            if len(self.rain_configs) == 1:
                groups = [(self.rain_configs[0], clean)]
            else:  # one draw per pair, whatever the presets
                which = torch.randint(len(self.rain_configs), (n_synth,), generator=self.generator)
                groups = [(c, clean[which == i]) for i, c in enumerate(self.rain_configs) if bool((which == i).any())]
            for config, group in groups:
                rainy, target = self._synthesize(group, config, self.generator)
                xs.append(rainy.float().clamp_(0.0, 1.0))
                ys.append(target)
        if len(xs) == 1:
            return xs[0], ys[0]
        return torch.cat(xs), torch.cat(ys)

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next batches (for exact resume)."""
        return {"real": self.real.state_dict() if self.real is not None else None,
                "clean": self.clean.state_dict() if self.clean is not None else None,
                "photos": self.photos.state_dict() if self.photos is not None else None,
                "layers": self.layers.state_dict() if self.layers is not None else None,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "rng" in state and "real" not in state:  # a state written before synthetic mixing: the pairs only
            state = {"real": state, "clean": None, "generator": None}
        if self.real is not None and state.get("real") is not None:
            self.real.load_state_dict(state["real"])
        if self.clean is not None and state.get("clean") is not None:
            self.clean.load_state_dict(state["clean"])
        if self.photos is not None and state.get("photos") is not None:
            self.photos.load_state_dict(state["photos"])
        if self.layers is not None and state.get("layers") is not None:
            self.layers.load_state_dict(state["layers"])
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"])


def make_batches(data: DataConfig, seed: int, cache_dir: Path | None = None, device: torch.device | None = None,
                 log: Callable[[str], None] = print) -> "TrainBatches | TaskBatches":
    """The batch source ``data`` describes: :class:`TrainBatches` (pairs -> (input, target)) or, when
    ``data.tasks`` is set, all-in-one :class:`~derain.data.tasks.TaskBatches` (-> (input, target, task)).
    ``cache_dir``, ``device`` and ``log`` serve ``data.teacher`` (see :meth:`TrainBatches.from_config`)."""
    if not data.tasks:
        return TrainBatches.from_config(data, seed, cache_dir, device, log)
    from derain.data.tasks import TaskBatches, TaskSettings

    settings = TaskSettings(tasks=tuple(data.tasks), rain_synth_ratio=data.synth_ratio,
                            rain_preset=data.synth_preset)
    return TaskBatches.from_paths(clean=data.task_clean, rain=data.train, settings=settings, seed=seed,
                                  rain_max_images=data.train_max_images)
