"""Shared test fixtures: the real data in ../shared, skipped with a clear reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def shared_path(relative: str) -> Path:
    """``../shared/<relative>`` from the project root, or skip the test saying what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/{relative} beside the project (not present at {path})")
    return path


@pytest.fixture
def shared():
    """Callable fixture: ``shared("data/rain100l")`` returns the path or skips."""
    return shared_path


@pytest.fixture
def one_thread():
    """One torch thread for the test: its tensors are small, and a second intra-op thread gains nothing but,
    on a busy machine, makes every element-wise op wait for a core (100x slower under load). Restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
