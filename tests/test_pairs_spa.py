"""Pairing rules for the real-rain benchmarks: SPA-Data (``rain/NNN.png`` + ``gt/NNNgt.png``) and the
``_rain``/``_clean`` suffix style of GT-RAIN-like folders, always by name, never by sort order (issue 38)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.cli import main
from derain.data import describe_layout, find_pairs, pair_folders
from derain.errors import DerainError
from derain.commands.evaluate import ground_truth_sets


def _images(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name)


def test_spa_data_rain_and_gt_folders(tmp_path):
    _images(tmp_path / "rain", ["010.png", "002.png", "001.png"])
    _images(tmp_path / "gt", ["001gt.png", "002gt.png", "010gt.png"])
    pairs = find_pairs(tmp_path)
    assert [(p.input.name, p.target.name) for p in pairs] == [
        ("001.png", "001gt.png"), ("002.png", "002gt.png"), ("010.png", "010gt.png")]
    assert describe_layout(tmp_path) == "rain/ + gt/"


def test_spa_data_eval_pairs_results_with_gt(tmp_path, capsys):
    _images(tmp_path / "rain", ["001.png", "002.png"], seed=1)
    _images(tmp_path / "gt", ["001gt.png", "002gt.png"], seed=2)
    assert main(["eval", "--pred", str(tmp_path / "rain"), "--gt", str(tmp_path / "gt")]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert "gt " in out and "  2  " in out
    assert [(a.name, b.name) for a, b in pair_folders(tmp_path / "rain", tmp_path / "gt")] == [
        ("001.png", "001gt.png"), ("002.png", "002gt.png")]


def test_rain_and_clean_suffixes_in_one_folder_and_in_two(tmp_path):
    one = tmp_path / "scenes"
    _images(one, ["street_0003_rain.png", "street_0001_rain.png", "street_0001_clean.png",
                  "street_0003_clean.png"])
    pairs = find_pairs(one)
    assert [(p.input.name, p.target.name) for p in pairs] == [
        ("street_0001_rain.png", "street_0001_clean.png"), ("street_0003_rain.png", "street_0003_clean.png")]
    assert describe_layout(one) == "NAME_rain + NAME_clean in one folder"
    # derain eval --gt on such a folder scores against its clean files, not its rainy ones
    _images(tmp_path / "results", ["street_0001_rain.png", "street_0003_rain.png"])
    sets = ground_truth_sets(tmp_path / "results", one)
    assert [(a.name, b.name) for a, b in sets["scenes"]] == [
        ("street_0001_rain.png", "street_0001_clean.png"), ("street_0003_rain.png", "street_0003_clean.png")]


def test_the_new_rules_never_fall_back_to_sort_order(tmp_path):
    _images(tmp_path / "rain", ["001.png", "002.png"])
    _images(tmp_path / "gt", ["001gt.png", "003gt.png"])
    with pytest.raises(DerainError, match="no ground truth for 1 input file.*002.png"):
        find_pairs(tmp_path)
    one = tmp_path / "one"
    _images(one, ["a_rain.png", "b_clean.png"])
    with pytest.raises(DerainError, match="a_rain.png"):
        find_pairs(one)


def test_eval_partial_scores_only_the_results_present(tmp_path, capsys):
    _images(tmp_path / "data" / "rain", ["001.png", "002.png", "003.png"], seed=1)
    _images(tmp_path / "data" / "gt", ["001gt.png", "002gt.png", "003gt.png"], seed=2)
    _images(tmp_path / "results", ["001.png", "003.png"], seed=3)
    args = ["eval", "--pred", str(tmp_path / "results"), "--gt", str(tmp_path / "data")]
    assert main(args) == 1
    assert "have no result: 002gt.png" in capsys.readouterr().err
    assert main(args + ["--partial"]) == 0
    assert re.search(r"^data\s+2\s", capsys.readouterr().out, re.M)
    _images(tmp_path / "results", ["004.png"], seed=4)  # a result without ground truth stays an error
    assert main(args + ["--partial"]) == 1
    assert "no ground truth for 1 result file(s)" in capsys.readouterr().err
