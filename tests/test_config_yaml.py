"""Config files are read strictly: a key written twice is an error naming the key and both lines (issue 38)."""
from __future__ import annotations

from pathlib import Path

import pytest

from derain.cli import main
from derain.errors import DerainError
from derain.fsderain.config import load_finetune_config
from derain.train.config import load_config
from derain.train.recipe import is_recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_a_duplicate_top_level_key_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\ntotal_steps: 12\nseed: 1\ntotal_steps: 99\n")
    with pytest.raises(DerainError, match=r"duplicate key 'total_steps' at line 4 \(first at line 2\)"):
        load_config(path)


def test_a_duplicate_nested_key_names_its_dotted_path(tmp_path):
    path = tmp_path / "nested.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  name: adamw\n  lr: 5.0e-4\nloss:\n  - name: l1\n    weight: 1\n")
    with pytest.raises(DerainError, match=r"'optim\.lr' at line 4 \(first at line 2\)"):
        load_config(path)
    path.write_text("loss:\n  - name: l1\n    weight: 1\n    weight: 2\n")
    with pytest.raises(DerainError, match=r"'loss\[0\]\.weight' at line 4 \(first at line 3\)"):
        load_config(path)


def test_equal_keys_in_different_mappings_are_fine(tmp_path):
    path = tmp_path / "fine.yaml"
    path.write_text("name: fine\nmodel:\n  name: fastderain\noptim:\n  name: adam\ndata:\n  train: pairs\n")
    config = load_config(path)
    assert (config.name, config.model.name, config.optim.name) == ("fine", "fastderain", "adam")


def test_a_duplicate_in_an_override_value_is_refused():
    with pytest.raises(DerainError, match="duplicate key 'a'"):
        load_config(None, ["model.options={a: 1, a: 2}"])


def test_recipes_refuse_duplicate_keys(tmp_path):
    stage = ROOT / "configs" / "rain100l_stage1.yaml"
    path = tmp_path / "recipe.yaml"
    path.write_text(f"recipe:\n  - config: {stage}\n    config: {stage}\n")
    assert is_recipe(path)
    with pytest.raises(DerainError, match=r"duplicate key 'recipe\[0\]\.config' at line 3 \(first at line 2\)"):
        load_recipe(path)
    path.write_text(f"recipe:\n  - config: {stage}\nrecipe:\n  - config: {stage}\n")
    with pytest.raises(DerainError, match=r"'recipe' at line 3 \(first at line 1\)"):
        load_recipe(path)


def test_finetune_configs_refuse_duplicate_keys(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("epochs: 2\nloss:\n  l1: 1.0\n  l1: 0.0\n")
    with pytest.raises(DerainError, match=r"'loss\.l1' at line 4 \(first at line 3\)"):
        load_finetune_config(path)


def test_the_cli_prints_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever happens, nothing lands in the project's runs/
    path = tmp_path / "twice.yaml"
    # A missing training set: without the duplicate check this fails too, but for another reason, untrained.
    path.write_text(f"total_steps: 12\ntotal_steps: 99\nout_dir: {tmp_path / 'runs'}\n"
                    f"data:\n  train: {tmp_path / 'no-such-set'}\n")
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "duplicate key 'total_steps' at line 2 (first at line 1)" in err


def test_every_committed_config_is_free_of_duplicates():
    from derain.files.yamlload import load_yaml_file

    for path in sorted((ROOT / "configs").rglob("*.yaml")):  # the archive too
        assert load_yaml_file(path) is not None, path
