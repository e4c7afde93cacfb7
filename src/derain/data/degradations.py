"""The degradations the all-in-one networks restore, and the synthetic rain presets, by name: one list each for
the data, the networks' heads and selector, the registry and the command line (no torch here: ``derain models`` and
``derain --help`` read it)."""
from __future__ import annotations

TASKS: tuple[str, ...] = ("rain", "haze", "noise", "blur", "lowlight")
# What a user may ask an all-in-one model for (derain run --task): a task, or auto (its selector decides).
TASK_CHOICES: tuple[str, ...] = ("auto",) + TASKS
# The synthetic rain presets of derain.data.synth.PRESETS, by name (derain synth --preset; a test keeps the two
# lists equal).
RAIN_PRESETS: tuple[str, ...] = ("light", "heavy", "real", "dense")
