"""Training engine: config validation, schedules, EMA, and exact resume on a tiny model with real data."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from derain.errors import DerainError
from derain.train import Trainer, load_config, train_from_config
from derain.train.config import ScheduleConfig
from derain.train.ema import EMA
from derain.train.loop import autocast_dtype, cpu_supports_bf16, state_path_for
from derain.train.schedules import make_schedule

TINY = ["model.options.widths=[8,16,16,16]", "model.options.enc_blocks=[1,1,1,1]", "model.options.dec_blocks=[1,1,1]",
        "data.patch=32", "data.batch=2", "data.train_max_images=4", "data.val=null", "ema_decay=0.9",
        "schedule.warmup_steps=2", "log_every=1", "checkpoint_every=100", "total_steps=6", "threads=2"]


def write_config(tmp_path: Path, shared, **extra) -> Path:
    data = {"name": "tiny", "out_dir": str(tmp_path / "runs"), "model": {"name": "fastderain"},
            "data": {"train": str(shared("data/rain100l-train"))}, **extra}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ----- config ------------------------------------------------------------------------------------------
def test_unknown_key_is_named(tmp_path, shared):
    with pytest.raises(DerainError, match="'optim.lrr': unknown key"):
        load_config(write_config(tmp_path, shared, optim={"lrr": 1e-3}))
    with pytest.raises(DerainError, match="'epochs': unknown key"):
        load_config(write_config(tmp_path, shared, epochs=3))


def test_wrong_type_is_named(tmp_path, shared):
    with pytest.raises(DerainError, match="'total_steps': expected an integer"):
        load_config(write_config(tmp_path, shared, total_steps="many"))
    with pytest.raises(DerainError, match="'data.patch': expected an integer"):
        load_config(write_config(tmp_path, shared), ["data.patch=1.5"])
    with pytest.raises(DerainError, match=r"'loss\[0\].weight': expected a number"):
        load_config(write_config(tmp_path, shared, loss=[{"name": "l1", "weight": "heavy"}]))


def test_dotted_overrides(tmp_path, shared):
    config = load_config(write_config(tmp_path, shared), ["optim.lr=5e-4", "data.val=null", "optim.betas=[0.8, 0.9]"])
    assert config.optim.lr == 5e-4 and config.data.val is None and config.optim.betas == [0.8, 0.9]
    with pytest.raises(DerainError, match="key=value"):
        load_config(write_config(tmp_path, shared), ["optim.lr"])
    with pytest.raises(DerainError, match="'optim.lr': expected a number"):
        load_config(write_config(tmp_path, shared), ["optim.lr=fast"])


def test_repo_config_is_valid():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "fastderain_rain100l.yaml")
    assert config.model.name == "fastderain" and config.data.patch % 16 == 0


def test_patch_larger_than_images_fails_before_training(tmp_path, shared):
    with pytest.raises(DerainError, match="patch size 512 is larger"):
        train_from_config(str(write_config(tmp_path, shared)), TINY + ["data.patch=512"])
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()


def test_no_pairs_fails_before_training(tmp_path, shared):
    empty = tmp_path / "empty"
    (empty / "rainy").mkdir(parents=True)
    (empty / "clean").mkdir()
    with pytest.raises(DerainError, match="no rainy/clean pairs"):
        train_from_config(str(write_config(tmp_path, shared)), TINY + [f"data.train={empty}"])


# ----- schedules and EMA -------------------------------------------------------------------------------
def test_warmup_cosine_and_restormer_schedules():
    lr = make_schedule(ScheduleConfig(name="cosine", warmup_steps=10, min_lr=0.0), 1.0, 110)
    assert lr(0) == pytest.approx(0.1) and lr(9) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.5) and lr(110) == pytest.approx(0.0)
    restormer = make_schedule(ScheduleConfig(name="restormer", periods=[100, 200], restart_weights=[1, 1],
                                             eta_mins=[3e-4, 1e-6]), 3e-4, 300)
    assert restormer(0) == restormer(99) == pytest.approx(3e-4)  # constant phase
    assert restormer(200) == pytest.approx(0.5 * (3e-4 + 1e-6))   # middle of the cosine
    assert restormer(299) == pytest.approx(1e-6, abs=1e-7)
    step = make_schedule(ScheduleConfig(name="step", gamma=0.5, step_size=10), 1.0, 100)
    assert step(9) == 1.0 and step(25) == 0.25
    with pytest.raises(DerainError, match="unknown schedule"):
        make_schedule(ScheduleConfig(name="linear"), 1.0, 10)


def test_ema_update_is_a_moving_average():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert float(ema.state_dict()["weight"][0, 0]) == pytest.approx(0.1)


def test_precision_auto_follows_the_cpu():
    dtype = autocast_dtype("auto", torch.device("cpu"))
    assert dtype == (torch.bfloat16 if cpu_supports_bf16() else None)
    assert autocast_dtype("fp32", torch.device("cpu")) is None


# ----- the loop ----------------------------------------------------------------------------------------
def _states(last: Path) -> dict:
    return torch.load(state_path_for(last), map_location="cpu", weights_only=False)


def test_resume_gives_the_same_weights_as_one_run(tmp_path, shared):
    """6 steps in one go == 3 steps, stop at a checkpoint, resume, 3 more steps: bit-identical."""
    path = str(write_config(tmp_path, shared))
    whole = Trainer(load_config(path, TINY + ["name=whole"])).fit()
    first = Trainer(load_config(path, TINY + ["name=pieces"])).fit(stop_at=3)
    assert _states(first)["step"] == 3
    pieces = train_from_config(path, TINY + ["name=pieces"], resume=str(first))
    a, b = _states(whole), _states(pieces)
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # The exported weights (last.pt) load by name alone, as `derain run --weights` does.
    from derain.checkpoints import load_model
    model, name = load_model(None, str(pieces))
    assert name == "fastderain"


def test_time_budget_stops_at_a_checkpoint_then_auto_resume_finishes(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    last = train_from_config(path, TINY, time_budget_minutes=1e-6)
    assert 1 <= _states(last)["step"] < 6
    log = (tmp_path / "runs" / "tiny" / "train.log").read_text()
    assert "stopped at step" in log and "--resume" in log
    last = train_from_config(path, TINY, resume="auto")
    assert _states(last)["step"] == 6


def test_validation_scores_real_pairs(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    val = str(shared("data/rain100l"))
    train_from_config(path, TINY + ["total_steps=2", f"data.val={val}", "data.val_max_images=2", "val_every=2"])
    log = (tmp_path / "runs" / "tiny" / "train.log").read_text()
    psnr = float(log.split("matlab-y PSNR ")[1].split()[0])
    assert 20.0 < psnr < 45.0 and math.isfinite(psnr)
    assert (tmp_path / "runs" / "tiny" / "best.pt").exists()


def test_resume_from_another_models_state_is_one_line_error(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    last = Trainer(load_config(path, TINY)).fit(stop_at=1)
    state = _states(last)
    state["model_name"] = "restormer"
    torch.save(state, state_path_for(last))
    with pytest.raises(DerainError, match="checkpoint of model 'restormer'"):
        train_from_config(path, TINY, resume=str(last))
    with pytest.raises(DerainError, match="no training state"):
        train_from_config(path, TINY, resume=str(tmp_path / "nothing.pt"))


def test_train_command_line_errors_and_weights_for_run(tmp_path, shared, capsys):
    from derain.cli import main

    path = str(write_config(tmp_path, shared))
    assert main(["train", path, "--set", "optim.lrr=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'optim.lrr': unknown key" in err[0]
    assert main(["train", path, *[a for kv in TINY + ["total_steps=2"] for a in ("--set", kv)]]) == 0
    last = tmp_path / "runs" / "tiny" / "last.pt"
    assert f"weights in {last}" in capsys.readouterr().out
    out = tmp_path / "out"
    rainy = shared("data/rain100l/rainy/rain-001.png")
    assert main(["run", str(rainy), "-o", str(out), "--weights", str(last), "-q"]) == 0  # self-describing
    assert (out / "rain-001.png").is_file()
