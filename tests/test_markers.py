"""The pytest markers: registered in pyproject.toml, and the lists in conftest.py name tests that exist."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent


def test_the_markers_given_are_registered():
    options = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    registered = {line.split(":")[0] for line in options["markers"]}
    assert {"slow", "browser", "needs_shared"} <= registered


def test_every_listed_test_exists():
    """A renamed or removed test must leave the lists too, or it would silently lose (or keep) its marker."""
    for name in sorted(conftest.SLOW | conftest.NEEDS_SHARED):
        file, _, function = name.partition("::")
        assert re.search(rf"^def {function}\(", (TESTS / file).read_text(), re.M), name
    for file in conftest.BROWSER_FILES:
        assert (TESTS / file).is_file(), file
