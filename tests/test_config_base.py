"""``base:`` in config files: a stage file holds only its differences from another file."""
from __future__ import annotations

from pathlib import Path

import pytest

from derain.errors import DerainError
from derain.fsderain.config import load_finetune_config
from derain.train.config import load_config, merge_mappings, read_config_mapping


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_mappings_merge_and_lists_replace(tmp_path):
    write(tmp_path / "parent.yaml", "name: parent\ntotal_steps: 100\noptim:\n  lr: 0.002\n  betas: [0.9, 0.99]\n"
          "data:\n  train: somewhere\n  stages:\n    - {start: 0, patch: 64, batch: 4}\n    - {start: 50, patch: 96, batch: 2}\n")
    child = write(tmp_path / "child.yaml", "base: parent.yaml\nname: child\noptim:\n  lr: 0.001\n"
                  "data:\n  stages:\n    - {start: 0, patch: 128, batch: 1}\n")
    config = load_config(child)
    assert config.name == "child" and config.total_steps == 100
    assert config.optim.lr == 0.001 and config.optim.betas == [0.9, 0.99]  # the mapping merged key by key
    assert config.data.train == "somewhere"
    assert [(s.patch, s.batch) for s in config.data.stages] == [(128, 1)]  # the list replaced, not merged
    # Overrides apply after the merge.
    assert load_config(child, ["optim.lr=5e-4"]).optim.lr == 5e-4


def test_base_paths_are_relative_to_the_file_and_chain(tmp_path, monkeypatch):
    write(tmp_path / "a" / "root.yaml", "total_steps: 7\nseed: 3\n")
    write(tmp_path / "a" / "b" / "middle.yaml", "base: ../root.yaml\nseed: 4\nname: middle\n")
    leaf = write(tmp_path / "c" / "leaf.yaml", "base: ../a/b/middle.yaml\nname: leaf\n")
    monkeypatch.chdir(tmp_path / "c")  # the working folder plays no part
    assert read_config_mapping(Path("leaf.yaml")) == {"total_steps": 7, "seed": 4, "name": "leaf"}
    assert read_config_mapping(leaf) == {"total_steps": 7, "seed": 4, "name": "leaf"}


def test_cycles_and_missing_bases_are_one_line(tmp_path):
    write(tmp_path / "x.yaml", "base: y.yaml\nseed: 1\n")
    write(tmp_path / "y.yaml", "base: x.yaml\nseed: 2\n")
    with pytest.raises(DerainError, match="bases form a cycle") as info:
        load_config(tmp_path / "x.yaml")
    assert "\n" not in str(info.value)
    write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(DerainError, match="cycle"):
        load_config(tmp_path / "self.yaml")
    write(tmp_path / "orphan.yaml", "base: gone.yaml\n")
    with pytest.raises(DerainError, match=r"config file not found: .*gone\.yaml \(the base of"):
        load_config(tmp_path / "orphan.yaml")
    write(tmp_path / "bad.yaml", "base: [a.yaml]\n")
    with pytest.raises(DerainError, match="'base' must name another config file"):
        load_config(tmp_path / "bad.yaml")


def test_a_base_keeps_unknown_keys_refused(tmp_path):
    write(tmp_path / "parent.yaml", "optim:\n  lrr: 0.1\n")
    write(tmp_path / "child.yaml", "base: parent.yaml\n")
    with pytest.raises(DerainError, match="'optim.lrr': unknown key"):
        load_config(tmp_path / "child.yaml")


def test_finetune_configs_take_a_base_too(tmp_path):
    write(tmp_path / "ft.yaml", "epochs: 3\n")
    write(tmp_path / "ft2.yaml", "base: ft.yaml\nmax_steps: 5\n")
    config = load_finetune_config(tmp_path / "ft2.yaml")
    assert (config.epochs, config.max_steps) == (3, 5)


def test_merge_mappings_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [1, 2]}}
    changes = {"a": {"c": [3]}, "d": 4}
    assert merge_mappings(base, changes) == {"a": {"b": 1, "c": [3]}, "d": 4}
    assert base == {"a": {"b": 1, "c": [1, 2]}} and changes == {"a": {"c": [3]}, "d": 4}
