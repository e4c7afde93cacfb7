"""FSDerain fine-tuning: frequency masks, contrastive losses, gradients, and short runs on real data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.cli import main
from derain.errors import DerainError
from derain.files.checkpoints import read_checkpoint, save_checkpoint
from derain.fsderain.config import LossConfig, load_finetune_config
from derain.fsderain.contrastive import clean_class_nce, contrastive_loss, info_nce, triplet
from derain.fsderain.encoder import FrequencyEncoder
from derain.fsderain.finetune import ResizedPairs, finetune
from derain.fsderain.frequency import disc_mask, high_pass_amplitude, low_pass_spectrum
from derain.fsderain.objective import FSDerainObjective, ssim_without_gradient
from derain.fsderain.unpaired import UnpairedObjective
from derain.losses.vgg import Perceptual, VGG16Trunk, save_torchvision_format
from derain.models import build
from derain.weights import DEFAULT, default_checkpoint
from derain.weights.load import load_model

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["data.patch=32", "data.batch=2", "log_every=1", "threads=1", "precision=fp32", "device=cpu"]


def two_tone(h: int = 64, w: int = 64) -> np.ndarray:
    """0.5 + a low frequency (2 cycles down) + a high one (20 cycles across)."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return 0.5 + 0.2 * np.cos(2 * np.pi * 2 * i / h) + 0.1 * np.cos(2 * np.pi * 20 * j / w)


