"""Five-task training batches (rain, haze, noise, blur, low light) and fixed-seed synthetic test sets.

:data:`TASKS` fixes the task order; it is the class order of the all-in-one model's degradation selector, so
a batch's ``task`` tensor can be used directly as cross-entropy targets.

Where each task's pairs come from:

- rain: the real RainTrainL pairs (``../shared/data/rain100l-train``), optionally mixed with synthetic
  rain on clean images (:mod:`derain.data.synth`);
- haze, noise, blur, low light: synthesised on the fly from clean images with :mod:`derain.data.degrade`.

The clean training images default to Kodak24 so that CBSD68, the denoising benchmark, stays out of
training; the synthetic test sets are made from CBSD68 (see :func:`load_synthetic_test_set`).

:class:`TaskBatches` samples tasks in shuffled rounds (every enabled task once per round, in random order),
so over any number of draws each task's count differs from the others' by at most one per round in
progress: balanced, unlike independent draws whose counts wander by sqrt(n). Like
:class:`derain.train.batches.TrainBatches`, all randomness lives in numpy/torch generators whose states are
returned by :meth:`TaskBatches.state_dict`, so a resumed run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from derain.data.datasets import PairedPatches, load_clean_images, load_pairs, to_tensor
from derain.data.degradations import TASKS
from derain.data.degrade import (
    BlurConfig,
    HazeConfig,
    LowLightConfig,
    add_gaussian_noise,
    add_haze,
    add_low_light,
    add_motion_blur,
)
from derain.data.synth import add_rain
from derain.data.tensors import tensor_to_uint8
from derain.errors import DerainError

NOISE_SIGMAS: tuple[float, ...] = (15.0, 25.0, 50.0)


def task_index(task: str) -> int:
    """Position of ``task`` in :data:`TASKS` (the selector's class index)."""
    if task not in TASKS:
        raise DerainError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS.index(task)


def _derived_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed per random stream, so the samplers of one run are not correlated."""
    return int(np.random.SeedSequence([seed, 0x7A5C, stream]).generate_state(1)[0])


@dataclass(frozen=True)
class TaskSettings:
    """Which tasks to train and how each is degraded.

    ``tasks``: a subset of :data:`TASKS` (task indices stay those of :data:`TASKS`). ``noise_sigmas``: each
    noise sample uses one of these levels (0-255 scale), chosen uniformly. ``rain_synth_ratio``: the
    fraction of rain samples made with synthetic rain (preset ``rain_preset``) on clean images instead of
    taken from the real pairs; 1.0 needs no rain pairs at all.
    """

    tasks: tuple[str, ...] = TASKS
    noise_sigmas: tuple[float, ...] = NOISE_SIGMAS
    rain_synth_ratio: float = 0.0
    rain_preset: str = "light"
    haze: HazeConfig = field(default_factory=HazeConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    lowlight: LowLightConfig = field(default_factory=LowLightConfig)

    def __post_init__(self) -> None:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise DerainError(f"tasks must be a non-empty list without repeats, got {list(self.tasks)}")
        for t in self.tasks:
            task_index(t)
        if not self.noise_sigmas or min(self.noise_sigmas) < 0:
            raise DerainError(f"noise_sigmas must be non-negative levels, got {list(self.noise_sigmas)}")
        if not 0.0 <= self.rain_synth_ratio <= 1.0:
            raise DerainError(f"rain_synth_ratio must be in [0, 1], got {self.rain_synth_ratio}")

    @property
    def uses_rain_pairs(self) -> bool:
        return "rain" in self.tasks and self.rain_synth_ratio < 1.0

    @property
    def uses_clean(self) -> bool:
        return any(t != "rain" for t in self.tasks) or ("rain" in self.tasks and self.rain_synth_ratio > 0)


def degrade(task: str, clean: torch.Tensor, generator: torch.Generator, settings: TaskSettings = TaskSettings(),
            sigma: float | torch.Tensor | None = None, wrap: bool = True) -> torch.Tensor:
    """Synthetic degradation of ``task`` applied to ``clean`` (B x 3 x H x W in [0, 1]).

    ``sigma`` (noise only): the level(s) on the 0-255 scale; by default one of ``settings.noise_sigmas`` per
    image, drawn from ``generator``. ``wrap`` (rain only): see :func:`derain.data.synth.sample_rain`.
    """
    if task == "noise":
        if sigma is None:
            levels = torch.tensor(settings.noise_sigmas, dtype=torch.float32)
            sigma = levels[torch.randint(len(levels), (clean.shape[0],), generator=generator)]
        return add_gaussian_noise(clean, sigma, generator)
    if task == "haze":
        return add_haze(clean, generator, settings.haze)[0]
    if task == "blur":
        return add_motion_blur(clean, generator, settings.blur)[0]
    if task == "lowlight":
        return add_low_light(clean, generator, settings.lowlight)[0]
    if task == "rain":
        return add_rain(clean, generator, settings.rain_preset, wrap=wrap)
    raise DerainError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


class TaskBatches:
    """``sample(batch, patch) -> (degraded, clean, task)`` for the five all-in-one tasks, balanced.

    ``rain``: real rainy/clean pairs (needed unless ``settings.rain_synth_ratio`` is 1 or rain is not
    trained); ``clean``: clean images (the same array as input and target, as for synthetic rain in
    :class:`~derain.train.batches.TrainBatches`) for every synthesised task. Samples of one batch are in
    the order their tasks were drawn (tasks mixed within a batch); ``task`` is a B int64 tensor of indices
    into :data:`TASKS`.
    """

    def __init__(self, clean: PairedPatches | None, rain: PairedPatches | None = None,
                 settings: TaskSettings = TaskSettings(), seed: int = 0) -> None:
        if settings.uses_rain_pairs and rain is None:
            raise DerainError("the rain task needs rainy/clean pairs, or rain_synth_ratio 1 with clean images")
        if settings.uses_clean and clean is None:
            raise DerainError(f"tasks {', '.join(t for t in settings.tasks if t != 'rain') or 'rain (synthetic)'} "
                              "need clean images to synthesise from")
        self.clean, self.rain, self.settings = clean, rain, settings
        self.enabled = [task_index(t) for t in settings.tasks]
        self.rng = np.random.default_rng(_derived_seed(seed, 0))  # task order
        self.queue: list[int] = []  # tasks drawn for the current round, not yet used
        self.generator = torch.Generator().manual_seed(_derived_seed(seed, 1))  # all degradations

    @classmethod
    def from_paths(cls, clean: str | None, rain: str | None, settings: TaskSettings = TaskSettings(), seed: int = 0,
                   rain_max_images: int | None = None) -> "TaskBatches":
        """Load the rain pairs and clean images the settings need (``clean``: comma-separated folders, e.g.
        Kodak24 but not CBSD68, the noise task's test set; ``rain``: a folder of pairs such as RainTrainL)."""
        rain_patches = clean_patches = None
        if settings.uses_rain_pairs:
            if rain is None:
                raise DerainError("the rain task needs a folder of rainy/clean pairs (or rain_synth_ratio 1)")
            rain_patches = PairedPatches(load_pairs(rain, rain_max_images), seed=_derived_seed(seed, 2),
                                         label="rain training pair")
        if settings.uses_clean:
            if clean is None:
                raise DerainError("haze, noise, blur and low light need a folder of clean images")
            images = load_clean_images(clean)
            clean_patches = PairedPatches([(n, a, a) for n, a in images], seed=_derived_seed(seed, 3),
                                          label="clean image")
        return cls(clean_patches, rain_patches, settings, seed)

    def describe(self) -> str:
        """One line for the training log."""
        s = self.settings
        parts = [f"{len(s.tasks)} tasks balanced ({', '.join(s.tasks)})"]
        if s.uses_rain_pairs and self.rain is not None:
            synth = f" + {s.rain_synth_ratio:.0%} synthetic" if s.rain_synth_ratio > 0 else ""
            parts.append(f"rain from {len(self.rain)} pairs{synth}")
        if s.uses_clean and self.clean is not None:
            parts.append(f"synthetic degradations of {len(self.clean)} clean images")
        return "; ".join(parts)

    def check_patch(self, patch: int) -> None:
        """A patch larger than any source image is a config error, reported before training."""
        if self.rain is not None and self.settings.uses_rain_pairs:
            self.rain.check_patch(patch)
        if self.clean is not None and self.settings.uses_clean:
            self.clean.check_patch(patch)

    def next_tasks(self, n: int) -> list[int]:
        """The task indices of the next ``n`` samples (shuffled rounds of the enabled tasks)."""
        while len(self.queue) < n:
            self.queue += [self.enabled[i] for i in self.rng.permutation(len(self.enabled))]
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def sample(self, batch: int, patch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: (degraded, clean, task), B x 3 x patch x patch floats in [0, 1] and B int64."""
        self.check_patch(patch)
        task = torch.tensor(self.next_tasks(batch), dtype=torch.int64)
        rain_id = TASKS.index("rain")
        # Which rain samples are synthetic, drawn before anything else so the draw order never depends on values.
        is_rain = task == rain_id
        synthetic = ~is_rain
        ratio = self.settings.rain_synth_ratio
        if ratio > 0 and bool(is_rain.any()):
            coin = (torch.rand(batch, generator=self.generator) < ratio if ratio < 1
                    else torch.ones(batch, dtype=torch.bool))
            synthetic = synthetic | (is_rain & coin)
        degraded = torch.empty(batch, 3, patch, patch)
        clean = torch.empty_like(degraded)
        real = (~synthetic).nonzero().flatten()
        if len(real):
            assert self.rain is not None
            x, y = self.rain.sample(len(real), patch)
            degraded[real], clean[real] = x, y
        made = synthetic.nonzero().flatten()
        if len(made):
            assert self.clean is not None
            _, y = self.clean.sample(len(made), patch)
            clean[made] = y
            for t, name in enumerate(TASKS):  # one batched call per task, in a fixed order
                idx = made[task[made] == t]
                if len(idx):
                    degraded[idx] = degrade(name, clean[idx], self.generator, self.settings)
        return degraded, clean, task

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next batches (for exact resume)."""
        return {"tasks": {"rng": self.rng.bit_generator.state, "queue": list(self.queue)},
                "rain": self.rain.state_dict() if self.rain is not None else None,
                "clean": self.clean.state_dict() if self.clean is not None else None,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.rng.bit_generator.state = state["tasks"]["rng"]
        self.queue = [int(t) for t in state["tasks"]["queue"]]
        if self.rain is not None and state.get("rain") is not None:
            self.rain.load_state_dict(state["rain"])
        if self.clean is not None and state.get("clean") is not None:
            self.clean.load_state_dict(state["clean"])
        self.generator.set_state(state["generator"])


# ------------------------------------------------------------------------------------------ synthetic test sets
SYNTHETIC_TEST_TASKS: tuple[tuple[str, float | None], ...] = (
    ("noise", 15.0), ("noise", 25.0), ("noise", 50.0), ("haze", None), ("blur", None), ("lowlight", None))


def synthetic_set_name(task: str, source: str = "cbsd68", sigma: float | None = None) -> str:
    """The name a synthetic test set is reported under, e.g. ``cbsd68-noise25-synthetic``."""
    level = f"{sigma:g}" if task == "noise" and sigma is not None else ""
    return f"{source}-{task}{level}-synthetic"


def _image_seed(seed: int, task: str, sigma: float | None, name: str) -> int:
    # From the file name, not the list position: an image's degradation does not depend on which other
    # images are in the list, and crc32 is the same on every machine (Python's hash() is salted).
    stem = Path(name).stem
    return int(np.random.SeedSequence([seed, task_index(task), int(round((sigma or 0) * 1000)),
                                       zlib.crc32(stem.encode())]).generate_state(1)[0])


def make_test_set(task: str, clean_images: Sequence[tuple[str, np.ndarray]], seed: int = 0,
                  sigma: float | None = 25.0, settings: TaskSettings = TaskSettings()
                  ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Fixed synthetic (name, degraded, clean) uint8 H x W x 3 triples of ``task`` on ``clean_images``.

    ``clean_images``: (name, uint8 H x W x 3) as from :func:`derain.data.datasets.load_clean_images`; names
    are reduced to their stems. The result has the format of :func:`derain.data.datasets.load_pairs`, so it
    can serve as a validation set. Each image gets a generator seeded from (``seed``, task, sigma, name), so
    two calls give the same pixels, and so do two machines with the same torch version (torch's CPU random
    streams are fixed per version): outputs are rounded to 8 bits, which absorbs last-bit float differences
    between CPUs unless a value lands within about 1e-6 of a rounding boundary. ``sigma`` is used by ``noise``
    only, which follows the all-in-one protocol (clip, truncate to uint8: see
    :func:`derain.data.degrade.add_gaussian_noise`). ``rain`` is supported (synthetic rain, no wrap-around) but the real
    Rain100L set is the benchmark.
    """
    task_index(task)
    if task == "noise" and sigma is None:
        raise DerainError("the noise test set needs a sigma (15, 25 or 50 on the 0-255 scale)")
    out = []
    for name, image in clean_images:
        generator = torch.Generator().manual_seed(_image_seed(seed, task, sigma if task == "noise" else None, name))
        x = to_tensor(np.asarray(image, dtype=np.uint8)[None].copy())
        if task == "noise":
            y = add_gaussian_noise(x, float(sigma), generator, quantize=True)  # type: ignore[arg-type]
        else:
            y = degrade(task, x, generator, settings, wrap=False)
        degraded = tensor_to_uint8(y)
        out.append((Path(name).stem, degraded, np.asarray(image, dtype=np.uint8)))
    return out


def load_synthetic_test_set(task: str, root: str | Path, sigma: float | None = 25.0,
                            limit: int | None = None, seed: int = 0
                            ) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """``(name, triples)``: :func:`make_test_set` on the images under ``root`` (e.g. CBSD68; the first ``limit``).

    The name says the set is synthetic and where it comes from (``cbsd68-haze-synthetic``); report numbers
    under it, never as SOTS, GoPro or LOL numbers.
    """
    images = load_clean_images(str(root))
    if limit is not None:
        images = images[:limit]
    name = synthetic_set_name(task, Path(root).name, sigma if task == "noise" else None)
    return name, make_test_set(task, images, seed=seed, sigma=sigma)


def write_test_set(triples: Sequence[tuple[str, np.ndarray, np.ndarray]], folder: str | Path) -> Path:
    """Write triples as ``folder/input/<name>.png`` + ``folder/target/<name>.png`` (a layout ``derain`` reads)."""
    from PIL import Image

    folder = Path(folder)
    for sub in ("input", "target"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name, degraded, clean in triples:
        Image.fromarray(degraded).save(folder / "input" / f"{name}.png")
        Image.fromarray(clean).save(folder / "target" / f"{name}.png")
    return folder
