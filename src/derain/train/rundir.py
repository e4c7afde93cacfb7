"""The run folder: the names of its files, where a run's weights and resume state lie, and its log.

Every training command (``derain train``, ``derain finetune``) writes ``last.safetensors`` (the weights to
use), ``last.state.pt`` beside it where the run can be resumed, ``best.safetensors`` (best on validation, for
monitoring) and ``train.log``. The helpers here only name and find those files; they train nothing, so
whatever reads a run (recipes, teachers, fine-tuning sources, benchmarks) can import them without the loop.
"""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from derain.errors import DerainError
from derain.train import distributed

STATE_SUFFIX = ".state.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"


def state_path_for(checkpoint: str | Path) -> Path:
    """The resume state of a run: from its folder, ``last.safetensors``, ``last.pt`` (runs written before
    safetensors) or the ``last.state.pt`` itself."""
    path = Path(checkpoint)
    if path.is_dir() or not path.suffix:  # a run folder (a missing one then reports its expected state file)
        return path / ("last" + STATE_SUFFIX)
    if path.name.endswith(STATE_SUFFIX):
        return path
    return path.with_name(path.stem + STATE_SUFFIX)


def weights_path_for(path: str | Path) -> Path:
    """A weights file, or a run folder's ``last.safetensors`` (``last.pt`` for older runs)."""
    path = Path(path)
    if path.is_dir():
        for name in (LAST, "last.pt"):
            if (path / name).is_file():
                return path / name
        raise DerainError(f"no {LAST} (or last.pt) in run folder {path}")
    return path


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make way for a new run in ``run_dir``: an earlier run's checkpoints there are an error unless
    ``overwrite``, and are then removed, so that none of them passes for the new run's (its log is kept)."""
    earlier = [run_dir / name for name in (LAST, "last" + STATE_SUFFIX, "last.pt", BEST, "best.pt")
               if (run_dir / name).is_file()]
    if not earlier:
        return
    if not overwrite:
        raise DerainError(f"{run_dir} already holds a run ({', '.join(p.name for p in earlier)}); continue it with "
                          "--resume auto, start it again with --overwrite, or name a new run with --set name=NEW")
    if distributed.env_info().is_main:  # one process removes them; under torchrun the others only check
        for path in earlier:
            path.unlink(missing_ok=True)


class Logger:
    """Plain-text log in the run folder, echoed to stdout (tqdm-safe); silent where not ``enabled``."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._folder_made = False  # a message may come before the trainer makes the run folder

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        tqdm.write(line)
        if not self._folder_made:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._folder_made = True
        with self.path.open("a") as f:
            f.write(line + "\n")
