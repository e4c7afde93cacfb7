"""The rain experts (the default model's network): the gate's mix, folding, loading, the gate-only stage, the start
script, and 8-bit weight storage."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from derain.files.checkpoints import read_checkpoint, save_checkpoint
from derain.models import build, count_parameters
from derain.models.experts import RainExperts
from derain.models.fastderain import FastDerain
from derain.weights.load import load_model

ROOT = Path(__file__).resolve().parents[1]
LIGHT = dict(widths=[8, 8, 16, 16], enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1], unshuffle=1, rep=True)
GENERAL = dict(widths=[8, 16, 16, 24], enc_blocks=[1, 2, 1, 1], dec_blocks=[1, 1, 2], unshuffle=1, rep=True)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (identity scales and zero-initialised heads included), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def experts(seed: int = 0, **kwargs) -> RainExperts:
    return randomised(RainExperts(LIGHT, GENERAL, gate_width=8, **kwargs), seed)  # type: ignore[return-value]


def image(h: int = 40, w: int = 56, seed: int = 1) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_output_is_the_gated_mix_of_the_two_experts():
    net = experts()
    x = image()
    with torch.no_grad():
        light, general, out = net.light(x), net.general(x), net(x)
        g = net.expert_weight(x)
    assert g.shape == (2, 1, 40, 56) and float(g.min()) >= 0 and float(g.max()) <= 1
    assert float(g.std()) > 0  # a per-pixel weight, not one number
    assert torch.allclose(out, general + g * (light - general), atol=1e-6)
    assert not torch.allclose(out, light) and not torch.allclose(out, general)


@pytest.mark.parametrize("bias, expert", [(30.0, "light"), (-30.0, "general")])
def test_a_saturated_gate_gives_one_expert_exactly(bias, expert):
    net = experts()
    with torch.no_grad():
        net.gate.head.weight.zero_()
        net.gate.head.bias.fill_(bias)
        x = image()
        assert torch.allclose(net(x), getattr(net, expert)(x), atol=1e-6)


def test_a_saturated_gate_still_learns_which_expert_is_better():
    """The gradient floor: a gate pushed to the general expert gets a gradient towards the light one where the
    light one is right (a plain sigmoid's would be ~1e-13 at this logit)."""
    net = experts()
    with torch.no_grad():
        net.gate.head.weight.zero_()
        net.gate.head.bias.fill_(-30.0)
    x = image()
    with torch.no_grad():
        target = net.light(x)  # the light expert is exactly right
    loss = ((net(x) - target) ** 2).mean()
    loss.backward()
    grad = net.gate.head.bias.grad
    assert grad is not None and float(grad) < -1e-6  # descending raises the logit: towards the light expert


def test_the_gate_takes_any_size_and_the_experts_their_multiple():
    net = experts()
    x = image(37, 51)
    with torch.no_grad():
        assert net.gate(x, 0.9 * x, 0.8 * x).shape == (2, 1, 37, 51)  # its grid is upsampled to any size
    assert net.size_multiple == 8  # both experts: three 2x downsamplings


def test_fold_keeps_the_function_and_folded_weights_load_back():
    net = experts(seed=2)
    x = image(seed=4)
    with torch.no_grad():
        before = net(x)
        folded = experts(seed=2).fold()
        assert float((folded(x) - before).abs().max()) < 1e-5
        fresh = RainExperts(LIGHT, GENERAL, gate_width=8).eval()
        fresh.load_state_dict(folded.state_dict())  # a folded checkpoint into the training form
        assert float((fresh(x) - before).abs().max()) < 1e-5


def test_frozen_experts_leave_only_the_gate_to_train():
    net = RainExperts(LIGHT, GENERAL, gate_width=8, freeze_experts=True)
    randomised(net).train()
    assert count_parameters(net) == count_parameters(net.gate)
    experts_before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("gate.")}
    gate_before = {k: v.clone() for k, v in net.gate.state_dict().items()}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    x = image()
    loss = (net(x) - x * 0.9).abs().mean()
    loss.backward()
    opt.step()
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in experts_before.items())
    assert any(not torch.equal(net.gate.state_dict()[k], v) for k, v in gate_before.items())


def test_registered_default_configuration_matches_the_bundled_experts():
    net = build("fastderain-experts")
    assert isinstance(net.light, FastDerain) and isinstance(net.general, FastDerain)
    assert count_parameters(net.light) == 2_312_659  # the Rain100L specialist's network
    assert count_parameters(net.general) == 4_056_499  # the general model (configs/general_stage2.yaml)


def test_the_bundled_default_is_the_experts_in_8_bits():
    from derain.weights import DEFAULT, default_checkpoint, default_model_name

    path = default_checkpoint()
    if path is None:
        pytest.skip("no default model bundled in this checkout")
    assert default_model_name() == DEFAULT
    stored = read_checkpoint(path)
    assert stored["int8_weights"] is True and path.stat().st_size <= 10 * 1024 * 1024
    assert "freeze_experts" not in stored["config"]  # a fine-tune of the bundle trains all of it
    net, name = load_model(None, path)
    assert name == DEFAULT and isinstance(net, RainExperts)
    assert all(p.requires_grad for p in net.parameters())


def test_start_script_composes_two_trained_experts_exactly(tmp_path):
    light = randomised(FastDerain(**LIGHT), seed=5)
    general = randomised(FastDerain(**GENERAL), seed=6)
    save_checkpoint(tmp_path / "light.safetensors", light, "fastderain", LIGHT)
    save_checkpoint(tmp_path / "general.safetensors", general, "fastderain", GENERAL)
    out = tmp_path / "start.safetensors"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_experts_start.py"),
                           str(tmp_path / "light.safetensors"), str(tmp_path / "general.safetensors"), str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    net, name = load_model(None, out)
    assert name == "fastderain-experts"
    x = image()
    with torch.no_grad():
        assert torch.equal(net.light(x), light(x)) and torch.equal(net.general(x), general(x))
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_experts_start.py"),
                              str(tmp_path / "nothing.safetensors"), str(tmp_path / "general.safetensors"), str(out)],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr


def test_int8_weights_are_a_quarter_of_the_size_and_round_to_nearest(tmp_path):
    net = experts(seed=7)
    full = save_checkpoint(tmp_path / "full.safetensors", net, "fastderain-experts", {})
    small = save_checkpoint(tmp_path / "small.safetensors", net, "fastderain-experts", {}, int8_weights=True)
    assert small.stat().st_size < 0.4 * full.stat().st_size
    stored = read_checkpoint(small)
    assert stored["int8_weights"] is True
    restored, original = stored["params"], net.state_dict()
    assert set(restored) == set(original)  # no scale tensors leak into the state dict
    for k, v in original.items():
        assert restored[k].dtype == torch.float32
        if v.dim() >= 2:  # within half a step of its output channel's grid
            step = v.abs().amax(dim=tuple(range(1, v.dim())), keepdim=True) / 127
            assert bool(((restored[k] - v).abs() <= step / 2 + 1e-7).all()), k
        else:
            assert torch.equal(restored[k], v), k
    with pytest.raises(Exception, match="safetensors"):
        save_checkpoint(tmp_path / "small.pt", net, "fastderain-experts", {}, int8_weights=True)
