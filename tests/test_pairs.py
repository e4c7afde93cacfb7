"""Paired-data discovery: the real benchmark folders, every known layout, and errors that name files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from derain.data import LAYOUTS, describe_layout, find_datasets, find_pairs, pair_folders
from derain.errors import DerainError


def test_shared_rain100l_sets_are_found_without_options(shared):
    test = find_pairs(shared("data/rain100l"))
    assert len(test) == 100
    assert all(p.input.name == "rain-" + p.target.name.split("-", 1)[1] for p in test)
    train = find_pairs(shared("data/rain100l-train"))
    assert len(train) == 200 and train[0].input.suffix == ".webp"
    assert [p.input.name for p in train[:3]] == ["rain-001.webp", "rain-002.webp", "rain-003.webp"]
    assert describe_layout(shared("data/rain100l")) == "rainy/ + clean/"
    sets = find_datasets(shared("data"))
    assert {"rain100l", "rain100l-train"} <= set(sets) and len(sets["rain100l"]) == 100


def _link_real_images(folder: Path, names: list[str], source: Path) -> None:
    """Real images under new names (symlinks: cheap, and the pairing reads names only)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted(source.iterdir())
    for name, src in zip(names, images):
        os.symlink(src.resolve(), folder / name)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "+".join(layout))
def test_every_known_two_folder_layout(layout, shared, tmp_path):
    src = shared("data/rain100l/rainy")
    _link_real_images(tmp_path / layout[0], ["3.png", "1.png", "2.png"], src)
    _link_real_images(tmp_path / layout[1], ["1.png", "2.png", "3.png"], src)
    pairs = find_pairs(tmp_path)
    assert [(p.input.name, p.target.name) for p in pairs] == [("1.png", "1.png"), ("2.png", "2.png"),
                                                                ("3.png", "3.png")]
    assert describe_layout(tmp_path) == f"{layout[0]}/ + {layout[1]}/"


def test_prenet_numbering_in_one_folder_and_in_two(shared, tmp_path):
    src = shared("data/rain100l/rainy")
    one = tmp_path / "one"
    _link_real_images(one, ["rain-1.png", "rain-2.png", "norain-1.png", "norain-2.png"], src)
    assert [(p.input.name, p.target.name) for p in find_pairs(one)] == [
        ("rain-1.png", "norain-1.png"), ("rain-2.png", "norain-2.png")]
    two = tmp_path / "two"
    _link_real_images(two / "rain", ["rain-10.png", "rain-9.png"], src)
    _link_real_images(two / "norain", ["norain-009.png", "norain-010.png"], src)  # zero-padded differently
    assert [(p.input.name, p.target.name) for p in find_pairs(two)] == [
        ("rain-9.png", "norain-009.png"), ("rain-10.png", "norain-010.png")]


def test_several_rainy_versions_of_one_clean_image(shared, tmp_path):
    src = shared("data/rain100l/rainy")
    _link_real_images(tmp_path / "input", ["901_1.jpg", "901_2.jpg", "902_1.jpg"], src)
    _link_real_images(tmp_path / "target", ["901.jpg", "902.jpg"], src)
    assert [(p.input.name, p.target.name) for p in find_pairs(tmp_path)] == [
        ("901_1.jpg", "901.jpg"), ("901_2.jpg", "901.jpg"), ("902_1.jpg", "902.jpg")]


def test_never_pairs_by_sort_order(shared, tmp_path):
    src = shared("data/rain100l/rainy")
    _link_real_images(tmp_path / "rainy", ["a.png", "b.png"], src)
    _link_real_images(tmp_path / "clean", ["c.png", "d.png"], src)
    with pytest.raises(DerainError, match=r"no ground truth for 2 input file\(s\).*a\.png, b\.png"):
        find_pairs(tmp_path)


def test_unpaired_and_ambiguous_files_are_named(shared, tmp_path):
    src = shared("data/rain100l/rainy")
    extra = tmp_path / "extra"
    _link_real_images(extra / "rainy", ["rain-1.png"], src)
    _link_real_images(extra / "clean", ["norain-1.png", "norain-2.png"], src)
    with pytest.raises(DerainError, match="have no input: norain-2.png"):
        find_pairs(extra)
    ambiguous = tmp_path / "ambiguous"
    _link_real_images(ambiguous / "rainy", ["rain-1.png"], src)
    _link_real_images(ambiguous / "clean", ["norain-1.png", "norain-001.png"], src)
    with pytest.raises(DerainError, match="ambiguous pairing: rain-1.png"):
        find_pairs(ambiguous)
    with pytest.raises(DerainError, match="no paired data"):
        find_pairs(src)


def test_results_pair_with_ground_truth_by_name(shared, tmp_path):
    gt = shared("data/rain100l/clean")
    _link_real_images(tmp_path / "pred", ["rain-001.png", "rain-002.png"], shared("data/rain100l/rainy"))
    sub = tmp_path / "gt"
    sub.mkdir()
    for name in ("norain-001.png", "norain-002.png"):
        os.symlink((gt / name).resolve(), sub / name)
    assert [(a.name, b.name) for a, b in pair_folders(tmp_path / "pred", sub)] == [
        ("rain-001.png", "norain-001.png"), ("rain-002.png", "norain-002.png")]
    with pytest.raises(DerainError, match="have no result"):
        pair_folders(tmp_path / "pred", gt)  # 98 ground-truth images without results
