"""Restormer against the official code: parameter names and shapes, outputs, and checkpoint formats."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from derain.files.checkpoints import extract_state_dict, load_weights, read_checkpoint, save_checkpoint
from derain.weights.load import load_model
from derain.errors import DerainError
from derain.models import build, count_parameters


def official_keys(path: Path) -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        keys[name] = tuple(int(s) for s in shape.split("x"))
    return keys


def test_state_dict_matches_the_official_deraining_checkpoint(shared):
    expected = official_keys(shared("reference/restormer_deraining_keys.tsv"))
    model = build("restormer")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(expected) == 494
    assert list(ours) == list(expected)  # same names, same order
    assert ours == expected
    assert count_parameters(model) == 26_126_644


@pytest.mark.parametrize("case", ["withbias_nobias", "biasfree_bias"])
def test_reproduces_the_official_outputs(case, shared):
    fixture = torch.load(shared("reference/restormer_fixtures.pt"), map_location="cpu", weights_only=True)[case]
    model = build("restormer", **fixture["config"])
    model.load_state_dict(fixture["state_dict"], strict=True)
    with torch.no_grad():
        out = model.eval()(fixture["input"])
    assert out.shape == fixture["output"].shape
    # float32 summation order differs between CPUs (AVX2 vs AVX-512 kernels): measured up to 1.1e-5 on
    # outputs of magnitude ~2; a wrong layer or weight mapping is off by 1e-1 or more.
    assert (out - fixture["output"]).abs().max().item() < 1e-4


@pytest.fixture
def fixture_net(shared):
    fixture = torch.load(shared("reference/restormer_fixtures.pt"), map_location="cpu", weights_only=True)
    return fixture["withbias_nobias"]


@pytest.mark.parametrize("wrap", ["bare", "params", "params_ema", "state_dict", "module", "compiled"])
def test_every_checkpoint_wrapping_loads(wrap, fixture_net, tmp_path):
    state = fixture_net["state_dict"]
    obj = {
        "bare": state,
        "params": {"params": state},
        "params_ema": {"params_ema": state, "iter": 3},
        "state_dict": {"state_dict": state, "epoch": 1},
        "module": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        "compiled": {f"_orig_mod.module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = load_weights(build("restormer", **fixture_net["config"]), extract_state_dict(read_checkpoint(path)))
    with torch.no_grad():
        assert torch.allclose(model.eval()(fixture_net["input"]), fixture_net["output"], atol=1e-5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_self_describing_checkpoint_round_trip(suffix, fixture_net, tmp_path):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = build("restormer", **fixture_net["config"])
    model.load_state_dict(fixture_net["state_dict"])
    path = save_checkpoint(tmp_path / f"net{suffix}", model, "restormer", fixture_net["config"], extra={"step": 7})
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary file
    loaded, name = load_model(None, path)  # no model name needed: the file says it
    assert name == "restormer" and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(fixture_net["input"]), model.eval()(fixture_net["input"]))


def test_wrong_checkpoint_names_the_first_mismatched_keys(fixture_net):
    full = build("restormer")
    with pytest.raises(DerainError) as info:
        load_weights(full, fixture_net["state_dict"], what="checkpoint tiny.pth")
    message = str(info.value)
    assert "\n" not in message and "does not fit Restormer" in message
    assert "wrong shape" in message and "patch_embed.proj.weight" in message
    assert "missing" in message  # the small net has fewer blocks


class Payload:
    """An arbitrary object: loading with weights_only=True must refuse to unpickle it."""


def test_unsafe_or_broken_files_fail_clearly(tmp_path):
    pickled = tmp_path / "evil.pth"
    torch.save({"params": Payload()}, pickled)
    with pytest.raises(DerainError, match="cannot read checkpoint"):
        read_checkpoint(pickled)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DerainError, match="cannot read checkpoint"):
        read_checkpoint(garbage)
    text = tmp_path / "notes.pth"  # a text file: its bytes reach the unpickler's internals (KeyError)
    text.write_text("hello\nworld\n")
    with pytest.raises(DerainError, match="cannot read checkpoint .*not a PyTorch weights file"):
        read_checkpoint(text)
    with pytest.raises(DerainError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    bare = tmp_path / "bare.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bare)
    with pytest.raises(DerainError, match="--model"):
        load_model(None, bare)
