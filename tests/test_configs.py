"""The committed configs: every file under configs/ (the archive too) loads, and the files that were rewritten
to name a ``base:`` resolve to exactly the configs their flat versions gave."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from derain.fsderain.config import load_finetune_config
from derain.train.config import load_config
from derain.train.recipe import is_recipe, load_recipe
from derain.files.yamlload import load_yaml_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))
# The resolved configs of the flat files, recorded before they were rewritten as differences from a base.
BEFORE = json.loads((Path(__file__).parent / "configs_before_base.json").read_text())


def test_the_tree_holds_what_a_user_runs_and_an_archive():
    top = {path.name for path in CONFIGS.glob("*.yaml")}
    assert {"default_model.yaml", "general_stage1.yaml", "general_stage2.yaml", "rain100l_model.yaml",
            "dmsr_rain100l.yaml", "mspfn_rain100l.yaml", "fsderain_paired.yaml", "fsdrnet_small_five_tasks.yaml",
            "equal_cost_fastderain.yaml", "student_stage1.yaml", "default_experts.yaml"} <= top
    archived = list((CONFIGS / "archive").glob("*.yaml"))
    assert archived and not top & {path.name for path in archived}


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_loads(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name their stages relative to the project root
    assert load_yaml_file(path) is not None
    if is_recipe(path):
        for stage in load_recipe(path):
            assert load_config(stage.config).total_steps > 0
            assert stage.weights is None or (ROOT / stage.weights).is_file()
    elif path.name.startswith("fsderain_"):  # read by `derain finetune`, not `derain train`
        assert load_finetune_config(path).epochs > 0
    else:
        assert load_config(path).data.patch > 0


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_files_with_a_base_resolve_as_their_flat_versions_did(name):
    text = (CONFIGS / name).read_text()
    assert "\nbase: " in text  # the file holds only its differences
    resolved = json.loads(json.dumps(load_config(CONFIGS / name).to_dict()))
    assert resolved == BEFORE[name]


def _defaults(tree: ast.AST):
    """The values a module gives by default: function argument defaults, class fields, module constants."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from node.args.defaults
            yield from (d for d in node.args.kw_defaults if d is not None)
        elif isinstance(node, (ast.Module, ast.ClassDef)):
            for statement in node.body:
                if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                    yield statement.value


def test_no_library_default_points_at_our_machines_data():
    """``../shared`` exists beside this checkout only: the library takes data folders as arguments or from the
    config files, never by default."""
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for value in _defaults(ast.parse(path.read_text())):
            for node in ast.walk(value):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and "../shared" in node.value:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found
