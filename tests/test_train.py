"""Training engine: config validation, schedules, EMA, and exact resume on a tiny model with real data."""
from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from derain.errors import DerainError
from derain.inference.hardware import cpu_supports_bf16
from derain.inference.precision import compute_dtype
from derain.train import Trainer, load_config, train_from_config
from derain.train.batches import TrainBatches
from derain.train.config import ScheduleConfig
from derain.train.ema import EMA
from derain.train.loop import uses_channels_last
from derain.train.rundir import state_path_for
from derain.train.schedules import PlateauSchedule, make_schedule

TINY = ["model.options.widths=[8,16,16,16]", "model.options.enc_blocks=[1,1,1,1]", "model.options.dec_blocks=[1,1,1]",
        "data.patch=32", "data.batch=2", "data.train_max_images=4", "data.val=null", "ema_decay=0.9",
        "schedule.warmup_steps=2", "log_every=1", "checkpoint_every=100", "total_steps=6", "threads=2"]


def write_config(tmp_path: Path, shared, **extra) -> Path:
    data = {"name": "tiny", "out_dir": str(tmp_path / "runs"), "model": {"name": "fastderain"},
            "data": {"train": str(shared("data/rain100l-train"))}, **extra}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fake_synth(monkeypatch) -> list:
    """Stand in for derain.data.synth (rain = clean + random streak energy drawn from the generator)."""
    calls: list = []

    def preset(name: str) -> dict:
        if name not in ("light", "heavy"):
            raise KeyError(f"unknown rain preset {name!r}")
        return {"preset": name}

    def synthesize_pair(clean: torch.Tensor, config: dict, generator: torch.Generator) -> tuple:
        calls.append((tuple(clean.shape), config, generator))
        return (clean + 0.3 * torch.rand(clean.shape, generator=generator)).clamp(0, 1), clean

    module = types.ModuleType("derain.data.synth")
    module.preset, module.synthesize_pair = preset, synthesize_pair
    monkeypatch.setitem(sys.modules, "derain.data.synth", module)
    return calls


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


def test_repo_configs_are_valid():
    from derain.train.recipe import is_recipe, load_recipe

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))  # configs/archive too
    assert len(configs) > 10
    for path in configs:
        if is_recipe(path):
            assert load_recipe(path)
        elif "fsderain" not in path.name:  # FSDerain recipes are read by `derain finetune`, not `derain train`
            config = load_config(path)
            assert config.data.patch > 0, path
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "rain100l_stage1.yaml")
    assert config.model.name == "fastderain" and config.data.patch % 16 == 0


def test_patch_larger_than_images_fails_before_training(tmp_path, shared):
    with pytest.raises(DerainError, match="patch size 512 is larger"):
        train_from_config(str(write_config(tmp_path, shared)), TINY + ["data.patch=512"])
    assert not (tmp_path / "runs" / "tiny" / "last.safetensors").exists()


def test_no_pairs_fails_before_training(tmp_path, shared):
    empty = tmp_path / "empty"
    (empty / "rainy").mkdir(parents=True)
    (empty / "clean").mkdir()
    with pytest.raises(DerainError, match="no rainy/clean pairs"):
        train_from_config(str(write_config(tmp_path, shared)), TINY + [f"data.train={empty}"])


def test_synthetic_and_plateau_settings_are_checked():
    with pytest.raises(DerainError, match="needs data.synth_clean"):
        load_config(None, ["data.synth_ratio=0.5"])
    with pytest.raises(DerainError, match=r"synth_ratio must be in \[0, 1\]"):
        load_config(None, ["data.synth_ratio=1.5", "data.synth_clean=x"])
    with pytest.raises(DerainError, match="data.train is needed"):
        load_config(None, ["data.train=null"])
    assert load_config(None, ["data.train=null", "data.synth_ratio=1", "data.synth_clean=x"]).data.train is None
    with pytest.raises(DerainError, match="plateau is driven by the validation PSNR"):
        load_config(None, ["schedule.name=plateau", "data.train=pairs"])


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


