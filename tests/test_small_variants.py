"""Small variants for the equal-cost CPU comparison: the pixel-unshuffle wrapper, the registry models,
their training configs through the real engine, and checkpoint round trips."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from derain.weights.load import load_model
from derain.files.checkpoints import save_checkpoint
from derain.inference.restore import InferenceOptions, restore
from derain.models import build, get_spec
from derain.models.unshuffled import Unshuffled

SMALL = ["restormer-small", "dmsr-small", "mspfn-small"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class KeepPhase(nn.Module):
    """Zeroes every unshuffled channel except those of sub-pixel phase (0, 0) (for an exactness check)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        phase = torch.arange(z.shape[1]) % (self.factor ** 2)  # channel c * f^2 + i * f + j holds pixel (i, j)
        return z * (phase == 0).view(1, -1, 1, 1)


@pytest.mark.parametrize("factor", [2, 4])
def test_unshuffled_is_an_exact_rearrangement(factor):
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(Unshuffled(nn.Identity(), factor)(x), x)
    # Keeping phase (0, 0) of the unshuffled channels keeps exactly the pixels at (f*i, f*j).
    mask = torch.zeros(16, 24)
    mask[::factor, ::factor] = 1
    assert torch.equal(Unshuffled(KeepPhase(factor), factor)(x), x * mask)


def test_unshuffled_shuffles_every_output_back_to_its_own_size():
    class Pyramid(nn.Module):
        def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
            return [z, F.avg_pool2d(z, 2)]

    x = torch.rand(1, 3, 32, 32)
    y = Unshuffled(Pyramid(), 2, inner_multiple=2)(x)
    assert [t.shape[-1] for t in y] == [32, 16] and torch.equal(y[0], x)
    assert Unshuffled(Pyramid(), 2, inner_multiple=2).size_multiple == 4


def test_dmsr_small_keeps_its_three_outputs():
    torch.manual_seed(0)
    model = build("dmsr-small")
    assert model.size_multiple == get_spec("dmsr-small").size_multiple
    outs = model(torch.rand(2, 3, 96, 64))
    assert [tuple(t.shape) for t in outs] == [(2, 3, 96, 64), (2, 3, 48, 32), (2, 3, 24, 16)]


@pytest.mark.parametrize("name", SMALL)
def test_small_model_restores_odd_sizes_and_round_trips_a_checkpoint(name, tmp_path):
    torch.manual_seed(0)
    model = build(name).eval()
    assert model.size_multiple == get_spec(name).size_multiple  # the registry pads to what the model needs
    image = torch.rand(1, 3, 67, 83)  # not a multiple of anything: restore pads and crops back
    options = InferenceOptions(precision="fp32")
    y = restore(model, image, get_spec(name).size_multiple, options)
    assert y.shape == image.shape and torch.isfinite(y).all()

    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, name, get_spec(name).default_config)
    loaded, loaded_name = load_model(None, path)  # self-describing: no model name needed
    assert loaded_name == name
    assert torch.equal(restore(loaded, image, get_spec(name).size_multiple, options), y)


@pytest.mark.parametrize("name", SMALL + ["fastderain"])
def test_equal_cost_config_trains_two_steps(name, tmp_path, shared):
    from derain.cli import main

    config = CONFIGS / f"equal_cost_{name.replace('-', '_')}.yaml"
    tiny = [f"out_dir={tmp_path}", "data.patch=64", "data.batch=2", "data.train_max_images=2", "data.val=null",
            "total_steps=2", "schedule.warmup_steps=1", "log_every=1",
            f"data.train={shared('data/rain100l-train')}"]
    assert main(["train", str(config), *[a for kv in tiny for a in ("--set", kv)]]) == 0
    weights = next(tmp_path.glob("*/last.safetensors"))
    model, loaded_name = load_model(None, weights)
    assert loaded_name == name
    assert all(torch.isfinite(p).all() for p in model.parameters())
