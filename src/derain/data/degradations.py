"""The degradations the all-in-one networks restore, by name: one list for the data that trains them, the
networks' heads and selector, the registry and the command line (no torch here: ``derain models`` and
``derain --help`` read it)."""
from __future__ import annotations

TASKS: tuple[str, ...] = ("rain", "haze", "noise", "blur", "lowlight")
# What a user may ask an all-in-one model for (derain run --task): a task, or auto (its selector decides).
TASK_CHOICES: tuple[str, ...] = ("auto",) + TASKS
