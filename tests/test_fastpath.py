"""The fast inference path computes the same function as the reference path, and is chosen from the hardware."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import derain.inference.precision as precision
from derain.weights.load import load_model
from derain.inference.fastpath import FastPath, choose_fast_path, prepare_model
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions, restore
from derain.models import build
from derain.weights import default_checkpoint

CPU = torch.device("cpu")


def photo(shared, name: str = "data/rain100l/rainy/rain-001.png", size: int = 96) -> torch.Tensor:
    pixels = read_uint8_rgb(shared(name))[:size, :size]
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 255


def perturbed_restormer(norm: str) -> torch.nn.Module:
    """A small Restormer whose norms have non-trivial scale and shift, so folding them is really tested."""
    torch.manual_seed(0)
    model = build("restormer", dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                  LayerNorm_type=norm).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("norm", ["WithBias", "BiasFree"])
def test_folded_channels_last_restormer_matches_the_official_formulation(shared, norm):
    model = perturbed_restormer(norm)
    x = photo(shared)
    with torch.no_grad():
        reference = model(x)
        path = choose_fast_path(model, CPU, precision="fp32")
        assert path == FastPath(fold=True, channels_last=True)
        fast = prepare_model(model, path)(x)
    assert relative_error(fast, reference) < 1e-5
    # The folded copy has no affine norms left; the original model is untouched and still trainable.
    assert not any("norm1.body" in k for k in prepare_model(model, path).state_dict())
    assert "encoder_level1.0.norm1.body.weight" in model.state_dict()
    assert all(p.requires_grad for p in model.parameters())


def test_bf16_paths_stay_close_and_return_float32(shared):
    x = photo(shared)
    model = perturbed_restormer("WithBias")
    bf16 = FastPath(fold=True, channels_last=True, autocast=torch.bfloat16)
    with torch.no_grad():
        y = prepare_model(model, bf16)(x)
        assert y.dtype == torch.float32
        assert relative_error(y, model(x)) < 2e-2
    # FastDerain keeps its weights in bf16 and its image-level residual in float32.
    default, _ = load_model(None, str(default_checkpoint()))
    path = FastPath(fold=True, channels_last=True, weights_dtype=torch.bfloat16)
    prepared = prepare_model(default, path)
    assert next(prepared.net.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        y, reference = prepared(x), default(x)
    assert y.dtype == torch.float32
    assert float((y - reference).abs().max()) < 2e-2
    assert next(default.parameters()).dtype == torch.float32


def test_automatic_precision_follows_the_processor(monkeypatch):
    model = build("fastderain")
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.compute_dtype("auto", CPU, fast=True) == torch.bfloat16
    assert choose_fast_path(model, CPU).weights_dtype == torch.bfloat16
    assert choose_fast_path(build("restormer", dim=8), CPU).autocast == torch.bfloat16
    assert precision.compute_dtype("auto", CPU, fast=False) is None  # the reference path stays float32
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)  # emulated bf16 would be many times slower
    assert choose_fast_path(model, CPU) == FastPath(fold=True, channels_last=True)
    assert choose_fast_path(model, CPU, precision="bf16").weights_dtype == torch.bfloat16  # asked for explicitly
    assert choose_fast_path(model, CPU, fast=False) == FastPath()


def test_restore_reference_and_fast_paths_agree_on_a_rain100l_image(shared):
    model, _ = load_model(None, str(default_checkpoint()))
    x = photo(shared, size=160)
    reference = restore(model, x, 16, InferenceOptions(tile=0, fast=False))
    fast32 = restore(model, x, 16, InferenceOptions(tile=0, precision="fp32"))
    assert float((fast32 - reference).abs().max()) < 1e-5
    fast = restore(model, x, 16, InferenceOptions(tile=0))
    assert float((fast - reference).abs().max()) < 2e-2
    # The default model removes rain on either path: both outputs differ from the input the same way.
    assert abs(float((fast - x).abs().mean()) - float((reference - x).abs().mean())) < 1e-3