def test_plateau_lowers_the_lr_when_the_psnr_stops_improving():
    config = ScheduleConfig(name="plateau", factor=0.5, patience=1, min_lr=0.2, warmup_steps=4)
    lr = make_schedule(config, 1.0, 100)
    assert isinstance(lr, PlateauSchedule)
    assert lr(0) == pytest.approx(0.25) and lr(3) == 1.0 and lr(50) == 1.0  # warmup, then the base lr
    assert not lr.observe(30.0) and not lr.observe(31.0)  # improving
    assert not lr.observe(31.0)                            # 1 validation without gain = patience: wait
    assert lr.observe(30.5) and lr(50) == 0.5              # 2 > patience: halve, and count again
    assert not lr.observe(30.9) and lr.observe(31.0) and lr(50) == 0.25  # equal is not a gain
    state = lr.state_dict()
    assert not lr.observe(29.0) and lr.observe(29.0) and lr(50) == 0.2  # never below min_lr
    assert not lr.observe(29.0) and not lr.observe(29.0) and lr(50) == 0.2
    resumed = make_schedule(config, 1.0, 100)  # the state carries the curve across a resume
    resumed.load_state_dict(state)
    assert resumed(50) == 0.25 and resumed.state_dict() == state
    with pytest.raises(DerainError, match="factor must be in"):
        make_schedule(ScheduleConfig(name="plateau", factor=1.5), 1.0, 10)


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
    dtype = compute_dtype("auto", torch.device("cpu"))  # what training computes in
    assert dtype == (torch.bfloat16 if cpu_supports_bf16() else None)
    assert compute_dtype("fp32", torch.device("cpu")) is None


# ----- the loop ----------------------------------------------------------------------------------------
def _states(last: Path) -> dict:
    return torch.load(state_path_for(last), map_location="cpu", weights_only=False)


