"""The network `derain photo.jpg` runs when none is named: the default model, or its CPU student on x86 CPUs
without native bf16 (derain.inference.model_choice), with the CPU's flags faked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from derain.inference import model_choice
from derain.inference.hardware import CpuKind, cpu_kind
from derain.inference.model_choice import STUDENT, default_model_for
from derain.weights import DEFAULT, bundled_checkpoint

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def student_bundled(monkeypatch, tmp_path):
    """A stand-in for the bundled student file (the choice only asks whether it is there)."""
    real = model_choice.bundled_checkpoint
    fake = tmp_path / "student.safetensors"
    fake.write_bytes(b"x")
    monkeypatch.setattr(model_choice, "bundled_checkpoint", lambda m: fake if m == STUDENT else real(m))


@pytest.mark.parametrize("kind", [CpuKind.AVX2, CpuKind.AVX_VNNI, CpuKind.AVX512_VNNI])
def test_cpus_without_native_bf16_get_the_student_and_are_told_once(student_bundled, kind):
    said: list[str] = []
    assert default_model_for(None, None, CPU, kind, say=said.append) == STUDENT
    assert len(said) == 1 and kind.value in said[0] and f"--model {DEFAULT}" in said[0]


@pytest.mark.parametrize("kind", [CpuKind.BF16, CpuKind.OTHER])
def test_bf16_and_unmeasured_cpus_keep_the_full_default(student_bundled, kind):
    said: list[str] = []
    assert default_model_for(None, None, CPU, kind, say=said.append) is None
    assert said == []


def test_a_named_model_weights_or_a_gpu_keep_what_was_asked(student_bundled):
    said: list[str] = []
    assert default_model_for("fastderain", None, CPU, CpuKind.AVX2, say=said.append) == "fastderain"
    assert default_model_for(None, "ckpt.safetensors", CPU, CpuKind.AVX2, say=said.append) is None
    assert default_model_for(None, None, CUDA, CpuKind.AVX2, say=said.append) is None
    assert said == []


def test_without_a_bundled_student_the_default_stays(monkeypatch):
    monkeypatch.setattr(model_choice, "bundled_checkpoint", lambda m: None)
    assert default_model_for(None, None, CPU, CpuKind.AVX2, say=lambda m: None) is None


def test_stderr_says_it_once_per_process(student_bundled, monkeypatch, capsys):
    monkeypatch.setattr(model_choice, "_said", set())
    for _ in range(3):
        assert default_model_for(None, None, CPU, CpuKind.AVX2) == STUDENT
    assert capsys.readouterr().err.count("no native bf16") == 1


@pytest.mark.skipif(bundled_checkpoint(STUDENT) is None, reason="the student's weights are not bundled here")
def test_derain_run_on_an_avx2_cpu_runs_the_bundled_student(monkeypatch, tmp_path, capsys, one_thread):
    from derain.cli import main
    from derain.files.imageio import read_uint8_rgb, write_image

    monkeypatch.setattr(model_choice, "cpu_kind", lambda: CpuKind.AVX2)
    monkeypatch.setattr(model_choice, "_said", set())
    rng = np.random.default_rng(0)
    src = tmp_path / "rainy.png"
    write_image(src, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    assert main(["run", str(src), "-o", str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"using the default model's faster student {STUDENT}" in captured.err
    assert f'"model": "{STUDENT}"' in captured.out
    assert read_uint8_rgb(tmp_path / "out" / "rainy.png").shape == (40, 56, 3)
    # Naming the full default keeps it.
    assert main(["run", str(src), "-o", str(tmp_path / "full"), "--json", "--model", DEFAULT]) == 0
    assert f'"model": "{DEFAULT}"' in capsys.readouterr().out
    assert cpu_kind() is not None  # the real detection still answers (the fake was only for the choice)


def test_derain_models_says_which_model_this_cpu_runs(monkeypatch):
    from derain.commands import models
    from derain.inference import hardware

    monkeypatch.setattr(hardware, "cpu_kind", lambda: CpuKind.AVX2)
    with_student = {STUDENT: (Path("student.safetensors"), False, {})}
    assert "runs fastderain-student" in models._this_cpu(with_student)
    assert f"--model {DEFAULT}" in models._this_cpu(with_student)
    assert "runs the default model" in models._this_cpu({})
    monkeypatch.setattr(hardware, "cpu_kind", lambda: CpuKind.BF16)
    assert "runs the default model" in models._this_cpu(with_student)
