"""All-in-one training and use: five-task batches, the selector's loss, `derain run --task`."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derain.errors import DerainError
from derain.train import Trainer, load_config, train_from_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fsdrnet_small_five_tasks.yaml"


def tiny(tmp_path: Path, shared) -> list[str]:
    return [f"data.train={shared('data/rain100l-train')}", f"data.task_clean={shared('data/clean/kodak24')}",
            "data.val=null", "data.patch=64", "data.batch=5", "data.train_max_images=4", "total_steps=3",
            "schedule.warmup_steps=1", "log_every=1", "checkpoint_every=100", "threads=2", "ema_decay=0.0",
            f"out_dir={tmp_path / 'runs'}"]


def test_repo_config_trains_all_five_tasks_with_the_selector_loss(tmp_path, shared):
    config = load_config(CONFIG, tiny(tmp_path, shared))
    assert config.data.tasks == ["rain", "haze", "noise", "blur", "lowlight"]
    trainer = Trainer(config)
    _, task = trainer.batches.sample(5, 64)[1:]
    assert sorted(task.tolist()) == [0, 1, 2, 3, 4]  # one balanced round per batch of five
    total, parts, _ = trainer.train_step()
    assert set(parts) == {"l1", "fft", "selector"}
    assert math.isfinite(total) and parts["selector"] > 0
    # The selector starts uninformed: its cross-entropy is near ln 5.
    assert abs(parts["selector"] - math.log(5)) < 0.5
    trainer.close()


def test_all_in_one_settings_are_checked_before_training(tmp_path, shared):
    with pytest.raises(DerainError, match="data.tasks must be among"):
        load_config(CONFIG, tiny(tmp_path, shared) + ["data.tasks=[rain, fog]"])
    with pytest.raises(DerainError, match="selector"):  # a single-task model has no selector to train
        train_from_config(str(CONFIG), tiny(tmp_path, shared) + ["model.name=fastderain"])


def test_run_with_a_task_prints_the_choice_and_refuses_single_task_models(tmp_path, shared):
    run_dir = train_from_config(str(CONFIG), tiny(tmp_path, shared))
    weights = next(Path(run_dir).glob("*.safetensors")) if Path(run_dir).is_dir() else Path(run_dir)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.asarray(Image.open(shared("data/rain100l/rainy/rain-001.png")))[:96, :128]).save(photo)
    cli = [sys.executable, "-m", "derain.cli", "run", str(photo), "--weights", str(weights), "-q"]
    auto = subprocess.run(cli + ["-o", str(tmp_path / "auto")], capture_output=True, text=True)
    assert auto.returncode == 0, auto.stderr
    assert "the degradation selector chose" in auto.stderr
    assert Image.open(tmp_path / "auto" / "photo.png").size == (128, 96)
    haze = subprocess.run(cli + ["-o", str(tmp_path / "haze"), "--task", "haze"], capture_output=True, text=True)
    assert haze.returncode == 0 and "selector chose" not in haze.stderr
    single = subprocess.run([sys.executable, "-m", "derain.cli", "run", str(photo), "-o", str(tmp_path / "x"),
                             "--task", "haze", "-q"], capture_output=True, text=True)
    assert single.returncode != 0
    assert "all-in-one" in single.stderr and len(single.stderr.strip().splitlines()) == 1
