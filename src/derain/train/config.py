"""Typed training configuration: dataclasses loaded from YAML, checked before any training starts.

Every key of the YAML file must be a field of the matching dataclass and have its type; anything else fails
with one line that names the dotted key (``optim.lrr: unknown key``), so a typo never silently trains with a
default; a key written twice is refused with both line numbers (:mod:`derain.files.yamlload`). ``--set key=value``
overrides use the same dotted keys and YAML syntax for the value. A file may name ``base: other.yaml`` (relative
to itself) and hold only what differs from it (:func:`read_config_mapping`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

from derain.data.datasets import AUGMENTATIONS
from derain.data.tasks import TASKS
from derain.errors import DerainError
from derain.files.yamlload import load_yaml_file, load_yaml_text


@dataclass
class ModelConfig:
    """Which registered network to train; ``options`` override its default config."""

    name: str = "fastderain"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    """One stage of a progressive patch schedule: from ``start`` (step) on, use this patch and batch."""

    start: int = 0
    patch: int = 128
    batch: int = 8


@dataclass
class DataConfig:
    """Paired training data, optional synthetic rain mixed in, and the validation set.

    ``batch`` is per process: under torchrun the effective batch of one optimiser step is
    ``batch x world_size x optim.accumulate`` (each process draws different patches; gradients are averaged).

    ``synth_ratio`` is the fraction of each batch made of synthetic pairs: clean patches cropped from the
    images under ``synth_clean`` (a folder searched recursively, or several separated by commas) with rain
    added by :mod:`derain.data.synth` using preset ``synth_preset``. With ``synth_ratio: 1.0`` the real pairs
    are not used at all and ``train`` may be null (training on synthetic rain only).
    """

    train: str | None = None  # e.g. ../shared/data/rain100l-train (RainTrainL); the config files name it
    val: str | None = None
    patch: int = 128
    batch: int = 8  # per process, see above
    stages: list[Stage] = field(default_factory=list)  # Restormer-style progressive patches; empty = fixed
    val_max_images: int | None = None  # score only the first N validation pairs (faster monitoring)
    train_max_images: int | None = None  # train on the first N pairs only (quick experiments, tests)
    synth_ratio: float = 0.0
    synth_clean: str | None = None  # e.g. ../shared/data/clean
    synth_preset: str = "light"
    # Clean images under synth_clean to leave out: "heavy-val" skips the backgrounds of the heavy-rain
    # validation set (derain.data.heavyval), so that a model is never trained on them.
    synth_exclude: str | None = None
    # Transforms of the real training patches: "dihedral" (all 8 flips and quarter turns), "flips" (the 4
    # that keep vertical rain streaks vertical) or "none" (see derain.data.datasets.AUGMENTATIONS).
    augment: str = "dihedral"
    # Probability that a real training patch gets another pair's rain layer (input - target) on its own clean
    # patch: more rain/background combinations from the same pairs (additive rain only, e.g. Rain100L).
    rain_mix: float = 0.0
    # Self-distillation (derain.train.teacher): the real pairs' targets become ``teacher_mix`` x the output of
    # the model in ``teacher`` (a checkpoint or run folder) under self-ensemble ``teacher_ensemble`` plus
    # (1 - ``teacher_mix``) x the ground truth, computed once per run and cached in its run folder.
    teacher: str | None = None
    teacher_ensemble: str = "flips"
    teacher_mix: float = 1.0
    # Real rainy photos without ground truth (derain.train.pseudo): the training photos of a real-rain folder
    # (the 30 that derain.data.realrain holds out are never loaded), downscaled so that their shorter side is at
    # most ``real_photos_side``, with pseudo-targets from ``real_photos_teacher`` (a checkpoint or run folder)
    # under ``teacher_ensemble``, where rain only takes light away; ``real_photos_ratio`` of each batch.
    real_photos: str | None = None
    real_photos_ratio: float = 0.0
    real_photos_side: int = 640
    real_photos_teacher: str | None = None
    # Real rain layers (derain.train.pseudo.real_rain_layers): the rain estimated in the same training photos
    # (at ``real_photos_side``) added to clean patches of ``synth_clean``: ``real_layers_ratio`` of each batch.
    real_layers_ratio: float = 0.0
    # All-in-one training: patches of these tasks in balanced rounds (derain.data.tasks.TaskBatches), rain
    # from ``train`` (plus ``synth_ratio`` synthetic), the other tasks synthesised from ``task_clean``.
    tasks: list[str] = field(default_factory=list)
    task_clean: str | None = None  # e.g. ../shared/data/clean/kodak24; keep CBSD68, the noise test set, out of training


@dataclass
class OptimConfig:
    """Optimiser: ``adamw`` or ``adam``; ``grad_clip`` is a max global gradient norm (None = off)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = None
    accumulate: int = 1  # gradient accumulation: optimiser step every N micro-batches
    # torch's fused Adam/AdamW kernel (one pass over all parameters): the default model's optimiser step took
    # 6.2 ms instead of 26.5 on a 2-core AVX2 CPU (benchmarks/train_step.py --fused, docs/journal/fastderain.md).
    # The same algorithm, rounded differently (weights 3e-8 apart after 50 steps), so off by default: the recorded
    # recipes reproduce exactly only with the per-parameter loop they trained with.
    fused: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (see :mod:`derain.train.schedules`).

    ``cosine``: linear warmup over ``warmup_steps`` then cosine to ``min_lr``; ``restormer``: constant-then-cosine
    cyclic (``periods``, ``restart_weights``, ``eta_mins``); ``step``: multiply by ``gamma`` every
    ``step_size`` steps; ``exponential``: ``lr * gamma ** (step / step_size) + min_lr`` (MSPFN's continuous
    decay; here ``min_lr`` is added, not a floor); ``plateau``: after the warmup, multiply by ``factor`` (not
    below ``min_lr``) when the validation PSNR has not improved for more than ``patience`` validations (needs
    ``data.val``; validations happen every ``val_every`` steps); ``constant``.
    """

    name: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 1e-6
    periods: list[int] = field(default_factory=list)
    restart_weights: list[float] = field(default_factory=list)
    eta_mins: list[float] = field(default_factory=list)
    gamma: float = 0.5
    step_size: int = 1000
    factor: float = 0.5  # plateau
    patience: int = 2  # plateau: validations without improvement before the lr drops


@dataclass
class LossTerm:
    """One weighted loss term; ``options`` go to the loss's constructor (see :mod:`derain.losses`)."""

    name: str = "l1"
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Everything one training run needs.

    ``device`` is ``cpu`` or ``cuda``; under torchrun each process takes GPU ``LOCAL_RANK``. ``threads``
    is per process (on one machine, give each of N processes about cores / N).
    """

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm()])
    total_steps: int = 10000  # the schedule's length
    # End the run at this step although the schedule runs to total_steps: how a recipe reproduces a recorded
    # run that a time budget stopped early. None = total_steps.
    stop_step: int | None = None
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32 (auto: bf16 where the processor supports it)
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    # auto | channels_last | contiguous. auto: channels-last for networks that declare they train faster in it
    # (FastDerain: 235 vs 323 ms per bf16 step, 364 vs 499 in float32, 96x96 x 8, 2 threads,
    # docs/journal/fastderain.md).
    memory_format: str = "auto"
    ema_decay: float = 0.0  # 0 disables the EMA of weights
    val_every: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    out_dir: str = "runs"
    warm_start: str | None = None  # initial weights: a checkpoint or a run folder (e.g. stage 1's)
    time_budget_minutes: float | None = None
    # Stop with an error when the running loss (an average over about 50 steps) exceeds this multiple of its
    # lowest value in the run: a diverged run would otherwise spend its budget and overwrite its last
    # checkpoint with broken weights (measured: a peak lr of 3e-3 took the default model's L1 from 0.019 to
    # 0.78 within 100 steps). Checked from 50 steps after the start, for positive losses only; 0 turns it off.
    divergence_factor: float = 10.0
    tensorboard: bool = False  # also log to <run>/tensorboard (needs the tensorboard package)

    @property
    def end_step(self) -> int:
        """The step at which the run is finished: ``stop_step`` where set, else ``total_steps``."""
        return self.stop_step if self.stop_step is not None else self.total_steps

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` (converting ints to floats and nested dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except DerainError:
                continue
        raise DerainError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a dataclass type (is_dataclass also takes instances)
        if not isinstance(value, dict):
            raise DerainError(f"config key {key!r}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise DerainError(f"config key {key!r}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DerainError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as a number
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DerainError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DerainError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise DerainError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise DerainError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a programming error, not the user's


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`DerainError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise DerainError(f"config key '{prefix}{key}': unknown key (known: {', '.join(sorted(names))})")
    kwargs = {key: _convert(value, hints[key], f"{prefix}{key}") for key, value in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed YAML value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DerainError(f"override {text!r} must look like key=value (dotted keys, e.g. optim.lr=5e-4)")
    try:
        value = load_yaml_text(raw, f"override {text!r}") if raw.strip() else None
    except DerainError as exc:
        if "duplicate key" in str(exc):  # {a: 1, a: 2} is a mistake; unparsable text is a plain string
            raise
        value = raw
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], text: str) -> None:
    """Set a dotted key in the raw config mapping (validation happens when the dataclass is built)."""
    keys, value = parse_override(text)
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise DerainError(f"override {text!r}: {'.'.join(keys[:i + 1])!r} is not a mapping")
        node = child
    node[keys[-1]] = value


def merge_mappings(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``: mappings merge key by key, anything else (lists included) is replaced."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_with_base(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The mapping of ``path`` laid over the file its ``base:`` names (relative to ``path``), recursively."""
    if not path.is_file():
        raise DerainError(f"config file not found: {path}" + (f" (the base of {chain[-1]})" if chain else ""))
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved):], resolved))
        raise DerainError(f"config {path}: its bases form a cycle ({cycle})")
    loaded = load_yaml_file(path)  # a key written twice is refused, with both line numbers
    if loaded is not None and not isinstance(loaded, dict):
        raise DerainError(f"config {path} must be a mapping of keys to values")
    data = dict(loaded or {})
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise DerainError(f"config {path}: 'base' must name another config file, got {base!r}")
    # A stage file names the file it differs from; its own keys win, nested mappings merge.
    return merge_mappings(_read_with_base(path.parent / base, (*chain, resolved)), data)


