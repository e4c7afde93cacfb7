"""FastDerain, the default model: folding, loading both forms, sizes, and a real image through restore()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from derain.inference.restore import InferenceOptions, restore
from derain.models import build, count_parameters, get_spec
from derain.models.fastderain import FastDerain, RepConv3x3

SMALL = dict(widths=[8, 16, 16, 24], enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1], rep=True)


def randomised(model: FastDerain, seed: int = 0) -> FastDerain:
    """Give every parameter (identity scales and the zero-initialised head included) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("rep", [True, False])
def test_fold_matches_unfolded_output(rep):
    model = randomised(FastDerain(**dict(SMALL, rep=rep)))
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        folded = model.fold()
        assert not any(isinstance(m, RepConv3x3) for m in folded.modules())
        assert not any(name.endswith("scale") for name, _ in folded.named_parameters())  # scales moved into conv2
        after = folded(x)
    assert float((before - after).abs().max()) < 1e-5


@pytest.mark.parametrize("rep", [True, False])
def test_folded_state_dict_loads_into_training_form(rep):
    model = randomised(FastDerain(**dict(SMALL, rep=rep)), seed=3)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    folded_state = model.fold().state_dict()
    fresh = FastDerain(**dict(SMALL, rep=rep)).eval()
    fresh.load_state_dict(folded_state)
    with torch.no_grad():
        assert float((fresh(x) - reference).abs().max()) < 1e-5


def test_untrained_model_is_identity():
    """The head starts at zero, so an untrained model returns its input (residual rain prediction)."""
    model = FastDerain(**SMALL).eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)


def test_registered_default_fits_the_weight_budget():
    spec = get_spec("fastderain")
    model = build("fastderain")
    assert spec.size_multiple == model.size_multiple == 16
    # Shipped as float16: 2 bytes a value must stay under the 10 MB package budget.
    assert count_parameters(model) * 2 < 10e6


def test_real_image_through_restore(shared):
    path = shared("data/rain100l/rainy/rain-001.png")
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    model = randomised(FastDerain(**SMALL))
    y = restore(model, x, model.size_multiple, InferenceOptions(tile=0))
    assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    bf16 = restore(model, x, model.size_multiple, InferenceOptions(tile=0, precision="bf16"))
    assert float((bf16 - y).abs().mean()) < 0.02


def test_wrong_size_fails_inside_the_network():
    with pytest.raises(RuntimeError):
        FastDerain(**SMALL)(torch.rand(1, 3, 24, 24))


def test_growing_a_full_resolution_level_keeps_the_function_then_trains_it():
    """A trained network grown by the full-resolution level computes the same output until the level learns."""
    trained = randomised(FastDerain(**SMALL), seed=5)
    grown = FastDerain(**SMALL, full_width=8)
    state, added = grown.grown_state_dict(trained.state_dict())
    assert added == ["full_decoder", "full_down", "full_encoder", "full_head", "full_stem", "full_up"]
    grown.load_state_dict(state)
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), trained(x))
    # The level's head gets a gradient at once (its input is not zero), so training moves it.
    grown.train()
    (grown(x) - x).abs().mean().backward()
    assert float(grown.full_head.weight.grad.abs().sum()) > 0
    # The folded (deployed) grown network still matches its training form.
    grown = randomised(grown, seed=6)
    with torch.no_grad():
        before = grown(x)
        assert float((grown.fold()(x) - before).abs().max()) < 1e-5


def test_growing_needs_the_same_trunk():
    other = FastDerain(widths=[8, 16, 16, 32], enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1])
    grown = FastDerain(**SMALL, full_width=8)
    state, _ = grown.grown_state_dict(other.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        grown.load_state_dict(state)


def test_low_precision_residuals_keep_the_stream_in_bf16_and_the_function():
    """The option changes only the dtype of the residual stream under autocast: in float32 both forms compute
    the same, under bf16 autocast each block's output stays bf16 (without it the float32 scale promotes it)."""
    base = randomised(FastDerain(**SMALL), seed=5)
    fast = FastDerain(**SMALL, low_precision_residuals=True).eval()
    fast.load_state_dict(base.state_dict())
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(base(x), fast(x))
        dtypes = {}
        for name, model in (("base", base), ("fast", fast)):
            hook = model.encoders[0][0].register_forward_hook(lambda m, i, o, n=name: dtypes.__setitem__(n, o.dtype))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            hook.remove()
            assert out.dtype == torch.float32  # the image-level residual stays in the input's precision
    assert dtypes == {"base": torch.float32, "fast": torch.bfloat16}


def test_a_coarser_student_starts_as_its_teacher_run_at_half_size():
    # derain.models.fastderain.coarser_start_state_dict: the CPU student's exact start (scripts/make_student_start.py).
    import torch.nn.functional as F

    from derain.models.fastderain import FastDerain, coarser_start_state_dict

    torch.manual_seed(0)
    levels = dict(in_channels=3, widths=[8, 16, 32], enc_blocks=[1, 1, 2], dec_blocks=[1, 1])
    teacher = FastDerain(unshuffle=1, **levels).eval()
    with torch.no_grad():  # a head that is not zero, so the teacher removes something
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student = FastDerain(unshuffle=2, **levels).eval()
    student.load_state_dict(coarser_start_state_dict(teacher.state_dict(), student))
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        small = F.avg_pool2d(x, 2)
        expected = x - F.interpolate(small - teacher(small), scale_factor=2, mode="nearest")
        assert (expected - x).abs().max() > 1e-3
        assert torch.allclose(student(x), expected, atol=1e-5)
