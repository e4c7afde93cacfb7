"""Finding (rainy, clean) pairs in the folder layouts that deraining datasets ship with.

Known layouts, as sub-folders of a dataset folder (input first):

    input/ + target/     Restormer, MPRNet, DMSR
    rainy/ + clean/      ../shared/data
    rain/ + norain/      PReNet, RCDNet
    inputcrop/ + cleancrop/   MSPFN
    input/ + gt/         FSDerain
    rain/ + gt/          SPA-Data (``rain/001.png`` with ``gt/001gt.png``)

and, with both kinds of file in one folder, PReNet's numbering (``rain-001.png`` beside ``norain-001.png``)
or GT-RAIN-like suffixes (``street_0001_rain.png`` beside ``street_0001_clean.png``).

Files are paired by a name rule, never by sort order: the same stem, else the same *key*, where the key drops
a leading ``rain``/``norain``/``rainy``/``clean``/``gt`` word, the same word at the end after a digit or a
separator (``001gt``, ``0001_clean``) and leading zeros of a number (``rain-001`` <-> ``norain-001`` <->
``norain-1`` <-> ``001gt``), else (Rain1400/Rain12600 style, 14 rainy versions per clean
image) the stem before the last ``_`` (``901_3`` -> ``901``). An unpaired or ambiguous file is an error that
names it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from derain.errors import DerainError
from derain.files.imageio import IMAGE_SUFFIXES, natural_key

LAYOUTS: tuple[tuple[str, str], ...] = (
    ("input", "target"), ("rainy", "clean"), ("rain", "norain"), ("inputcrop", "cleancrop"), ("input", "gt"),
    ("rain", "gt"),
)
_ROLE_WORD = re.compile(r"^(norain|rainy|rain|clean|gt|target|input)(?=[-_ ]?\d)[-_ ]?", re.IGNORECASE)
# The same words at the end: SPA-Data's 001gt, GT-RAIN-like 0001_rain / 0001_clean.
_ROLE_SUFFIX = re.compile(r"(?:(?<=\d)|[-_ ])(norain|rainy|rain|clean|gt|target|input)$", re.IGNORECASE)
_RAIN_FILE = re.compile(r"^rain[-_]?\d", re.IGNORECASE)
_CLEAN_FILE = re.compile(r"^norain[-_]?\d", re.IGNORECASE)
_RAIN_SUFFIX = re.compile(r".[-_]rain$", re.IGNORECASE)
_CLEAN_SUFFIX = re.compile(r".[-_]clean$", re.IGNORECASE)


@dataclass(frozen=True)
class Pair:
    """One training or test example: the degraded input, its ground truth, and a name for reports."""

    input: Path
    target: Path
    name: str


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, naturally sorted."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=natural_key)


def name_key(stem: str) -> str:
    """The part of a file name that identifies the scene: ``rain-007`` and ``norain-7`` both give ``7``."""
    key = _ROLE_WORD.sub("", stem.lower(), count=1)
    key = _ROLE_SUFFIX.sub("", key, count=1) or key
    return str(int(key)) if key.isdigit() else key


def _index(targets: list[Path], key) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for t in targets:
        index.setdefault(key(t.stem), []).append(t)
    return index


def _list(paths: list[Path], limit: int = 4) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(p.name for p in paths[:limit]) + more


def match_files(inputs: list[Path], targets: list[Path], what: str = "input",
                many_to_one: bool = True, partial: bool = False) -> list[tuple[Path, Path]]:
    """Pair each input with its target by the name rules; every file must be used (every input, with
    ``partial``: targets may be left over).

    ``many_to_one`` allows several inputs per target (the ``<scene>_<k>`` rule of Rain1400).
    """
    by_stem, by_key = _index(targets, lambda s: s), _index(targets, name_key)
    rules = [(lambda s: s, by_stem), (name_key, by_key)]
    if many_to_one:
        rules.append((lambda s: name_key(s.rsplit("_", 1)[0]), by_key))
    pairs, unmatched, ambiguous = [], [], []
    for inp in inputs:
        for rule, index in rules:
            found = index.get(rule(inp.stem), [])
            if found:
                break
        if len(found) == 1:
            pairs.append((inp, found[0]))
        elif found:
            ambiguous.append(f"{inp.name} -> {_list(found)}")
        else:
            unmatched.append(inp)
    if ambiguous:
        raise DerainError(f"ambiguous pairing: {'; '.join(ambiguous[:3])}")
    if unmatched:
        raise DerainError(f"no ground truth for {len(unmatched)} {what} file(s) in {unmatched[0].parent}: "
                          f"{_list(unmatched)}")
    used = {t for _, t in pairs}
    unused = [t for t in targets if t not in used]
    if unused and not partial:
        raise DerainError(f"{len(unused)} ground-truth file(s) in {unused[0].parent} have no {what}: {_list(unused)}")
    return pairs


def _layout_of(root: Path) -> tuple[Path, Path] | None:
    for inp, tgt in LAYOUTS:
        if (root / inp).is_dir() and (root / tgt).is_dir():
            return root / inp, root / tgt
    return None


def _numbered_in_one_folder(root: Path) -> tuple[list[Path], list[Path]] | None:
    """(rainy, clean) files of a folder holding both: PReNet's rain-N/norain-N, or NAME_rain/NAME_clean."""
    files = images_in(root) if root.is_dir() else []
    for rain_rule, clean_rule in ((_RAIN_FILE.match, _CLEAN_FILE.match), (_RAIN_SUFFIX.search, _CLEAN_SUFFIX.search)):
        rainy = [p for p in files if rain_rule(p.stem)]
        clean = [p for p in files if clean_rule(p.stem)]
        if rainy and clean:
            return rainy, clean
    return None


