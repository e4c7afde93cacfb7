"""The documentation points at things that exist: relative links (and their #sections) in README.md and docs/, and
the repository files (configs, docs, scripts, benchmarks) that the docs, configs and code name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A file of the repository named in prose or comments: configs/x.yaml, docs/x.md, scripts/x.py, benchmarks/x.py.
NAMED = re.compile(r"(?<![\w./-])((?:configs|docs|scripts|benchmarks)/[\w./-]+\.(?:yaml|md|py))")
PLACEHOLDER = re.compile(r"/(x|NAME)\.|_M\.yaml$")  # configs/x.yaml, benchmarks/NAME.py: examples, not files


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # headings only, not comments in code blocks
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_their_sections_exist(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, section = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(target)
        elif section and path.suffix == ".md" and section not in anchors(path):
            broken.append(target)
    assert not broken, broken


def _sources() -> list[Path]:
    # docs/METHODS.md names files of the methods' own repositories (their configs/, their README.md).
    files = [p for p in MARKDOWN if p.name != "METHODS.md"] + sorted((ROOT / "configs").rglob("*.yaml"))
    for folder in ("src", "tests", "scripts", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_named_repository_files_exist():
    missing = []
    for path in _sources():
        for name in NAMED.findall(path.read_text(errors="replace")):
            name = name.rstrip(".")
            if not PLACEHOLDER.search(name) and not (ROOT / name).exists():
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, missing
