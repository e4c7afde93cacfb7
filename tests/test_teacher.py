"""Self-distillation targets (data.teacher): what the teacher computes, the mix, the cache and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from derain.errors import DerainError
from derain.files.imageio import read_uint8_rgb
from derain.train import Trainer, load_config
from derain.train.teacher import CACHE_NAME, mixed_target, teacher_outputs
from test_train import TINY, write_config  # pytest puts tests/ on the path (no package)


def test_mixed_target_blends_and_rounds(shared):
    truth = read_uint8_rgb(shared("data/rain100l-train/clean/norain-001.webp"))
    teacher = read_uint8_rgb(shared("data/rain100l-train/rainy/rain-001.webp")).astype(np.float32) / 255.0
    assert np.array_equal(mixed_target(teacher, truth, 1.0), np.rint(teacher * 255.0).astype(np.uint8))
    half = mixed_target(teacher, truth, 0.5).astype(np.int16)
    expected = (teacher * 255.0 + truth) / 2.0
    assert np.abs(half - expected).max() <= 0.5 + 1e-3
    assert not np.array_equal(half.astype(np.uint8), truth)


@pytest.fixture()
def teacher_run(tmp_path, shared):
    """A tiny trained model (its run folder) and the config file that trains the student."""
    path = write_config(tmp_path, shared)
    Trainer(load_config(path, [*TINY, "name=teacher", "total_steps=3"])).fit()
    return tmp_path / "runs" / "teacher", path


def test_targets_are_the_teachers_ensemble_and_are_cached(teacher_run, capsys):
    folder, path = teacher_run
    keys = [*TINY, "name=student", f"data.teacher={folder}", "data.teacher_ensemble=hflip"]
    real = Trainer(load_config(path, keys)).batches.real
    plain = Trainer(load_config(path, [*TINY, "name=plain"])).batches.real  # the ground-truth targets
    expected = teacher_outputs(folder / "last.safetensors", real.inputs, "hflip")
    for target, out, gt in zip(real.targets, expected, plain.targets):
        assert np.array_equal(target, np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8))
        assert not np.array_equal(target, gt)
    assert (folder.parent / "student" / CACHE_NAME).is_file()

    again = Trainer(load_config(path, keys))  # same teacher, ensemble, mix and pairs: read from the cache
    assert "teacher targets from" in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(again.batches.real.targets, real.targets))

    # Another mix is another set of targets: recomputed, halfway between the teacher and the ground truth.
    mixed = Trainer(load_config(path, [*keys, "data.teacher_mix=0.5"])).batches.real
    for half, out, gt in zip(mixed.targets, expected, plain.targets):
        assert np.array_equal(half, mixed_target(out, gt, 0.5))
        assert not np.array_equal(half, gt)


def test_bad_teacher_settings_are_one_line_errors(tmp_path, shared, teacher_run):
    folder, path = teacher_run
    with pytest.raises(DerainError, match="data.teacher: no weights at"):
        Trainer(load_config(path, [*TINY, "name=s1", f"data.teacher={tmp_path / 'missing.safetensors'}"]))
    with pytest.raises(DerainError, match="'data.teacher_ensemble': unknown ensemble 'all'"):
        Trainer(load_config(path, [*TINY, "name=s2", f"data.teacher={folder}", "data.teacher_ensemble=all"]))
    with pytest.raises(DerainError, match=r"data.teacher_mix must be in \(0, 1\]"):
        load_config(path, [*TINY, f"data.teacher={folder}", "data.teacher_mix=0"])