def is_dataset(root: Path) -> bool:
    """True when ``root`` holds pairs in one of the known layouts."""
    return _layout_of(root) is not None or _numbered_in_one_folder(root) is not None


def describe_layout(root: str | Path) -> str:
    """Which known layout ``root`` uses, for messages (``"rainy/ + clean/"``)."""
    root = Path(root)
    layout = _layout_of(root)
    if layout:
        return f"{layout[0].name}/ + {layout[1].name}/"
    numbered = _numbered_in_one_folder(root)
    if numbered:
        return ("NAME_rain + NAME_clean" if _RAIN_SUFFIX.search(numbered[0][0].stem) else "rain-N + norain-N") \
            + " in one folder"
    return "no known layout"


def find_pairs(root: str | Path) -> list[Pair]:
    """Every (input, target) pair of the dataset in ``root``, in natural order of the inputs."""
    root = Path(root)
    if not root.is_dir():
        raise DerainError(f"dataset folder not found: {root}")
    layout = _layout_of(root)
    if layout is not None:
        inputs, targets = images_in(layout[0]), images_in(layout[1])
    else:
        numbered = _numbered_in_one_folder(root)
        if numbered is None:
            known = ", ".join(f"{a}/+{b}/" for a, b in LAYOUTS)
            raise DerainError(f"no paired data in {root}: expected sub-folders {known}, "
                              "or rain-N/norain-N or NAME_rain/NAME_clean files in one folder")
        inputs, targets = numbered
    if not inputs:
        raise DerainError(f"no rainy/clean pairs in {root}: {layout[0] if layout else root} holds no images")
    return [Pair(i, t, i.stem) for i, t in match_files(inputs, targets)]


def find_datasets(root: str | Path) -> dict[str, list[Pair]]:
    """``{set name: pairs}`` for ``root`` itself when it is a dataset, else for each dataset folder inside it."""
    root = Path(root)
    if not root.is_dir():
        raise DerainError(f"dataset folder not found: {root}")
    if is_dataset(root):
        return {root.name: find_pairs(root)}
    sets = {sub.name: find_pairs(sub) for sub in sorted(root.iterdir(), key=natural_key)
            if sub.is_dir() and is_dataset(sub)}
    if not sets:
        known = ", ".join(f"{a}/+{b}/" for a, b in LAYOUTS)
        raise DerainError(f"no paired dataset in {root} or its sub-folders (known layouts: {known})")
    return sets


def pair_folders(pred_dir: str | Path, gt_dir: str | Path, partial: bool = False) -> list[tuple[Path, Path]]:
    """(result, ground truth) pairs of two folders, by the same name rules; every file must be matched (every
    result, with ``partial``)."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = images_in(pred_dir), images_in(gt_dir)
    if not preds:
        raise DerainError(f"no result images in {pred_dir}")
    if not gts:
        raise DerainError(f"no ground-truth images in {gt_dir}")
    return match_files(preds, gts, what="result", many_to_one=False, partial=partial)
