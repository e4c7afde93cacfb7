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
