"""DMSR: the official layout and size, multi-output training through the engine, and both test protocols."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from derain.files.checkpoints import extract_state_dict, load_weights, read_checkpoint
from derain.cli import main
from derain.errors import DerainError
from derain.inference.restore import InferenceOptions, restore
from derain.losses import build_loss
from derain.models import build, count_parameters, get_spec
from derain.models.dmsr import window_forward
from derain.train.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dmsr_rain100l.yaml"
SMALL = dict(num_res=2, base_channel=8)  # both block types (plain and DDSAM) at a fraction of the cost


def test_official_size_and_key_families():
    model = build("dmsr")
    state = model.state_dict()
    assert count_parameters(model) == 35_472_543
    assert len(state) == 908  # tensors, BatchNorm buffers included
    assert tuple(state["Encoder.0.layers.15.FDSM.FFC.conv_layer.weight"].shape) == (96, 96, 1, 1)
    families = {".".join(k.split(".")[:2]) for k in state}
    assert families == {"Encoder.0", "Encoder.1", "Encoder.2", "Decoder.0", "Decoder.1", "Decoder.2",
                        *(f"feat_extract.{i}" for i in range(6)), "Convs.0", "Convs.1", "ConvsOut.0", "ConvsOut.1",
                        "FAM1.merge", "SCM1.main", "FAM2.merge", "SCM2.main"}
    assert {f"feat_extract.{i}.main.0.weight" for i in range(6)} <= state.keys()
    assert {f"SCM1.main.{i}" for i in range(5)} == {".".join(k.split(".")[:3]) for k in state if k.startswith("SCM1")}
    assert sum(k.startswith("Encoder.0.layers.") and k.endswith(".conv1.main.0.weight") for k in state) == 16
    block = "Decoder.2.layers.15."  # the DDSAM block closing a stage
    for key in ["conv1.main.0.weight", "conv2.main.0.weight", "proj.weight", "MPSRM.conv_sum.weight",
                "MPSRM.convs.2.weight", "MPSRM.dynas.0.conv2.main.0.bias", "MPSRM.dynas.1.sa.sa.weight",
                "MPSRM.dynas.2.dwconv.3.weight", "FDSM.conv_init_1.0.weight", "FDSM.conv_init_2.0.weight",
                "FDSM.conv_mid.0.weight", "FDSM.FFC.bn.running_var", "FDSM.bn.weight"]:
        assert block + key in state, key
    assert tuple(state[block + "MPSRM.dynas.0.pa.pa2.weight"].shape) == (48, 2, 7, 7)  # grouped: (C, 2, 7, 7)
    assert not any(k.startswith("Decoder.2.layers.14.MPSRM") for k in state)  # plain blocks before the last


def test_three_outputs_and_padding_to_16():
    torch.manual_seed(0)
    model = build("dmsr", **SMALL).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert [tuple(o.shape) for o in out] == [(2, 3, 64, 96), (2, 3, 32, 48), (2, 3, 16, 24)]
    # Sides that are multiples of 4 but not 16 do not fit MPSRM's pooling pyramid at 1/4 scale: hence 16.
    assert get_spec("dmsr").size_multiple == 16
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 72, 72))
    with pytest.raises(ValueError, match="at least 64"):
        model(torch.rand(1, 3, 48, 64))
    odd = torch.rand(1, 3, 67, 83)
    y = restore(model, odd, 16, InferenceOptions(tile=0, fast=False))  # the full-resolution output, cropped back
    assert y.shape == odd.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    with torch.no_grad():
        padded = F.pad(odd, (0, 13, 0, 13), mode="reflect")
        assert torch.allclose(y, model(padded)[0][..., :67, :83].clamp(0, 1), atol=1e-6)


def test_official_checkpoint_format_loads_strictly(tmp_path):
    torch.manual_seed(0)
    trained = build("dmsr", **SMALL)
    with torch.no_grad():  # non-default BatchNorm statistics, so the buffers are part of what is checked
        for name, buf in trained.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    path = tmp_path / "model_best.pth"  # as train.py saves it, with DataParallel's prefixes
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()},
                "optimizer": {}}, path)
    loaded = load_weights(build("dmsr", **SMALL), extract_state_dict(read_checkpoint(path))).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(trained.eval()(x), loaded(x)))
    state = extract_state_dict(read_checkpoint(path))
    state.pop("Encoder.0.layers.1.FDSM.conv_mid.0.weight")  # unused by the forward pass, yet part of the layout
    with pytest.raises(DerainError, match="missing 1: Encoder.0.layers.1.FDSM.conv_mid.0.weight"):
        load_weights(build("dmsr", **SMALL), state)


def test_window_protocol_stitches_like_the_official_test():
    """Grid windows from the top-left; edge-flush windows fill only the strips the grid leaves."""
    def tagged(batch: torch.Tensor) -> list[torch.Tensor]:  # each window's output: its own mean everywhere
        return [batch.mean(dim=(1, 2, 3), keepdim=True).expand_as(batch).clone()]

    x = torch.rand(1, 3, 200, 300)
    y = window_forward(tagged, x, 128)
    assert y.shape == x.shape
    assert torch.allclose(y[..., :128, :128], x[..., :128, :128].mean())       # grid window (0, 0)
    assert torch.allclose(y[..., :128, 128:256], x[..., :128, 128:256].mean())  # grid window (0, 128)
    assert torch.allclose(y[..., :128, 256:], x[..., :128, -128:].mean())       # right strip: flush right
    assert torch.allclose(y[..., 128:, :128], x[..., -128:, :128].mean())       # bottom strip: flush bottom
    assert torch.allclose(y[..., 128:, 256:], x[..., -128:, -128:].mean())      # corner
    exact = torch.rand(1, 3, 128, 256)  # multiples of the window: the plain grid, nothing else
    assert torch.allclose(window_forward(tagged, exact, 128)[..., :, 128:], exact[..., :, 128:].mean())
    small = torch.rand(1, 3, 100, 140)  # below the window: padded up to it and cropped back
    assert window_forward(tagged, small, 128).shape == small.shape


def test_window_option_and_registry_variant():
    torch.manual_seed(0)
    model = build("dmsr", **SMALL, test_window=128).eval()
    x = torch.rand(1, 3, 128, 140)
    with torch.no_grad():
        out = model(x)
        assert len(out) == 1 and out[0].shape == x.shape
        assert torch.allclose(out[0], window_forward(model.forward_scales, x, 128, batch=1), atol=1e-6)
    assert len(model.train()(torch.rand(1, 3, 64, 64))) == 3  # training always sees whole patches
    spec = get_spec("dmsr-win128")
    assert spec.size_multiple == 1 and spec.default_config["test_window"] == 128


def test_recipe_loss_is_the_official_sum(shared):
    """Sum over scales of L1 + 0.1 x L1(fft2 real/imag), targets bilinearly downscaled, as in train.py."""
    config = load_config(CONFIG, [f"data.train={shared('data/rain100l-train')}"])
    assert (config.data.patch, config.data.batch, config.optim.name, config.optim.lr) == (64, 12, "adam", 2e-4)
    assert config.schedule.name == "cosine" and config.schedule.min_lr == 1e-6
    loss = build_loss(config.loss)
    torch.manual_seed(0)
    target = torch.rand(2, 3, 64, 64)
    outputs = [torch.rand(2, 3, 64 // s, 64 // s) for s in (1, 2, 4)]
    labels = [target, F.interpolate(target, scale_factor=0.5, mode="bilinear"),
              F.interpolate(target, scale_factor=0.25, mode="bilinear")]

    def spectrum(t: torch.Tensor) -> torch.Tensor:
        f = torch.fft.fft2(t, dim=(-2, -1))
        return torch.stack((f.real, f.imag), -1)

    content = sum(F.l1_loss(o, t) for o, t in zip(outputs, labels))
    fft = sum(F.l1_loss(spectrum(o), spectrum(t)) for o, t in zip(outputs, labels))
    total, parts = loss(outputs, target)
    assert float(total) == pytest.approx(float(content + 0.1 * fft), rel=1e-5)
    assert set(parts) == {"l1", "fft"}


def test_trains_through_the_cli_and_runs_from_its_checkpoint(shared, tmp_path, capsys):
    tiny = ["model.options.num_res=1", "model.options.base_channel=8", f"data.train={shared('data/rain100l-train')}",
            "data.train_max_images=2", "data.patch=64", "data.batch=2", "data.val=null", "total_steps=2",
            "schedule.warmup_steps=1", "log_every=1", f"out_dir={tmp_path / 'runs'}", "threads=2"]
    code = main(["train", str(CONFIG), *[a for t in tiny for a in ("--set", t)]])
    assert code == 0
    run = tmp_path / "runs" / "dmsr_rain100l"
    log = (run / "train.log").read_text()
    assert "step 2/2" in log and " l1 " in log and " fft " in log  # both multi-output terms logged
    rainy = shared("data/rain100l/rainy/rain-001.png")
    code = main(["run", str(rainy), "-o", str(tmp_path / "out"), "--weights", str(run / "last.safetensors"), "-q"])
    assert code == 0
    src, dst = Image.open(rainy), Image.open(tmp_path / "out" / "rain-001.png")
    assert src.size == dst.size == (481, 321)
    assert not np.array_equal(np.asarray(src), np.asarray(dst))
    capsys.readouterr()