def _same(a, b) -> bool:
    """Deep equality of nested states holding tensors and arrays."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if hasattr(a, "shape"):  # numpy arrays
        return bool((a == b).all())
    return a == b


@pytest.mark.parametrize("recipe", ["plain", "plateau+synthetic", "fused optimiser"])
def test_resume_gives_the_same_weights_as_one_run(tmp_path, shared, monkeypatch, recipe):
    """6 steps in one go == 3 steps, stop at a checkpoint, resume, 3 more steps: bit-identical."""
    path = str(write_config(tmp_path, shared))
    recipe_keys = ["optim.fused=true"] if recipe == "fused optimiser" else []
    if recipe == "plateau+synthetic":  # schedule state and the synthetic-rain generator must survive the resume
        fake_synth(monkeypatch)
        recipe_keys = ["data.synth_ratio=0.5", f"data.synth_clean={shared('data/clean/kodak24')}",
                       "schedule.name=plateau", "schedule.patience=0", f"data.val={shared('data/rain100l')}",
                       "data.val_max_images=1", "val_every=2"]
    trainer = Trainer(load_config(path, TINY + recipe_keys + ["name=whole"]))
    assert bool(trainer.optimizer.defaults.get("fused")) == (recipe == "fused optimiser")
    whole = trainer.fit()
    first = Trainer(load_config(path, TINY + recipe_keys + ["name=pieces"])).fit(stop_at=3)
    at_3 = _states(first)
    assert at_3["step"] == 3
    if recipe == "plateau+synthetic":
        assert math.isfinite(at_3["schedule"]["best"])  # the validation at step 2 is in the saved state
        assert Trainer(load_config(path, TINY + recipe_keys + ["name=pieces"]),
                       resume=str(first)).schedule.state_dict() == at_3["schedule"]
    pieces = train_from_config(path, TINY + recipe_keys + ["name=pieces"], resume=str(first))
    a, b = _states(whole), _states(pieces)
    assert a["step"] == b["step"] == 6
    assert a["schedule"] == b["schedule"] and _same(a["ranks"], b["ranks"])  # samplers and generators too
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # The exported weights (last.safetensors) load by name alone, as `derain run --weights` does.
    from derain.weights.load import load_model
    assert pieces.name == "last.safetensors"
    model, name = load_model(None, str(pieces))
    assert name == "fastderain"


def test_accumulating_two_batches_of_4_gives_the_update_of_one_batch_of_8(tmp_path, shared):
    """accumulate=2 x batch 4 draws the same 8 patches as batch 8 and must give the same mean-loss gradient."""
    path = str(write_config(tmp_path, shared))
    common = TINY + ["precision=fp32", "ema_decay=0", "schedule.name=constant"]
    big = Trainer(load_config(path, common + ["name=big", "data.batch=8"]))
    acc = Trainer(load_config(path, common + ["name=acc", "data.batch=4", "optim.accumulate=2"]))
    for _ in range(2):
        loss_big, _, _ = big.train_step()
        loss_acc, _, _ = acc.train_step()
        assert loss_acc == pytest.approx(loss_big, rel=1e-5)
        for (name, a), b in zip(big.model.named_parameters(), acc.model.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-8, msg=name)
            # Adam moves each weight by ~lr * sign(grad) at first: compare with a tolerance well under lr.
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=name)


def test_channels_last_training_matches_contiguous_and_saves_loadable_weights(tmp_path, shared):
    """memory_format changes the layout, not the arithmetic: the same steps give the same weights (to float
    rounding), and the checkpoint of a channels-last run loads like any other."""
    from derain.weights.load import load_model

    path = str(write_config(tmp_path, shared))
    common = TINY + ["precision=fp32", "total_steps=3"]
    runs = {fmt: Trainer(load_config(path, common + [f"name={fmt}", f"memory_format={fmt}"]))
            for fmt in ("contiguous", "channels_last")}
    assert runs["channels_last"].memory_format == torch.channels_last
    assert runs["channels_last"].model.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert runs["contiguous"].memory_format == torch.contiguous_format
    for _ in range(3):
        losses = [run.train_step()[0] for run in runs.values()]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (name, a), b in zip(runs["contiguous"].model.named_parameters(), runs["channels_last"].model.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=name)
    model, _ = load_model(None, str(runs["channels_last"].save()))
    torch.testing.assert_close(model.state_dict()["stem.weight"], runs["channels_last"].export_model().state_dict()["stem.weight"])
    # FastDerain declares that it trains faster channels-last; auto follows the declaration.
    assert uses_channels_last("auto", runs["contiguous"].model)
    assert not uses_channels_last("auto", torch.nn.Linear(2, 2))
    with pytest.raises(DerainError, match="memory_format must be auto, channels_last or contiguous"):
        load_config(path, ["memory_format=nhwc"])


def test_synthetic_pairs_fill_their_share_of_each_batch(monkeypatch, shared):
    from derain.train.config import DataConfig

    calls = fake_synth(monkeypatch)
    data = DataConfig(train=str(shared("data/rain100l-train")), train_max_images=4, synth_ratio=0.5,
                      synth_clean=str(shared("data/clean/kodak24")))
    batches = TrainBatches.from_config(data, seed=0)
    assert batches.describe() == "4 pairs + synthetic rain from 24 clean images (50% of each batch)"
    state = batches.state_dict()
    x, y = batches.sample(4, 32)
    assert x.shape == y.shape == (4, 3, 32, 32)
    assert len(calls) == 1 and calls[0][:2] == ((2, 3, 32, 32), {"preset": "light"})
    assert isinstance(calls[0][2], torch.Generator)
    assert torch.all(x[2:] >= y[2:]) and not torch.equal(x[2:], y[2:])  # rain added to its own clean target
    batches.load_state_dict(state)  # exact resume: the same crops and the same rain
    x2, y2 = batches.sample(4, 32)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    batches.synth_ratio = 0.25  # batch 2: stochastic rounding gives 0 or 1 synthetic pairs, 0.5 on average
    counts = [batches._synthetic_count(2) for _ in range(400)]
    assert set(counts) == {0, 1} and 0.4 < sum(counts) / 400 < 0.6
    with pytest.raises(DerainError, match="data.synth_preset"):
        TrainBatches(None, batches.clean, 1.0, "monsoon")
    with pytest.raises(DerainError, match="clean image folder not found"):
        TrainBatches.from_config(DataConfig(synth_ratio=1.0, synth_clean="/nonexistent/clean"), seed=0)


def test_training_on_synthetic_rain_only(monkeypatch, tmp_path, shared):
    calls = fake_synth(monkeypatch)
    path = str(write_config(tmp_path, shared))
    clean = shared("data/clean/kodak24")
    last = train_from_config(path, TINY + ["total_steps=2", "data.train=null", "data.synth_ratio=1.0",
                                           f"data.synth_clean={clean}"])
    assert last.is_file() and len(calls) == 2 and calls[0][0][0] == 2  # every pair of every batch synthetic
    log = (tmp_path / "runs" / "tiny" / "train.log").read_text()
    assert "on synthetic rain from 24 clean images (100% of each batch)" in log
    with pytest.raises(DerainError, match="patch size 1024 is larger than the smallest clean image"):
        train_from_config(path, TINY + ["data.patch=1024", "data.train=null", "data.synth_ratio=1.0",
                                        f"data.synth_clean={clean}"], overwrite=True)


def test_real_synth_module_plugs_in(shared):
    synth = pytest.importorskip("derain.data.synth")
    from derain.train.config import DataConfig

    batches = TrainBatches.from_config(DataConfig(train=None, synth_ratio=1.0,
                                                  synth_clean=str(shared("data/clean/kodak24"))), seed=0)
    x, y = batches.sample(2, 64)
    assert x.shape == y.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and not torch.equal(x, y)
    assert synth.preset("light") is not None


def test_time_budget_stops_at_a_checkpoint_then_auto_resume_finishes(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    last = train_from_config(path, TINY, time_budget_minutes=1e-6)
    assert 1 <= _states(last)["step"] < 6
    log = (tmp_path / "runs" / "tiny" / "train.log").read_text()
    assert "stopped at step" in log and "--resume" in log
    last = train_from_config(path, TINY, resume="auto")
    assert _states(last)["step"] == 6


def test_a_second_run_never_replaces_an_earlier_ones_checkpoints_unasked(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    last = train_from_config(path, [*TINY, "stop_step=3"])
    first = last.read_bytes()
    with pytest.raises(DerainError, match="already holds a run .*--resume auto.*--overwrite"):
        train_from_config(path, [*TINY, "stop_step=3", "seed=5"])
    assert last.read_bytes() == first  # the earlier run's weights are untouched
    again = train_from_config(path, [*TINY, "stop_step=3", "seed=5"], overwrite=True)
    assert again == last and last.read_bytes() != first and _states(last)["step"] == 3


def test_a_diverging_run_stops_with_one_line_and_a_healthy_one_does_not(tmp_path, shared):
    """A warmup towards a rate far too high: the loss sits near 0.021 to step 50, then blows up (0.27 at step
    85, and on). The run stops there, names the step and logs it; with the check off the same schedule trains
    on, and a run at a sane rate trains to the end."""
    path = str(write_config(tmp_path, shared))
    steep = [*TINY, "total_steps=200", "schedule.warmup_steps=200", "log_every=20", "optim.lr=0.04",
             "optim.grad_clip=0"]
    with pytest.raises(DerainError, match=r"training diverged at step \d+: the running loss .* is over 10 times"):
        train_from_config(path, [*steep, "name=steep"])
    log = (tmp_path / "runs" / "steep" / "train.log").read_text()
    assert "training diverged at step" in log and "step 60/200" in log  # not before the loss settled
    assert train_from_config(path, [*steep, "stop_step=100", "divergence_factor=0", "name=unchecked"]).is_file()
    assert train_from_config(path, [*TINY, "total_steps=60", "log_every=20", "name=sane"]).is_file()
    with pytest.raises(DerainError, match="divergence_factor must be 0"):
        load_config(path, ["divergence_factor=0.5"])


def test_stop_step_ends_the_run_early_on_the_full_schedule(tmp_path, shared):
    """stop_step reproduces a run that a time budget stopped: the weights of the longer schedule at that step."""
    path = str(write_config(tmp_path, shared))
    stopped = _states(train_from_config(path, [*TINY, "stop_step=4", "name=stopped"]))
    assert stopped["step"] == 4
    log = (tmp_path / "runs" / "stopped" / "train.log").read_text()
    assert "finished 4 steps (stop_step; the schedule runs to 6)" in log
    trainer = Trainer(load_config(path, [*TINY, "name=cut"]))
    trainer.fit(stop_at=4)
    cut = _states(tmp_path / "runs" / "cut" / "last.safetensors")
    assert all(_same(stopped[key], cut[key]) for key in ("model", "optimizer", "ema", "schedule"))
    with pytest.raises(DerainError, match="stop_step must be between 1 and total_steps"):
        load_config(path, [*TINY, "stop_step=7"])


def test_validation_scores_real_pairs(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    val = str(shared("data/rain100l"))
    train_from_config(path, TINY + ["total_steps=2", f"data.val={val}", "data.val_max_images=2", "val_every=2"])
    log = (tmp_path / "runs" / "tiny" / "train.log").read_text()
    psnr = float(log.split("matlab-y PSNR ")[1].split()[0])
    assert 20.0 < psnr < 45.0 and math.isfinite(psnr)
    assert (tmp_path / "runs" / "tiny" / "best.safetensors").exists()


def test_tensorboard_is_optional_and_lazy(tmp_path, shared, monkeypatch):
    path = str(write_config(tmp_path, shared))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(DerainError, match="pip install tensorboard"):
        train_from_config(path, TINY + ["tensorboard=true"])
    scalars: list = []

    class Writer:  # stands in for SummaryWriter: the package is not a dependency
        def __init__(self, folder: str) -> None:
            self.folder = folder

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, step))

        def close(self) -> None:
            scalars.append(("closed", self.folder))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    val = str(shared("data/rain100l"))
    train_from_config(path, TINY + ["tensorboard=true", "total_steps=2", f"data.val={val}", "data.val_max_images=1",
                                    "val_every=2"])
    assert ("train/loss", 2) in scalars and ("train/lr", 1) in scalars and ("val/psnr", 2) in scalars
    assert scalars[-1] == ("closed", str(tmp_path / "runs" / "tiny" / "tensorboard"))


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


def test_resume_accepts_the_run_folder_its_weights_or_its_state(tmp_path, shared):
    path = str(write_config(tmp_path, shared))
    run = tmp_path / "runs" / "tiny"
    last = Trainer(load_config(path, TINY)).fit(stop_at=1)
    assert last == run / "last.safetensors" and (run / "last.state.pt").is_file()
    assert state_path_for(run) == state_path_for(last) == state_path_for(run / "last.state.pt") == run / "last.state.pt"
    assert state_path_for(run / "last.pt") == run / "last.state.pt"  # runs written before safetensors
    for step, resume in ((2, run), (3, last), (4, run / "last.state.pt")):
        train_from_config(path, TINY + [f"total_steps={step}"], resume=str(resume))
        assert _states(last)["step"] == step
    with pytest.raises(DerainError, match="no training state at"):
        train_from_config(path, TINY, resume=str(tmp_path / "runs" / "other"))
    train_from_config(path, TINY + ["name=stage2", f"warm_start={run}", "total_steps=1"])  # a folder warm-starts too
    assert f"warm start from {last}" in (tmp_path / "runs" / "stage2" / "train.log").read_text()


def test_train_command_line_errors_and_weights_for_run(tmp_path, shared, capsys):
    from derain.cli import main

    path = str(write_config(tmp_path, shared))
    assert main(["train", path, "--set", "optim.lrr=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'optim.lrr': unknown key" in err[0]
    assert main(["train", path, *[a for kv in TINY + ["total_steps=2"] for a in ("--set", kv)]]) == 0
    last = tmp_path / "runs" / "tiny" / "last.safetensors"
    assert f"weights in {last}" in capsys.readouterr().out
    out = tmp_path / "out"
    rainy = shared("data/rain100l/rainy/rain-001.png")
    assert main(["run", str(rainy), "-o", str(out), "--weights", str(last), "-q"]) == 0  # self-describing
    assert (out / "rain-001.png").is_file()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("derain: error: "), err
    return err[0]


def test_train_command_config_errors_fail_before_training(tmp_path, shared, capsys):
    from derain.cli import main

    path = str(write_config(tmp_path, shared))
    for override, expected in (("total_steps=many", "'total_steps': expected an integer"),
                               ("data.patch=big", "'data.patch': expected an integer"),
                               ("data.batchsize=4", "'data.batchsize': unknown key"),
                               ("tensorboard=maybe", "'tensorboard': expected true or false"),
                               ("schedule.name=plateau", "set data.val")):
        assert main(["train", path, "--set", override]) == 1
        assert expected in _one_line_error(capsys)
    assert main(["train", str(tmp_path / "missing.yaml")]) == 1
    assert "config file not found" in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()  # nothing started


def test_train_command_bad_inputs_are_one_line(tmp_path, shared, capsys):
    from derain.cli import main

    path = str(write_config(tmp_path, shared))
    tiny = [a for kv in TINY for a in ("--set", kv)]
    empty = tmp_path / "empty"
    (empty / "rainy").mkdir(parents=True)
    (empty / "clean").mkdir()
    assert main(["train", path, *tiny, "--set", f"data.train={empty}"]) == 1
    assert "no rainy/clean pairs" in _one_line_error(capsys)
    assert main(["train", path, *tiny, "--set", "data.patch=512"]) == 1
    assert "patch size 512 is larger than the smallest training image" in _one_line_error(capsys)
    assert main(["train", path, *tiny, "--set", "data.patch=40"]) == 1
    assert "must be a multiple of 16" in _one_line_error(capsys)

    # A run of another network, or of the same network with other widths, cannot be resumed.
    run = tmp_path / "runs" / "tiny"
    Trainer(load_config(path, TINY)).fit(stop_at=1)
    capsys.readouterr()
    wider = [*tiny, "--set", "model.options.widths=[8,16,16,32]", "--resume", str(run)]
    assert main(["train", path, *wider]) == 1
    assert "cannot resume: last.state.pt does not fit FastDerain: wrong shape" in _one_line_error(capsys)
    assert main(["train", path, "--set", "model.name=restormer", "--set", "data.patch=32", "--set", "data.batch=1",
                 "--resume", str(run)]) == 1
    assert "is a checkpoint of model 'fastderain', the config trains 'restormer'" in _one_line_error(capsys)
    (run / "last.state.pt").write_bytes(b"not a torch file")
    assert main(["train", path, *tiny, "--resume", str(run)]) == 1
    assert "is not a readable training state" in _one_line_error(capsys)
