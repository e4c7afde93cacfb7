"""MSPFN port: both graphs' sizes, TensorFlow's padding semantics, the recipe, and the engine end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from derain.weights.load import load_model
from derain.files.checkpoints import save_checkpoint
from derain.cli import main
from derain.inference.restore import InferenceOptions, restore
from derain.losses import build_loss
from derain.models import build, count_parameters, get_spec
from derain.models.mspfn import ConvLSTMCell, Down, Up, _same_pad
from derain.train.config import load_config
from derain.train.schedules import make_schedule

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mspfn_rain100l.yaml"
TINY = dict(channels=8, iterations=2, rcabs=[1, 1, 2], lstm_hidden=[4, 4, 8])


@pytest.mark.parametrize("name, params, rcabs", [("mspfn", 20_995_776, 17 * (1 + 3 + 3)),
                                                 ("mspfn-released", 15_823_424, 17 * (1 + 1 + 1))])
def test_both_graphs_have_the_counted_size(name, params, rcabs):
    model = build(name)
    assert count_parameters(model) == params
    assert round(params / 1e6, 2) == (21.00 if name == "mspfn" else 15.82)
    state = model.state_dict()
    assert sum(k.endswith("conv1.weight") and ".rcabs." in k for k in state) == rcabs
    # Only the RCAB and ConvLSTM convolutions have biases (tf.layers / slim); TF's conv_layer has none.
    assert all(".rcabs." in k or ".lstm_group" in k for k in state if k.endswith("bias"))
    hidden = {k.split(".")[1]: v.shape for k, v in state.items() if ".lstm_group" in k and k.endswith("conv.weight")}
    assert hidden == {"lstm_group4": (256, 32 + 64, 3, 3), "lstm_group2": (512, 32 + 128, 3, 3),
                      "lstm_group": (1024, 32 + 256, 3, 3)}
    assert len(model.fusion) == 17 and tuple(state["rnn7.conv.weight"].shape) == (3, 32, 3, 3)
    assert all(float(v.abs().max()) == 0 for k, v in state.items() if k.endswith("act.weight"))  # PReLU at 0
    assert get_spec(name).size_multiple == 4


def test_rcab_counts_per_scale():
    training, released = build("mspfn", **{**TINY, "rcabs": [1, 3, 3]}), build("mspfn", **{**TINY, "rcabs": [1, 1, 1]})
    assert [len(getattr(training.fusion[0], b).rcabs) for b in ("branch4", "branch2", "branch1")] == [1, 3, 3]
    assert [len(getattr(released.fusion[0], b).rcabs) for b in ("branch4", "branch2", "branch1")] == [1, 1, 1]


@pytest.mark.parametrize("size", [8, 9, 12, 13])
def test_stride_2_convs_follow_tensorflow_same_padding(size):
    """TF puts SAME's odd pixel after the image, and conv2d_transpose is the exact adjoint of that conv."""
    assert _same_pad(8, 3, 2) == (0, 1) and _same_pad(9, 3, 2) == (1, 1) and _same_pad(12, 3, 1) == (1, 1)
    torch.manual_seed(0)
    down, up = Down(4, 5), Up(5, 4)
    with torch.no_grad():
        up.conv.weight.copy_(down.conv.weight)  # one kernel: (out 5, in 4) for the conv, (in 5, out 4) transposed
        down.act.weight.fill_(1.0)  # PReLU slope 1: the identity, so both maps are linear
        up.act.weight.fill_(1.0)
    x = torch.randn(2, 4, size, size + 2)
    y = down(x)
    assert y.shape[-2:] == (-(-size // 2), -(-(size + 2) // 2))
    # Even sides: TF pads 0 before and 1 after, so output (0, 0) sees input rows/columns 0..2; odd: 1 and 1.
    pad = (0, 1, 0, 1) if size % 2 == 0 else (1, 1, 1, 1)
    assert torch.allclose(y, F.conv2d(F.pad(x, pad), down.conv.weight, stride=2), atol=1e-5)
    g = torch.randn_like(y)
    back = up(g, x.shape[-2:])
    assert back.shape == x.shape
    assert torch.allclose((y * g).sum(), (x * back).sum(), rtol=1e-4)  # <Down x, g> == <x, Up g>


def test_single_step_convlstm_is_the_zero_state_cell():
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 5)
    x = torch.randn(2, 3, 6, 7)
    h, (c, h2) = cell(x)
    zeros = torch.zeros(2, 5, 6, 7)
    h_full, (c_full, _) = cell(x, (zeros, zeros))  # the general path from an explicit zero state
    i, j, f, o = cell.conv(torch.cat([x, zeros], dim=1)).chunk(4, dim=1)
    c_ref = torch.sigmoid(i) * torch.tanh(j)
    assert torch.allclose(c, c_ref, atol=1e-6) and torch.allclose(c_full, c_ref, atol=1e-6)
    assert torch.allclose(h, torch.tanh(c_ref) * torch.sigmoid(o), atol=1e-6) and torch.equal(h, h2)
    assert torch.allclose(h_full, h, atol=1e-6)
    # A second step uses the state: c' = c * sigmoid(f + 1) + ...
    _, (c_next, _) = cell(x, (c, h))
    i, j, f, o = cell.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)
    assert torch.allclose(c_next, c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j), atol=1e-6)


