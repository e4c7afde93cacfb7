"""ONNX export (derain export --onnx) and the onnxruntime backend of derain run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="ONNX tests need the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="ONNX tests need the onnx extra: pip install -e '.[onnx]'")

from derain.cli import main  # noqa: E402
from derain.commands.export import export_checkpoint  # noqa: E402
from derain.errors import DerainError  # noqa: E402
from derain.files.imageio import read_uint8_rgb  # noqa: E402
from derain.inference.onnx import OnnxModel, export_onnx  # noqa: E402
from derain.inference.restore import InferenceOptions, restore  # noqa: E402
from derain.models import build  # noqa: E402
from derain.weights import (
    DEFAULT,
    default_checkpoint,  # noqa: E402
)
from derain.weights.load import load_model  # noqa: E402


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory):
    if default_checkpoint() is None:
        pytest.skip("no bundled default model")
    path = tmp_path_factory.mktemp("onnx") / "fastderain.onnx"
    report = export_checkpoint(None, None, path)
    return path, report


def test_export_is_checked_and_self_describing(bundled_onnx):
    path, report = bundled_onnx
    assert report.max_abs_error < 1e-4
    h, w = report.check_shape
    assert (h, w) != (64, 96) and h != w  # checked on a size other than the traced one
    model = OnnxModel(path)
    net, _ = load_model(None, str(default_checkpoint()))
    assert (model.name, model.size_multiple) == (DEFAULT, net.size_multiple)  # what the network declares


def test_onnxruntime_restores_a_rain100l_image_like_pytorch(bundled_onnx, shared):
    path, _ = bundled_onnx
    image = read_uint8_rgb(shared("data/rain100l/rainy/rain-001.png"))  # 321x481: padded and cropped back
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    net, _ = load_model(None, str(default_checkpoint()))
    cpu = torch.device("cpu")
    ours = restore(OnnxModel(path), x, 16, InferenceOptions(), cpu)
    reference = restore(net, x, 16, InferenceOptions(precision="fp32"), cpu)  # onnxruntime computes in float32
    assert ours.shape == x.shape
    assert (ours - reference).abs().max().item() < 1e-4
    assert (ours - x).abs().mean().item() > 1e-3  # it did remove something


def test_tiled_onnxruntime_matches_tiled_pytorch(bundled_onnx, shared):
    path, _ = bundled_onnx
    image = read_uint8_rgb(shared("data/rain100l/rainy/rain-002.png"))
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    net, _ = load_model(None, str(default_checkpoint()))
    options = InferenceOptions(tile=256, tile_overlap=64, tile_threshold=0, precision="fp32")
    cpu = torch.device("cpu")
    tiled = restore(OnnxModel(path), x, 16, options, cpu)  # several tiles of different shapes
    assert (tiled - restore(net, x, 16, options, cpu)).abs().max().item() < 1e-4


def test_multi_output_and_unshuffle_free_models_export(tmp_path):
    # DMSR returns three scales: only the full-resolution image is exported. A small config keeps it quick.
    dmsr = build("dmsr", num_res=1)
    report = export_onnx(dmsr, "dmsr", tmp_path / "dmsr.onnx", 16)
    assert report.max_abs_error < 1e-4
    out = OnnxModel(tmp_path / "dmsr.onnx").run(np.random.rand(1, 3, 64, 80).astype(np.float32))
    assert out.shape == (1, 3, 64, 80)


def test_cli_export_then_run_with_onnxruntime(bundled_onnx, shared, tmp_path, capsys):
    path, _ = bundled_onnx
    rainy = shared("data/rain100l/rainy/rain-003.png")
    assert main(["run", str(rainy), "-o", str(tmp_path / "ort"), "--backend", "onnxruntime",
                 "--weights", str(path), "--quiet"]) == 0
    # The exported graph computes in float32: compare with the float32 reference path, not the bf16 fast path.
    assert main(["run", str(rainy), "-o", str(tmp_path / "pt"), "--quiet", "--no-fast"]) == 0
    a = read_uint8_rgb(tmp_path / "ort" / rainy.name).astype(int)
    b = read_uint8_rgb(tmp_path / "pt" / rainy.name).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # the same image up to rounding


def test_bad_inputs_get_one_clear_line(bundled_onnx, shared, tmp_path, capsys):
    path, _ = bundled_onnx
    rainy = str(shared("data/rain100l/rainy/rain-001.png"))
    # The file exists: not replaced without --overwrite.
    assert main(["export", "--onnx", str(path)]) != 0
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    # onnxruntime needs an exported file, not a PyTorch checkpoint.
    assert main(["run", rainy, "-o", str(tmp_path / "o"), "--backend", "onnxruntime",
                 "--weights", str(default_checkpoint())]) != 0
    assert "derain export --onnx" in capsys.readouterr().err
    # An ONNX file that derain did not write, and one that is not ONNX at all.
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DerainError, match="not a model onnxruntime can load"):
        OnnxModel(junk)
    with pytest.raises(DerainError, match="must end in .onnx"):
        export_checkpoint(None, None, tmp_path / "model.pt")


def test_a_wrong_export_is_refused_and_removed(tmp_path, monkeypatch):
    # Simulate an exporter bug (channels reordered) by making the PyTorch side disagree with the file.
    model = build("fastderain", widths=[8, 16, 16, 16], enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1]).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.1)  # a non-trivial output (the untrained head is zero)
    real_run = OnnxModel.run
    monkeypatch.setattr(OnnxModel, "run", lambda self, x: real_run(self, x)[:, [2, 1, 0]])
    target = tmp_path / "wrong.onnx"
    with pytest.raises(DerainError, match="does not match PyTorch"):
        export_onnx(model, "fastderain", target, 16)
    assert not target.exists()
