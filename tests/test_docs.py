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


def _layout_map() -> list[tuple[str, str]]:
    """(entry, its text) for each entry of the README's layout map: an entry is a line indented by two spaces that
    names a module or folder of src/derain/, continued by the more deeply indented lines after it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout of the code", 1)[1]
    block = section.split("```", 2)[1]
    entries: list[tuple[str, str]] = []
    for line in block.splitlines():
        if re.match(r"  \S", line):
            name, _, text = line.strip().partition("  ")
            entries.append((name.strip(), text))
        elif line.startswith("   ") and entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return entries


def _named_modules() -> set[Path]:
    """Every path the map names, resolved under src/derain/: the entries, and the modules an entry's text names
    (``x.py`` inside a folder entry; ``sub/ (a.py, b.py)`` for a subfolder; ``tests/...`` from the root)."""
    package = ROOT / "src" / "derain"
    module = r"(?<![\w./-])([\w./-]+\.py)(?![\w.])"
    named = set()
    for entry, text in _layout_map():
        names = [n.strip() for n in entry.split(",")]
        named.update(package / name for name in names)
        folder = package / names[0] if names[0].endswith("/") else package
        for sub, inside in re.findall(r"(?<![\w/])(\w+)/ \(([^)]*)\)", text):
            named.add(folder / sub)
            named.update(folder / sub / name for name in re.findall(module, inside))
        text = re.sub(r"(?<![\w/])\w+/ \([^)]*\)", "", text)
        for name in re.findall(module, text):
            named.add(ROOT / name if name.startswith("tests/") else folder / name)
    return named


def test_the_layout_map_names_modules_that_exist():
    missing = sorted(str(path.relative_to(ROOT)) for path in _named_modules() if not path.exists())
    assert not missing, missing


def test_every_module_of_the_package_is_in_the_layout_map():
    named = _named_modules()
    package = ROOT / "src" / "derain"
    unnamed = []
    for path in sorted(package.rglob("*.py")):
        module = path.parent if path.name == "__init__.py" and path.parent != package else path
        if module not in named and path not in named:
            unnamed.append(str(path.relative_to(package)))
    assert not unnamed, f"modules missing from the README's layout map: {unnamed}"