def test_output_is_input_minus_rain_and_odd_sizes_are_padded():
    torch.manual_seed(0)
    model = build("mspfn", **TINY).eval()
    x = torch.rand(1, 3, 37, 53)
    y = restore(model, x, 4, InferenceOptions(tile=0))
    assert y.shape == x.shape and not torch.allclose(y, x)
    with torch.no_grad():
        model.rnn7.conv.weight.zero_()  # no predicted rain: the [-1, 1] round trip gives the input back
        assert torch.allclose(model(x[..., :36, :52]), x[..., :36, :52], atol=1e-6)


def test_zero_init_rain_starts_as_the_identity_and_still_learns_the_rain():
    torch.manual_seed(0)
    model = build("mspfn", **TINY, zero_init_rain=True)
    x = torch.rand(2, 3, 16, 24)
    out = model(x)
    assert torch.allclose(out, x, atol=1e-6)
    target = x - 0.2 * (torch.rand_like(x) > 0.9)  # bright "streaks" to remove
    (out - target).abs().mean().backward()
    assert model.rnn7.conv.weight.grad.abs().sum() > 0  # the rain layer gets a gradient from the first step
    assert not torch.allclose(build("mspfn", **TINY)(x), x, atol=1e-3)  # the TF init starts elsewhere


def test_checkpoint_round_trip_is_strict_and_exact(tmp_path):
    torch.manual_seed(0)
    model = build("mspfn-released", **TINY)
    config = {**get_spec("mspfn-released").default_config, **TINY}
    path = save_checkpoint(tmp_path / "m.safetensors", model, "mspfn-released", config)
    loaded, name = load_model(None, path)
    assert name == "mspfn-released"
    assert list(loaded.state_dict()) == list(model.state_dict())
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_recipe_loss_and_schedule_match_the_tf_code(shared):
    config = load_config(CONFIG, [f"data.train={shared('data/rain100l-train')}"])
    assert (config.data.patch, config.data.batch, config.optim.name, config.optim.lr) == (96, 12, "adam", 5e-4)
    lr = make_schedule(config.schedule, config.optim.lr, config.total_steps)
    assert lr(0) == pytest.approx(5e-4 + 1e-6)
    assert lr(20000) == pytest.approx(4e-4 + 1e-6)
    assert lr(10000) == pytest.approx(5e-4 * 0.8 ** 0.5 + 1e-6)  # continuous, not a staircase
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    total, parts = build_loss(config.loss)(pred, target)
    assert set(parts) == {"charbonnier", "edge"}
    # TF: on images in [-1, 1], mean sqrt(d^2 + 1e-6) of the images and of their SAME-padded Laplacians.
    lap = -torch.ones(3, 1, 3, 3)
    lap[:, :, 1, 1] = 8.0
    p, t = pred * 2 - 1, target * 2 - 1
    char = torch.sqrt((p - t) ** 2 + 1e-6).mean()
    edge = torch.sqrt((F.conv2d(p, lap, padding=1, groups=3) - F.conv2d(t, lap, padding=1, groups=3)) ** 2
                      + 1e-6).mean()
    assert float(2 * total) == pytest.approx(float(char + 0.05 * edge), rel=1e-5)  # same loss, half the scale


def test_trains_through_the_cli_and_runs_from_its_checkpoint(shared, tmp_path, capsys):
    tiny = ["model.name=mspfn-released", "model.options.channels=8", "model.options.iterations=2",
            "model.options.lstm_hidden=[4,4,8]", f"data.train={shared('data/rain100l-train')}",
            "data.train_max_images=2", "data.patch=32", "data.batch=2", "data.val=null", "total_steps=2",
            "log_every=1", f"out_dir={tmp_path / 'runs'}", "threads=2"]
    code = main(["train", str(CONFIG), *[a for t in tiny for a in ("--set", t)]])
    assert code == 0
    run = tmp_path / "runs" / "mspfn_rain100l"
    log = (run / "train.log").read_text()
    assert "training mspfn-released" in log and "step 2/2" in log and " edge " in log
    rainy = shared("data/rain100l/rainy/rain-001.png")
    code = main(["run", str(rainy), "-o", str(tmp_path / "out"), "--weights", str(run / "last.safetensors"), "-q"])
    assert code == 0
    src, dst = Image.open(rainy), Image.open(tmp_path / "out" / "rain-001.png")
    assert src.size == dst.size == (481, 321)  # padded to 484x324 inside, cropped back
    assert not np.array_equal(np.asarray(src), np.asarray(dst))
    capsys.readouterr()
