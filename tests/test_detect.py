"""Checkpoint auto-detection: a bare state_dict names its network and hyperparameters by its keys and shapes
(issue 38 item 13). Shapes are all that detection reads, so most networks here are built on the meta device."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.weights.load import load_model
from derain.files.checkpoints import read_checkpoint
from derain.cli import main
from derain.errors import DerainError
from derain.models import build, get_spec, list_specs
from derain.models.detect import detect_model


def meta_state(name: str, **options) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build(name, **options).state_dict()


def shapes(state) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("name", [spec.name for spec in list_specs()])
def test_every_registered_network_is_recognised(name):
    found, options = detect_model(meta_state(name))
    # DMSR's 128-pixel window protocol is a way of running the same weights: it leaves no trace in them.
    expected = "dmsr" if name == "dmsr-win128" else name
    assert (found, options) == (expected, {})
    assert get_spec(found).builder == get_spec(name).builder


@pytest.mark.parametrize("name, options", [
    ("restormer", dict(dim=24, num_blocks=[1, 2, 2, 3], num_refinement_blocks=1, heads=[1, 1, 2, 4],
                       ffn_expansion_factor=2.0, bias=True, LayerNorm_type="BiasFree")),
    ("fastderain", dict(widths=[16, 32, 48], enc_blocks=[1, 2, 1], dec_blocks=[2, 1], unshuffle=1)),
    ("fastderain", dict(widths=[16, 24], enc_blocks=[1, 1], dec_blocks=[1], full_width=8, full_blocks=[1, 2],
                        rep=True)),
    ("mspfn", dict(channels=32, iterations=3, rcabs=[2, 1, 1], lstm_hidden=[16, 32, 64])),
    ("dmsr", dict(num_res=2, base_channel=16)),
    ("restormer-small", dict(factor=2, dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=2)),
    ("rain2avoid-unet", dict(width=32)),
    ("fsdrnet", dict(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, bands=4, head_hidden=8,
                     selector_hidden=32, kernel_size=3)),
])
def test_hyperparameters_are_read_from_the_shapes(name, options):
    state = meta_state(name, **options)
    found, detected = detect_model(state)
    assert found == name
    for key, value in options.items():
        assert detected.get(key, get_spec(name).default_config.get(key)) == value, key
    assert shapes(meta_state(found, **detected)) == shapes(state)


def test_weights_of_no_registered_network_are_refused():
    state = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 3, 3)).state_dict()
    with pytest.raises(DerainError, match="match no registered network"):
        detect_model(state)
    # A FastDerain with one tensor of the wrong shape is not loaded half-way: no guess fits it.
    state = meta_state("fastderain")
    state["head.bias"] = torch.empty(5, device="meta")
    with pytest.raises(DerainError, match="match no registered network"):
        detect_model(state)


def test_a_bare_state_dict_loads_and_says_what_it_is(tmp_path):
    torch.manual_seed(0)
    options = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])
    model = build("restormer", **options)
    path = tmp_path / "bare.pth"
    torch.save({"params": model.state_dict()}, path)  # the official release's wrapping
    said = []
    loaded, name = load_model(None, path, say=said.append)
    assert name == "restormer" and len(said) == 1
    assert "recognised restormer" in said[0] and "dim=8" in said[0] and "heads=[1, 1, 2, 2]" in said[0]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_derain_run_with_a_bare_copy_of_the_bundled_model(tmp_path, capsys):
    """`derain run photo --weights FILE` without --model, end to end: the same image as the bundled file."""
    from derain.weights import default_checkpoint

    bundled = default_checkpoint()
    if bundled is None:
        pytest.skip("no default model bundled in this checkout")
    bare = tmp_path / "bare.pth"
    torch.save({k: v.float() for k, v in read_checkpoint(bundled)["params"].items()}, bare)
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(photo)
    results = {}
    for label, weights in (("bare", bare), ("bundled", bundled)):
        out = tmp_path / label
        assert main(["run", str(photo), "--weights", str(weights), "-o", str(out), "-q", "--device", "cpu"]) == 0
        results[label] = np.asarray(Image.open(out / "photo.png"))
    err = capsys.readouterr().err
    assert "bare.pth: recognised fastderain-experts (its default configuration)" in err
    assert np.array_equal(results["bare"], results["bundled"])
