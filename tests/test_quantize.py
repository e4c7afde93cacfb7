"""int8 inference: onnxruntime static quantisation of an exported model, and derain run choosing it per CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="int8 tests need the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="int8 tests need the onnx extra: pip install -e '.[onnx]'")

import onnx  # noqa: E402

from derain.inference import hardware  # noqa: E402
from derain.files.checkpoints import save_checkpoint  # noqa: E402
from derain.cli import main  # noqa: E402
from derain.inference.onnx import OnnxModel, export_onnx  # noqa: E402
from derain.files.imageio import read_uint8_rgb  # noqa: E402
from derain.models import build  # noqa: E402
from derain.inference.quantize import (META_PRECISION, boundary_convs, find_int8, int8_path_for, quantize_checkpoint,
                                       quantize_onnx, random_crops)

CONFIG = dict(widths=[8, 16, 16, 16], enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1], unshuffle=1)
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2\n"
BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512_vnni avx512_bf16\n"


def tiny_network() -> torch.nn.Module:
    """A small FastDerain whose blocks and head do something (a fresh one is the identity)."""
    torch.manual_seed(0)
    net = build("fastderain", **CONFIG).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("scale"):
                p.fill_(0.5)
        net.head.weight.normal_(0, 0.02)
    return net


@pytest.fixture(scope="module")
def training_images():
    from conftest import shared_path

    folder = shared_path("data/rain100l-train/rainy")
    return [read_uint8_rgb(p).astype(np.float32) / 255 for p in sorted(folder.glob("*.webp"))[:4]]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_int8_model_keeps_the_image_layers_in_float_and_stays_close(tmp_path, training_images, one_thread):
    net = tiny_network()
    float_path = tmp_path / "tiny.onnx"
    export_onnx(net, "fastderain", float_path, net.size_multiple)
    graph = onnx.load(str(float_path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    kept = boundary_convs(graph)
    # The stem reads the image, the head writes the rain layer: exactly those two, found from the graph.
    assert kept == [convs[0].name, convs[-1].name] and convs[0].input[0] == graph.input[0].name

    patches = random_crops(training_images, 4, 64)
    assert all(p.shape == (3, 64, 64) and p.dtype == np.float32 for p in patches)
    report = quantize_onnx(float_path, tmp_path / "tiny.int8.onnx", patches, float_tail=0)
    assert report.float_convs == kept and report.int8_convs == len(convs) - 2
    # The default also keeps the two convolutions before the last one (the last decoder block) in float.
    default = quantize_onnx(float_path, tmp_path / "default.int8.onnx", patches)
    assert sorted(default.float_convs) == sorted([convs[0].name] + [n.name for n in convs[-3:]])
    quantized = onnx.load(str(report.path))
    assert any(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    int8_weights = [t for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= report.int8_convs
    model = OnnxModel(report.path)  # runs like any export: name and size multiple kept
    assert (model.name, model.size_multiple) == ("fastderain", net.size_multiple)
    assert model.session.get_modelmeta().custom_metadata_map[META_PRECISION] == "int8"

    image = training_images[-1][:96, :128].transpose(2, 0, 1)[None].copy()  # a real rainy crop
    ours, reference = model.run(image), OnnxModel(float_path).run(image)
    difference = np.abs(ours - reference)
    assert 0 < difference.mean() < 0.01  # quantised (not the float graph), and close to it
    assert np.abs(ours - image).mean() > 10 * difference.mean()  # the network's change is far larger than int8's


def test_run_picks_int8_where_the_cpu_rule_says(tmp_path, training_images, cache, monkeypatch, capsys, shared,
                                                one_thread):
    weights = tmp_path / "tiny.safetensors"
    save_checkpoint(weights, tiny_network(), "fastderain", CONFIG)
    rainy = str(shared("data/rain100l/rainy/rain-001.png"))

    monkeypatch.setattr(hardware, "_cpu_flags", lambda: AVX2)
    # No int8 version yet: auto runs the float model, and asking for int8 says how to make it.
    assert find_int8(weights) is None
    assert main(["run", rainy, "-o", str(tmp_path / "float"), "--weights", str(weights), "--device", "cpu"]) == 0
    assert "int8" not in capsys.readouterr().err
    assert main(["run", rainy, "-o", str(tmp_path / "x"), "--weights", str(weights), "--precision", "int8"]) != 0
    assert "scripts/quantize_default.py" in capsys.readouterr().err

    report = quantize_checkpoint(None, str(weights), random_crops(training_images, 4, 64))
    assert report.path == int8_path_for(weights) == find_int8(weights) and report.path.parent.parent == cache

    # An AVX2-only CPU: auto picks the int8 version and says so once; --precision fp32 and --no-fast do not.
    for label, args, int8 in (("auto", [], True), ("fp32", ["--precision", "fp32"], False),
                              ("reference", ["--no-fast"], False)):
        out = tmp_path / f"avx2-{label}"
        assert main(["run", rainy, "-o", str(out), "--weights", str(weights), "--device", "cpu", *args]) == 0
        err = capsys.readouterr().err
        assert ("int8 inference (onnxruntime)" in err) is int8, (args, err)
    int8_out = read_uint8_rgb(tmp_path / "avx2-auto" / "rain-001.png").astype(int)
    float_out = read_uint8_rgb(tmp_path / "float" / "rain-001.png").astype(int)
    assert int8_out.shape == float_out.shape and 0 < np.abs(int8_out - float_out).mean() < 2

    # A CPU with native bf16 keeps the PyTorch path; --precision int8 forces the int8 version there.
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: BF16)
    assert main(["run", rainy, "-o", str(tmp_path / "bf16"), "--weights", str(weights), "--device", "cpu"]) == 0
    assert "int8" not in capsys.readouterr().err
    for source in (str(weights), str(report.path)):  # the checkpoint's cached version, or the file itself
        out = tmp_path / f"forced-{len(source)}"
        assert main(["run", rainy, "-o", str(out), "--weights", source, "--precision", "int8"]) == 0
        assert "int8 inference" in capsys.readouterr().err
        assert np.array_equal(read_uint8_rgb(out / "rain-001.png").astype(int), int8_out)

    # A replaced checkpoint never finds the old int8 file (named by the checkpoint's fingerprint).
    save_checkpoint(weights, build("fastderain", **CONFIG), "fastderain", CONFIG)
    assert find_int8(weights) is None
