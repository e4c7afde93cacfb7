"""Recipes: stages trained in order, each warm-started from the one before, resumable across sessions."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from derain.weights.load import load_model
from derain.cli import main
from derain.errors import DerainError
from derain.models import build
from derain.train.recipe import finished_step, is_recipe, load_recipe, run_recipe
from derain.train.config import load_config

TINY_MODEL = {"widths": [8, 16, 16, 16], "enc_blocks": [1, 1, 1, 1], "dec_blocks": [1, 1, 1]}
TINY = ["data.patch=32", "data.batch=2", "data.train_max_images=4", "data.val=null", "ema_decay=0.9",
        "schedule.warmup_steps=2", "log_every=1", "checkpoint_every=100", "threads=2"]


def write_recipe(tmp_path: Path, shared, steps: tuple[int, ...] = (4, 3), committed: int = 1) -> Path:
    """A tiny FastDerain, then the same network grown by a full-resolution level (then more stages of it);
    stage ``committed`` names committed weights."""
    stages = []
    options = [TINY_MODEL] + [{**TINY_MODEL, "full_width": 4}] * (len(steps) - 1)
    for i, (options, total) in enumerate(zip(options, steps), 1):
        config = {"name": f"stage{i}", "out_dir": str(tmp_path / "runs"), "total_steps": total, "seed": i,
                  "model": {"name": "fastderain", "options": options},
                  "data": {"train": str(shared("data/rain100l-train"))}}
        path = tmp_path / f"stage{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        stages.append({"config": str(path)})
    stages[committed - 1]["weights"] = str(tmp_path / "committed" / f"stage{committed}.safetensors")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"recipe": stages}))
    return recipe


def test_stages_run_in_order_and_a_second_run_has_nothing_to_do(tmp_path, shared):
    recipe = write_recipe(tmp_path, shared)
    said: list[str] = []
    last, finished = run_recipe(recipe, TINY, say=said.append)
    assert finished and last == tmp_path / "runs" / "stage2" / "last.safetensors"
    log = (tmp_path / "runs" / "stage2" / "train.log").read_text()
    assert f"warm start from {tmp_path / 'runs' / 'stage1' / 'last.safetensors'}" in log
    assert "warm start adds new modules" in log and "full_head" in log
    model, _ = load_model(None, last)
    assert model.full_width == 4

    said.clear()
    again, finished = run_recipe(recipe, TINY, say=said.append)
    assert finished and again == last
    assert said == [f"recipe stage 1/2 (stage1): done (4 steps in {tmp_path / 'runs' / 'stage1'})",
                    f"recipe stage 2/2 (stage2): done (3 steps in {tmp_path / 'runs' / 'stage2'})"]


def test_a_spent_time_budget_stops_and_the_same_command_continues(tmp_path, shared):
    recipe = write_recipe(tmp_path, shared)
    said: list[str] = []
    _, finished = run_recipe(recipe, TINY, time_budget_minutes=1e-6, say=said.append)
    assert not finished and "run the same command again" in said[-1]
    assert 1 <= finished_step(load_config(tmp_path / "stage1.yaml", TINY)) < 4
    last, finished = run_recipe(recipe, TINY, say=said.append)
    assert finished and any("resuming at step" in line for line in said)
    assert finished_step(load_config(tmp_path / "stage2.yaml", TINY)) == 3


def test_use_committed_replaces_a_stage_whose_run_is_gone(tmp_path, shared):
    recipe = write_recipe(tmp_path, shared)
    run_recipe(recipe, TINY, say=lambda _: None)
    committed = tmp_path / "committed" / "stage1.safetensors"
    committed.parent.mkdir()
    shutil.copy(tmp_path / "runs" / "stage1" / "last.safetensors", committed)
    shutil.rmtree(tmp_path / "runs")  # a fresh machine: no run folder survived

    said: list[str] = []
    last, finished = run_recipe(recipe, TINY, use_committed=True, say=said.append)
    assert finished and said[0] == f"recipe stage 1/2 (stage1): taken from the committed weights {committed}"
    assert not (tmp_path / "runs" / "stage1").exists()
    assert f"warm start from {committed}" in (tmp_path / "runs" / "stage2" / "train.log").read_text()
    # Without --use-committed the same recipe trains stage 1 again from scratch.
    shutil.rmtree(tmp_path / "runs")
    run_recipe(recipe, TINY, say=said.append)
    assert finished_step(load_config(tmp_path / "stage1.yaml", TINY)) == 4


def test_use_committed_skips_the_stages_before_the_committed_one(tmp_path, shared):
    recipe = write_recipe(tmp_path, shared, steps=(4, 3, 2), committed=2)
    said: list[str] = []
    with pytest.raises(DerainError, match="committed weights not found"):
        run_recipe(recipe, TINY, use_committed=True, say=said.append)
    run_recipe(recipe, TINY, say=said.append)
    (tmp_path / "committed").mkdir()
    shutil.copy(tmp_path / "runs" / "stage2" / "last.safetensors", tmp_path / "committed" / "stage2.safetensors")
    shutil.rmtree(tmp_path / "runs")
    said.clear()
    _, finished = run_recipe(recipe, TINY, use_committed=True, say=said.append)
    assert finished and "stage 1/3 (stage1): skipped" in said[0] and "committed weights" in said[1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["stage3"]


def test_every_stage_is_checked_before_training(tmp_path, shared):
    recipe = write_recipe(tmp_path, shared)
    stage2 = yaml.safe_load((tmp_path / "stage2.yaml").read_text())
    stage2["optim"] = {"lrr": 1.0}
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump(stage2))
    with pytest.raises(DerainError, match="'optim.lrr': unknown key"):
        run_recipe(recipe, TINY, say=lambda _: None)
    assert not (tmp_path / "runs").exists()


def test_bad_recipes_are_one_line_errors(tmp_path, shared, capsys):
    bad = tmp_path / "bad.yaml"
    cases = [({"recipe": [], }, "must be a non-empty list"),
             ({"recipe": [{"config": "nowhere.yaml"}]}, "config file not found: nowhere.yaml"),
             ({"recipe": [{"config": "nowhere.yaml", "weight": "x"}]}, "'recipe stage 1: weight': unknown key"),
             ({"recipe": [{"config": "x"}], "stages": 2}, "unknown key 'stages'")]
    for data, message in cases:
        bad.write_text(yaml.safe_dump(data))
        with pytest.raises(DerainError, match=message):
            load_recipe(bad)
    bad.write_text(yaml.safe_dump(cases[1][0]))
    assert main(["train", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config file not found" in err
    recipe = write_recipe(tmp_path, shared)
    assert main(["train", str(recipe), "--resume", "auto"]) != 0
    assert "a recipe resumes" in capsys.readouterr().err


def test_the_default_model_recipe_names_existing_configs_and_weights():
    root = Path(__file__).resolve().parents[1]
    stages = load_recipe(root / "configs" / "default_model.yaml")
    assert [Path(s.config).name for s in stages][0] == "rain100l_stage1.yaml"
    for stage in stages:
        if stage.weights:
            model, name = load_model(None, root / stage.weights)
            assert name in ("fastderain", "fastderain-rain100l") and isinstance(model, torch.nn.Module)
            # The committed weights are this stage's network: same options, hence the same parameter shapes.
            trained = load_config(root / stage.config).model
            reference = build(trained.name, **trained.options).state_dict()
            assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    # The earlier recipes (half resolution; full resolution with 24, then 32 channels; the fifth lineage) stay
    # reproducible.
    assert [Path(s.config).name for s in stages][-2:] == ["general_stage1.yaml", "general_stage2.yaml"]
    for name in ("archive/halfres_model.yaml", "archive/fullres24_model.yaml", "archive/fullres32_long_model.yaml",
                 "archive/fullres32_lr2e3_60k_model.yaml", "rain100l_model.yaml"):
        old = load_recipe(root / "configs" / name)
        assert all((root / stage.config).is_file() for stage in old)
        assert all(stage.weights is None for stage in old) or name == "rain100l_model.yaml"


def test_every_repo_recipe_chains_its_stages():
    """Run alone, each later stage of a committed recipe warm-starts from the run folder of the stage before
    it, as the recipe does, and trains the same network."""
    root = Path(__file__).resolve().parents[1]
    recipes = [path for path in sorted((root / "configs").rglob("*.yaml")) if is_recipe(path)]  # archive too
    assert {"default_model.yaml", "lr2e3_model.yaml"} <= {path.name for path in recipes}
    for path in recipes:
        configs = [load_config(root / stage.config) for stage in load_recipe(path)]
        for before, after in zip(configs, configs[1:]):
            assert Path(after.warm_start) == before.run_dir(), (path.name, after.name)
            assert after.model.name == before.model.name, path.name
            assert grows_or_keeps(before.model.options, after.model.options), (path.name, after.name)


def grows_or_keeps(before: dict, after: dict) -> bool:
    """The same network, or one grown by residual blocks (FastDerain.grown_state_dict): every other option equal
    and no stage with fewer blocks."""
    blocks = ("enc_blocks", "dec_blocks")
    same = {k: v for k, v in before.items() if k not in blocks} == {k: v for k, v in after.items() if k not in blocks}
    return same and all(len(before.get(k, [])) == len(after.get(k, [])) and
                        all(a >= b for a, b in zip(after.get(k, []), before.get(k, []))) for k in blocks)