def read_config_mapping(path: str | Path | None, overrides: typing.Iterable[str] = ()) -> dict[str, Any]:
    """The raw mapping of a YAML config file (empty without one), with ``key=value`` overrides applied.

    A file may start from another with ``base: other.yaml`` (a path relative to the file) and hold only its
    differences: mappings merge key by key, lists and other values replace the base's; a cycle of bases is an
    error.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_with_base(Path(path), ())
    for text in overrides:
        apply_override(data, text)
    return data


def load_config(path: str | Path | None, overrides: typing.Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config, apply ``key=value`` overrides and validate everything."""
    data = read_config_mapping(path, overrides)
    config = from_dict(TrainConfig, data)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Value checks that the types alone do not express."""
    checks = [
        (config.total_steps > 0, "total_steps must be positive"),
        (config.stop_step is None or 0 < config.stop_step <= config.total_steps,
         "stop_step must be between 1 and total_steps"),
        (config.data.patch > 0 and config.data.batch > 0, "data.patch and data.batch must be positive"),
        (config.optim.name in ("adam", "adamw"), f"optim.name must be adam or adamw, not {config.optim.name!r}"),
        (config.optim.lr > 0, "optim.lr must be positive"),
        (len(config.optim.betas) == 2, "optim.betas needs two values"),
        (config.optim.accumulate >= 1, "optim.accumulate must be at least 1"),
        (0.0 <= config.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
        (config.divergence_factor == 0 or config.divergence_factor > 1,
         "divergence_factor must be 0 (off) or above 1"),
        (config.precision in ("auto", "bf16", "fp32"),
         f"precision must be auto, bf16 or fp32, not {config.precision!r}"),
        (config.memory_format in ("auto", "channels_last", "contiguous"),
         f"memory_format must be auto, channels_last or contiguous, not {config.memory_format!r}"),
        (config.val_every > 0 and config.checkpoint_every > 0 and config.log_every > 0,
         "val_every, checkpoint_every and log_every must be positive"),
        (bool(config.loss), "loss needs at least one term"),
        (0.0 <= config.data.synth_ratio <= 1.0, "data.synth_ratio must be in [0, 1]"),
        (0.0 <= config.data.real_photos_ratio <= 1.0 - config.data.synth_ratio,
         "data.real_photos_ratio must be in [0, 1 - data.synth_ratio]"),
        (config.data.real_layers_ratio == 0.0 or bool(config.data.real_photos and config.data.synth_clean),
         "data.real_layers_ratio > 0 needs data.real_photos and data.synth_clean (the backgrounds)"),
        (config.data.real_photos_ratio + config.data.real_layers_ratio + config.data.synth_ratio <= 1.0 + 1e-9,
         "data.synth_ratio + data.real_photos_ratio + data.real_layers_ratio must be at most 1"),
        (config.data.real_photos_ratio == 0.0 or bool(config.data.real_photos and config.data.real_photos_teacher),
         "data.real_photos_ratio > 0 needs data.real_photos (a folder of real rainy photos) and "
         "data.real_photos_teacher"),
        (config.data.synth_exclude in (None, "heavy-val"),
         f"data.synth_exclude must be null or 'heavy-val', got {config.data.synth_exclude!r}"),
        (0.0 <= config.data.rain_mix <= 1.0, "data.rain_mix must be in [0, 1]"),
        (0.0 < config.data.teacher_mix <= 1.0, "data.teacher_mix must be in (0, 1]"),
        (not config.data.teacher or not config.data.tasks, "data.teacher does not combine with data.tasks"),
        (not config.data.teacher or config.data.synth_ratio < 1.0, "data.teacher needs real pairs (data.train)"),
        (config.data.augment in AUGMENTATIONS,
         f"data.augment must be one of {', '.join(AUGMENTATIONS)}, not {config.data.augment!r}"),
        (all(t in TASKS for t in config.data.tasks),
         f"data.tasks must be among {', '.join(TASKS)}, not {config.data.tasks}"),
        (set(config.data.tasks) <= {"rain"} or bool(config.data.task_clean),
         "data.tasks other than rain need data.task_clean (a folder of clean images, e.g. Kodak24)"),
        (not config.data.tasks or config.data.synth_ratio == 0.0 or bool(config.data.train),
         "data.tasks with rain needs data.train (rainy/clean pairs)"),
        (bool(config.data.tasks) or config.data.synth_ratio == 0.0 or bool(config.data.synth_clean),
         "data.synth_ratio > 0 needs data.synth_clean (a folder of clean images, e.g. ../shared/data/clean)"),
        (config.data.synth_ratio == 1.0 or bool(config.data.train) or
         (bool(config.data.tasks) and "rain" not in config.data.tasks),
         "data.train is needed unless data.synth_ratio is 1 (synthetic pairs only)"),
        (config.schedule.name != "plateau" or bool(config.data.val),
         "schedule plateau is driven by the validation PSNR: set data.val"),
    ]
    for ok, message in checks:
        if not ok:
            raise DerainError(f"config: {message}")
