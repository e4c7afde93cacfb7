"""FSDRNet (our reconstruction; issue 15): size, shapes, one-way frequency guidance, routing, gradients and
checkpoints. Most checks use a tiny configuration of the same code (dim 8, one block per level) to stay fast.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from derain.weights.load import load_model
from derain.files.checkpoints import save_checkpoint
from derain.inference.restore import InferenceOptions, restore
from derain.models import build, count_parameters, get_spec
from derain.models.fsdrnet import TASKS, FSDRNet
from derain.models.fsdrnet.efma import GuidedStage
from derain.models.fsdrnet.frequency import ring_energies
from derain.models.fsdrnet.selector import routing_weights

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, selector_hidden=16, head_hidden=8)
REFERENCE = InferenceOptions(tile=0, fast=False)


def tiny(**overrides) -> FSDRNet:
    torch.manual_seed(0)
    return FSDRNet(**{**TINY, **overrides})


def test_tasks_and_registry_entries():
    assert TASKS == ("rain", "haze", "noise", "blur", "lowlight")
    for name in ("fsdrnet", "fsdrnet-small"):
        assert get_spec(name).description.startswith("FSDRNet (our reconstruction; no public code): ")


def test_parameter_counts():
    torch.manual_seed(0)
    model = build("fsdrnet")
    n = count_parameters(model)
    assert n == 15_709_920  # the published FSDRNet has 15.68M
    assert 15_000_000 <= n <= 16_000_000
    assert count_parameters(build("fsdrnet-small")) == 3_663_092


@pytest.mark.parametrize("name, size", [("fsdrnet", (37, 45)), ("fsdrnet-small", (67, 83))])
def test_restore_odd_sizes(name, size):
    torch.manual_seed(0)
    model = build(name).eval()
    spec = get_spec(name)
    assert model.size_multiple == spec.size_multiple
    assert isinstance(model.bytes_per_pixel, int) and model.bytes_per_pixel > 0
    image = torch.rand(1, 3, *size)
    y = restore(model, image, spec.size_multiple, REFERENCE)
    assert y.shape == image.shape and torch.isfinite(y).all()


def test_untrained_output_is_finite_and_close_to_the_input():
    torch.manual_seed(0)
    model = build("fsdrnet").eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # Every head starts near the identity: the untrained network returns roughly its input.
    assert (y - x).abs().mean() < 0.05
    assert y.min() > -0.5 and y.max() < 1.5


def _fam_outputs(model: FSDRNet, x: torch.Tensor) -> list[list[torch.Tensor]]:
    """Every tensor each FAM returned during one forward (guidance maps, gammas, betas, band energies)."""
    captured: list[list[torch.Tensor]] = []

    def keep(_module, _inputs, out) -> None:
        captured.append([t for guide in out.guides for t in guide] + [out.bands])

    hooks = [fam.register_forward_hook(keep) for fam in model.fam]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return captured


def test_frequency_guidance_is_one_way():
    model = tiny()
    x = torch.rand(2, 3, 32, 32)
    outputs = _fam_outputs(model, x)
    encoders = [model.encoder_level1, model.encoder_level2, model.encoder_level3, model.latent]
    after = [model.decoder_level3, model.decoder_level2, model.decoder_level1, model.refinement,
             model.selector, model.restoration]
    for level, tensors in enumerate(outputs):
        # A FAM reads the input of its level: the blocks of its own level, the deeper levels, the decoder,
        # the selector and the heads cannot influence it.
        downstream = [p for m in encoders[level:] + after for p in m.parameters()]
        total = sum(t.float().sum() for t in tensors)
        grads = torch.autograd.grad(total, downstream, allow_unused=True, retain_graph=True)
        assert all(g is None for g in grads), f"FAM {level + 1} depends on spatial blocks downstream of it"
        if level > 0:  # control: the next level's input does carry the previous level's blocks
            upstream = list(encoders[level - 1].parameters())
            assert all(g is not None for g in torch.autograd.grad(total, upstream, allow_unused=True))

    # The level-1 FAM is untouched when every spatial block changes; the restored image is not.
    with torch.no_grad():
        before = [t.clone() for t in _fam_outputs(model, x)[0]]
        y_before = model(x)
        for module in model.modules():
            if isinstance(module, GuidedStage):
                for p in module.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        after_change = _fam_outputs(model, x)[0]
        assert all(torch.equal(a, b) for a, b in zip(before, after_change))
        assert not torch.allclose(model(x), y_before)


def test_selector_crops_route_large_images_by_the_mean_of_crop_probabilities():
    model = tiny(selector_crop=32).eval()
    small, large = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        # At or below the crop size nothing changes: the whole image is the crop.
        assert torch.equal(model.forward_with_logits(small).logits,
                           model._select(model._encode(small)))
        out = model.forward_with_logits(large)
        # 2 x 3 crops of 32x32 spread over 64x96: rows 0 and 32, columns 0, 32 and 64.
        crops = [large[..., t:t + 32, s:s + 32] for t in (0, 32) for s in (0, 32, 64)]
        log_p = torch.stack([model._select(model._encode(c)).log_softmax(-1) for c in crops]).mean(0)
        assert torch.allclose(out.logits, log_p, atol=1e-5)
        assert torch.allclose(out.weights, log_p.softmax(-1), atol=1e-5)
        # A forced task ignores the selector, crops or not.
        forced = model.forward_with_logits(large, task="haze").weights
        assert torch.equal(forced, torch.tensor([[0.0, 1, 0, 0, 0]] * 2))
    with pytest.raises(ValueError, match="selector_crop"):
        tiny(selector_crop=20)


def test_ablation_without_frequency_modules_trains_unguided_blocks():
    full, ablated = tiny(), tiny(frequency=False)
    assert ablated.fam is None
    fam_params = sum(p.numel() for p in full.fam.parameters())
    band_inputs = 4 * TINY.get("bands", 8) * (TINY.get("selector_hidden", 128))  # selector rows they fed
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in ablated.parameters()) == \
        fam_params + band_inputs + 2 * 4 * TINY.get("bands", 8)  # + the LayerNorm's weight and bias on them
    x = torch.rand(2, 3, 32, 32)
    out = ablated.forward_with_logits(x)
    assert out.image.shape == x.shape and out.logits.shape == (2, len(TASKS))
    F.l1_loss(out.image, x * 0.9).add(F.cross_entropy(out.logits, torch.tensor([1, 3]))).backward()
    missing = [n for n, p in ablated.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_forced_tasks_route_one_hot_and_auto_uses_the_softmax():
    model = tiny().eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        auto = model.forward_with_logits(x)
        assert auto.logits.shape == (2, len(TASKS)) and auto.image.shape == x.shape
        assert torch.allclose(auto.weights, auto.logits.softmax(-1))
        assert model.has_selector and torch.equal(model(x, details=True).logits, auto.logits)
        assert torch.equal(model(x), auto.image)
        assert model.last_choice == [TASKS[i] for i in auto.logits.argmax(-1).tolist()]
        images = {}
        for k, task in enumerate(TASKS):
            out = model.forward_with_logits(x, task=task)
            assert torch.equal(out.weights, F.one_hot(torch.tensor([k, k]), len(TASKS)).float())
            assert model.last_choice == [task, task]
            assert torch.equal(out.logits, auto.logits)  # the selector still runs (for its loss)
            images[task] = out.image
        assert all(not torch.allclose(images["rain"], images[t]) for t in TASKS[1:])

        # The ``task`` attribute forces routing for plain forward() calls; "auto" overrides it per call.
        model.task = "haze"
        assert torch.equal(model(x), images["haze"])
        assert torch.allclose(model.forward_with_logits(x, task="auto").weights, auto.weights)
    with pytest.raises(ValueError):
        model.forward_with_logits(x, task="snow")
    with pytest.raises(ValueError):
        routing_weights(auto.logits, routing="top3")


def test_top1_routing_uses_only_the_most_likely_head():
    model = tiny(routing="top1").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_with_logits(x)
        choice = out.logits.argmax(-1)
        assert torch.equal(out.weights, F.one_hot(choice, len(TASKS)).float())
        for i, k in enumerate(choice.tolist()):
            forced = model.forward_with_logits(x, task=TASKS[k]).image
            assert torch.allclose(out.image[i], forced[i], atol=1e-6)
        soft = model.forward_with_logits(x, routing="soft")
        assert torch.allclose(soft.weights, soft.logits.softmax(-1))


@pytest.mark.parametrize("name", ["fsdrnet", "fsdrnet-small"])
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build(name).train()
    x = torch.rand(2, 3, 64, 64)
    out = model.forward_with_logits(x)
    assert out.logits.shape == (2, len(TASKS))
    # The training objective's shape: L1 + 0.01 cross-entropy of the selector.
    loss = F.l1_loss(out.image, x * 0.9) + 0.01 * F.cross_entropy(out.logits, torch.tensor([0, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_ring_energies_locate_a_checkerboard_in_the_outer_ring():
    # A zero-mean checkerboard is pure Nyquist (both directions): only the outermost ring; a flat image is
    # pure DC: only the innermost.
    board = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float() - 0.5
    flat = torch.full((32, 32), 0.5)
    spec = torch.log1p(torch.fft.rfft2(torch.stack([board, flat])[:, None], norm="ortho").abs())
    bands = ring_energies(spec, 32, 8)
    assert bands.shape == (2, 8)
    assert bands[0, 7] > 0 and bands[0, :7].abs().max() < 1e-5
    assert bands[1, 0] > 0 and bands[1, 1:].abs().max() < 1e-5


@pytest.mark.parametrize("name, config", [("fsdrnet", dict(TINY, task="noise")), ("fsdrnet-small", None)])
def test_checkpoint_round_trip(name, config, tmp_path):
    torch.manual_seed(0)
    config = config or get_spec(name).default_config
    model = build(name, **config).eval()
    image = torch.rand(1, 3, 45, 61)
    multiple = get_spec(name).size_multiple
    y = restore(model, image, multiple, REFERENCE)

    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, name, config)
    loaded, loaded_name = load_model(None, path)
    assert loaded_name == name and loaded.task == model.task
    assert torch.equal(restore(loaded, image, multiple, REFERENCE), y)