# ----- frequency ------------------------------------------------------------------------------------------
def test_high_pass_removes_the_low_frequency_disc() -> None:
    img = two_tone()
    x = torch.from_numpy(img).float()[None, None]
    hp = high_pass_amplitude(x, radius=0.1, shift=True)[0, 0].numpy()
    centred = np.fft.fftshift(np.abs(np.fft.fft2(img, norm="ortho")))
    inside = np.hypot(*np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij")) <= 6.4
    assert inside.sum() == disc_mask(64, 64, 0.1).sum() == 129  # lattice points within 6.4 px
    assert np.all(hp[inside] == 0)
    np.testing.assert_allclose(hp[~inside], centred[~inside], atol=1e-5)
    # DC (32 = 0.5 * 64) and the 2-cycle component are gone, the 20-cycle one (0.1 * 64 / 2) is kept
    assert centred[32, 32] == pytest.approx(32.0, abs=1e-4) and hp[32, 32] == 0
    assert centred[34, 32] == pytest.approx(6.4, abs=1e-4) and hp[34, 32] == 0 and hp[30, 32] == 0
    assert hp[32, 52] == pytest.approx(3.2, abs=1e-4) and hp[32, 12] == pytest.approx(3.2, abs=1e-4)


def test_faithful_mask_removes_the_highest_frequencies_instead() -> None:
    img = two_tone()
    x = torch.from_numpy(img).float()[None, None]
    raw = np.abs(np.fft.fft2(img, norm="ortho"))  # unshifted: DC at (0, 0), Nyquist at (32, 32)
    faithful = high_pass_amplitude(x, radius=0.1, shift=False)[0, 0].numpy()
    assert faithful[0, 0] == pytest.approx(32.0, abs=1e-4)  # DC survives
    assert faithful[2, 0] == pytest.approx(6.4, abs=1e-4)  # so does the low frequency
    inside = disc_mask(64, 64, 0.1).numpy()
    assert np.all(faithful[inside] == 0)
    np.testing.assert_allclose(faithful[~inside], raw[~inside], atol=1e-5)


def test_low_pass_is_the_complement() -> None:
    img = torch.rand(1, 3, 40, 48)
    lp = low_pass_spectrum(img, 0.1)
    assert lp.shape == (1, 3, int(disc_mask(40, 48, 0.1).sum()), 2)
    spec = torch.fft.fftshift(torch.fft.fft2(img, norm="ortho"), dim=(-2, -1))
    assert torch.allclose(lp[..., 0].sum(-1), spec.real[..., disc_mask(40, 48, 0.1)].sum(-1))


# ----- contrastive ----------------------------------------------------------------------------------------
def test_triplet_and_info_nce_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    n = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    # d(a1,p1)=0, d(a1,n1)=1 -> relu(-0.7)=0; d(a2,p2)=1, d(a2,n2)=1 -> 0.3; mean 0.15
    assert float(triplet(a, p, n, 0.3)) == pytest.approx(0.15, abs=1e-5)
    c = 1 / math.sqrt(2) / 0.1  # cos(a_i, p_j) / temperature
    row1 = -10.0 + math.log(math.exp(10.0) + math.exp(c))
    row2 = -c + math.log(math.exp(0.0) + math.exp(c))
    expected_nce = (row1 + row2) / 2
    assert float(info_nce(a, p, 0.1)) == pytest.approx(expected_nce, rel=1e-5)
    assert float(contrastive_loss(a, p, n)) == pytest.approx(0.1 * 0.15 + expected_nce, rel=1e-5)


def test_info_nce_scale_invariance_and_clean_class_nce_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    assert float(info_nce(a, p)) == pytest.approx(float(info_nce(5 * a, p / 7)), rel=1e-5)
    n = torch.tensor([[0.0, 1.0]])
    # anchor 1: positives cos 1, 1/sqrt2; negative cos 0. anchor 2: positives cos 0, 1/sqrt2; negative cos 1.
    s = 1 / math.sqrt(2)
    l1 = -math.log((math.exp(10) + math.exp(10 * s)) / (math.exp(10) + math.exp(10 * s) + 1))
    l2 = -math.log((1 + math.exp(10 * s)) / (1 + math.exp(10 * s) + math.exp(10)))
    assert float(clean_class_nce(a, p, n, 0.1)) == pytest.approx((l1 + l2) / 2, rel=1e-5)


# ----- objective and gradients ----------------------------------------------------------------------------
def test_encoder_matches_the_spec() -> None:
    enc = FrequencyEncoder()
    assert sum(p.numel() for p in enc.parameters()) == 109_760
    assert enc(torch.rand(3, 3, 64, 64)).shape == (3, 128)


def test_gradients_flow_through_every_term() -> None:
    torch.manual_seed(0)
    objective = FSDerainObjective(LossConfig(), perceptual=Perceptual(VGG16Trunk()))
    clean = torch.rand(3, 3, 32, 32)
    rainy = (clean + 0.3 * (torch.rand_like(clean) > 0.9)).clamp(0, 1)
    for term in ("l1", "ssim", "perceptual", "contrastive", "fft"):
        only = LossConfig(**{k: (getattr(LossConfig(), k) if k == term else 0.0)
                             for k in ("l1", "ssim", "perceptual", "contrastive", "fft")})
        obj = FSDerainObjective(only, perceptual=objective.perceptual)
        output = (rainy * 0.9).requires_grad_(True)
        total, parts = obj(output, clean, rainy)
        assert list(parts) == [term]
        total.backward()
        assert output.grad is not None and output.grad.abs().sum() > 0, term
    total, parts = objective(rainy.clone().requires_grad_(True), clean, rainy)
    total.backward()
    assert set(parts) == {"l1", "ssim", "perceptual", "contrastive", "fft"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.trainable_parameters())
    assert not any(p.requires_grad for p in objective.perceptual.parameters())  # the VGG stays frozen


def test_faithful_ssim_has_no_gradient_and_is_skimage() -> None:
    skimage = pytest.importorskip("skimage.metrics")
    torch.manual_seed(1)
    pred, target = torch.rand(2, 3, 24, 24, requires_grad=True), torch.rand(2, 3, 24, 24)
    value = ssim_without_gradient(pred, target)
    assert not value.requires_grad
    expected = 1 - np.mean([skimage.structural_similarity(pred[b].detach().permute(1, 2, 0).numpy(),
                                                          target[b].permute(1, 2, 0).numpy(), channel_axis=2,
                                                          data_range=1.0) for b in range(2)])
    assert float(value) == pytest.approx(expected, abs=1e-5)
    faithful = FSDerainObjective(LossConfig(l1=0, perceptual=0, contrastive=0, fft=0, ssim_grad=False))
    total, _ = faithful(pred, target, target)
    assert not total.requires_grad  # the original's SSIM term trains nothing
    intended = FSDerainObjective(LossConfig(l1=0, perceptual=0, contrastive=0, fft=0))
    total, _ = intended(pred, target, target)
    total.backward()
    assert pred.grad.abs().sum() > 0


def test_unpaired_objective_gradients_and_identity_penalty() -> None:
    torch.manual_seed(2)
    obj = UnpairedObjective(LossConfig(l1=0, ssim=0, perceptual=0, fft=0, low_freq=1.0))
    rainy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    output = rainy.clone().requires_grad_(True)
    total, parts = obj(output, rainy, clean)
    assert parts["low_freq"] == 0.0  # the identity keeps the low frequencies exactly ...
    assert parts["contrastive"] > 0.1 * 0.3 - 1e-6  # ... but sits on the negatives: at least the margin
    total.backward()
    assert output.grad.abs().sum() > 0
    assert all(p.grad is not None for p in obj.trainable_parameters())
    # The encoder learns only from the critic term: the network's term leaves its weights alone.
    obj.zero_grad()
    network_only = UnpairedObjective(LossConfig(l1=0, ssim=0, perceptual=0, fft=0, low_freq=0.0))
    network_only.encoder.load_state_dict(obj.encoder.state_dict())
    out = rainy.clone().requires_grad_(True)
    a = network_only.embed(out, frozen=True)
    a.sum().backward()
    assert out.grad.abs().sum() > 0
    assert all(p.grad is None for p in network_only.trainable_parameters())
    with pytest.raises(DerainError, match="no ground truth"):
        UnpairedObjective(LossConfig())


# ----- config -------------------------------------------------------------------------------------------
def test_configs_load_and_presets() -> None:
    paired = load_finetune_config(ROOT / "configs/fsderain_paired.yaml")
    assert (paired.optim.name, paired.optim.lr, paired.optim.weight_decay) == ("adam", 2e-4, 0.0)
    assert (paired.schedule.name, paired.schedule.factor, paired.schedule.patience) == ("plateau", 0.5, 3)
    assert (paired.data.batch, paired.epochs, paired.data.sampling) == (8, 10, "crop")
    assert (paired.loss.l1, paired.loss.ssim, paired.loss.perceptual, paired.loss.contrastive,
            paired.loss.fft) == (1.0, 0.5, 0.1, 0.1, 0.05)
    faithful = load_finetune_config(ROOT / "configs/fsderain_paired.yaml", ["faithful=true"])
    assert (faithful.data.sampling, faithful.data.patch, faithful.loss.ssim_grad,
            faithful.loss.mask_shift) == ("resize", 64, False, False)
    unpaired = load_finetune_config(ROOT / "configs/fsderain_unpaired.yaml")
    assert unpaired.unpaired and unpaired.loss.perceptual == 0 and unpaired.loss.low_freq == 1.0
    assert load_finetune_config(None, ["data.clean_pool=clean"], unpaired=True).loss.l1 == 0.0
    with pytest.raises(DerainError, match="data.clean_pool: set it"):  # no default folder on anyone's machine
        load_finetune_config(None, unpaired=True)
    partial = load_finetune_config(None, ["optim.lr=1e-4"])
    assert (partial.optim.name, partial.optim.weight_decay) == ("adam", 0.0)  # the recipe, not the engine's
    with pytest.raises(DerainError, match="loss.ssim_weight"):
        load_finetune_config(None, ["loss.ssim_weight=1"])
    with pytest.raises(DerainError, match="ground truth"):
        load_finetune_config(None, ["loss.fft=0.05"], unpaired=True)
    with pytest.raises(DerainError, match="faithful"):
        load_finetune_config(None, ["faithful=true"], unpaired=True)


def test_resized_pairs_match_pil_bilinear(shared) -> None:
    from derain.data.datasets import load_pairs

    pairs = load_pairs(shared("data/rain100l-train"), 3)
    sampler = ResizedPairs(pairs, 64, seed=0)
    x, y = sampler.sample(3)
    assert x.shape == y.shape == (3, 3, 64, 64)
    first = int(sampler.order[0])
    expected = np.asarray(Image.fromarray(pairs[first][1]).resize((64, 64), Image.BILINEAR))
    assert torch.equal(x[0], torch.from_numpy(expected.copy()).permute(2, 0, 1).float() / 255)
    seen = {tuple(t.flatten()[:8].tolist()) for t in x}
    assert len(seen) == 3  # one epoch visits every image once


# ----- short runs on real data ----------------------------------------------------------------------------
def test_paired_finetune_from_the_default_model(shared, tmp_path, capsys) -> None:
    data = shared("data/rain100l-train")
    vgg = save_torchvision_format(VGG16Trunk(), tmp_path / "vgg16-397923af.pth")
    start = default_checkpoint()
    assert start is not None
    last = finetune(start, data, config_path=ROOT / "configs/fsderain_paired.yaml", run_dir=tmp_path / "run",
                    overrides=QUICK + ["data.train_max_images=4", "data.val_holdout=1", "max_steps=2",
                                       f"loss.vgg_weights={vgg}"])
    assert last == tmp_path / "run" / "last.safetensors" and (tmp_path / "run" / "best.safetensors").is_file()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "perceptual" in log and "val 1 pairs matlab-y PSNR" in log and "step 2/2" in log
    saved = read_checkpoint(last)
    assert saved["model"] == DEFAULT and saved["recipe"] == "fsderain"
    before, _ = load_model(None, start)
    after, _ = load_model(None, last)
    assert set(saved["params"]) == set(before.state_dict())  # the network only: no FrequencyEncoder
    assert any(not torch.equal(before.state_dict()[k], after.state_dict()[k].to(before.state_dict()[k].dtype))
               for k in before.state_dict())
    image = shared("data/rain100l/rainy/rain-001.png")
    assert main(["run", str(image), "--weights", str(last), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert (tmp_path / "out" / "rain-001.png").is_file()


def test_faithful_run(shared, tmp_path) -> None:
    data = shared("data/rain100l-train")
    finetune(default_checkpoint(), data, run_dir=tmp_path / "run",
             overrides=QUICK + ["faithful=true", "loss.perceptual=0", "max_steps=1", "data.train_max_images=3",
                                "data.val_holdout=0"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "faithful" in log and "64x64 whole-image resizes" in log
    assert "SSIM without gradient" in log and "mask without fftshift" in log
    # A second run into the same folder asks first, then (asked) starts from the folder's own last weights.
    last = tmp_path / "run" / "last.safetensors"
    first = last.read_bytes()
    quick = QUICK + ["loss.perceptual=0", "max_steps=1", "data.train_max_images=3", "data.val_holdout=0"]
    with pytest.raises(DerainError, match="already holds a run"):
        finetune(last, data, run_dir=tmp_path / "run", overrides=quick)
    assert last.read_bytes() == first
    assert finetune(last, data, run_dir=tmp_path / "run", overrides=quick, overwrite=True) == last
    assert last.read_bytes() != first


def test_unpaired_finetune_on_real_rain(shared, tmp_path) -> None:
    rainy, clean = shared("data/real-rain"), shared("data/clean")
    start = default_checkpoint()
    last = finetune(start, rainy, config_path=ROOT / "configs/fsderain_unpaired.yaml", unpaired=True,
                    run_dir=tmp_path / "run",
                    overrides=QUICK + ["data.train_max_images=3", "max_steps=2", f"data.clean_pool={clean}"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "unpaired (our extension)" in log and "low_freq" in log and "step 2/2" in log
    net, name = load_model(None, last)
    assert name == DEFAULT
    assert read_checkpoint(last)["recipe"] == "fsderain-unpaired"


# ----- bad input: one clear line each ---------------------------------------------------------------------
def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("derain: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs(shared, tmp_path, capsys, monkeypatch) -> None:
    pairs, photos = shared("data/rain100l-train"), shared("data/real-rain")
    start = str(default_checkpoint())
    out = ["-o", str(tmp_path / "run"), "--set", "data.train_max_images=2", "--set", "data.val_holdout=0"]
    # a checkpoint the registry cannot load: a foreign state dict, and one with no network name
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, foreign)
    err = one_error_line(capsys, ["finetune", "--from", str(foreign), "--model", "fastderain", str(pairs), *out])
    assert "cannot fine-tune from" in err and "does not fit" in err
    err = one_error_line(capsys, ["finetune", "--from", str(foreign), str(pairs), *out])
    assert "--model" in err
    # missing VGG weights with the perceptual term on
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    err = one_error_line(capsys, ["finetune", "--from", start, str(pairs), *out])
    assert "vgg16-397923af.pth" in err and str(tmp_path / "torch-home") in err
    # an unpaired folder given to paired mode
    err = one_error_line(capsys, ["finetune", "--from", start, str(photos), *out, "--set", "loss.perceptual=0"])
    assert "--unpaired" in err and "no rainy/clean pairs" in err


def test_official_restormer_format_with_model_name(shared, tmp_path) -> None:
    """deraining.pth's format ({'params': ...}, no network name) fine-tunes with model=restormer (1 step of
    16x16) and comes out self-describing, so derain run needs no --model."""
    from derain.models import get_spec

    data = shared("data/rain100l-train")
    torch.manual_seed(0)
    torch.save({"params": build("restormer").state_dict()}, tmp_path / "deraining.pth")
    last = finetune(tmp_path / "deraining.pth", data, model="restormer", run_dir=tmp_path / "run",
                    overrides=QUICK + ["data.patch=16", "loss.perceptual=0", "max_steps=1",
                                       "data.train_max_images=2", "data.val_holdout=0"])
    header = read_checkpoint(last)
    assert header["model"] == "restormer"
    assert header["config"] == {k: v for k, v in get_spec("restormer").default_config.items()}
    _, name = load_model(None, last)
    assert name == "restormer"
