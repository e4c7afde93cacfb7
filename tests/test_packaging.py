"""Packaging a user can trust (issue 38 item 14): a LICENSE in the repository, the sdist and the wheel, an SPDX
license expression, one source for the version, and a torch lower bound that the tests run."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_and_its_spdx_expression():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 derain authors" in text
    project = pyproject()["project"]
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # the SPDX field says it


def test_the_version_has_one_source():
    import derain

    config = pyproject()
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "derain.__version__"}
    assert isinstance(derain.__version__, str) and derain.__version__[0].isdigit()


def test_the_torch_lower_bound_is_the_torch_the_tests_run_on():
    """The bound is the torch the README installs for the tests (no older torch has run them)."""
    import re

    import torch

    bound = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert bound.startswith("torch>=")
    wanted = tuple(int(p) for p in bound.removeprefix("torch>=").split("."))
    pinned = re.search(r"pip install torch==(\d+)\.(\d+)", (ROOT / "README.md").read_text())
    assert pinned and wanted == (int(pinned[1]), int(pinned[2])), bound
    have = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:len(wanted)])
    assert have >= wanted, (bound, torch.__version__)


@pytest.mark.parametrize("kind", ["sdist", "wheel"])
def test_the_license_ships_in_the_sdist_and_the_wheel(kind, tmp_path):
    pytest.importorskip("setuptools", minversion="77")  # license-files and SPDX expressions (PEP 639)
    code = (f"import sys; from setuptools import build_meta; "
            f"print(build_meta.build_{kind}({str(tmp_path)!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    built = tmp_path / result.stdout.strip().splitlines()[-1]
    if kind == "sdist":
        with tarfile.open(built) as tar:
            names = tar.getnames()
            pkg_info = tar.extractfile(next(n for n in names if n.count("/") == 1 and n.endswith("PKG-INFO")))
            metadata = pkg_info.read().decode()
        assert any(n.count("/") == 1 and n.endswith("/LICENSE") for n in names)
    else:
        with zipfile.ZipFile(built) as wheel:
            names = wheel.namelist()
            metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    import derain

    assert "License-Expression: MIT" in metadata and f"Version: {derain.__version__}" in metadata
