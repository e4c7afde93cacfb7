"""Loss terms: zero at the target, positive and differentiable away from it, config errors named."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from derain.errors import DerainError
from derain.losses import (CharbonnierLoss, EdgeLoss, FFTLoss, L1Loss, LumaOnly, MultiOutput, MultiScale, SSIMLoss,
                           build_loss, build_term, ssim)
from derain.metrics.fullref import psnr, rgb_to_y_matlab
from derain.train.config import LossTerm


@pytest.fixture
def pair(shared) -> tuple[torch.Tensor, torch.Tensor]:
    """A real 64x64 rainy crop and its clean target from Rain100L."""
    def load(rel):
        img = np.asarray(Image.open(shared(rel)).convert("RGB"), dtype=np.float32)[100:164, 200:264] / 255.0
        return torch.from_numpy(img).permute(2, 0, 1)[None]
    return load("data/rain100l/rainy/rain-001.png"), load("data/rain100l/clean/norain-001.png")


ALL = [L1Loss(), CharbonnierLoss(), SSIMLoss(), EdgeLoss(), EdgeLoss(kernel="laplacian"), FFTLoss("amplitude"),
       FFTLoss("complex"), FFTLoss("complex", norm="backward", onesided=False), MultiScale(L1Loss(), (1.0, 0.5)),
       MultiOutput(L1Loss()), LumaOnly(L1Loss())]


@pytest.mark.parametrize("loss", ALL, ids=lambda m: type(m).__name__ + getattr(m, "mode", ""))
def test_zero_at_target_positive_and_differentiable(loss, pair):
    rainy, clean = pair
    assert float(loss(clean, clean)) < 1e-3 + (1e-3 if isinstance(loss, (CharbonnierLoss, EdgeLoss)) else 0)
    assert float(loss(clean, clean)) < float(loss(rainy, clean))
    pred = rainy.clone().requires_grad_(True)
    value = loss(pred, clean)
    assert float(value.detach()) > float(loss(clean, clean))
    value.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0


def test_ssim_of_rain_is_below_one_and_symmetric(pair):
    rainy, clean = pair
    s = float(ssim(rainy, clean))
    assert 0.3 < s < 0.999
    assert abs(s - float(ssim(clean, rainy))) < 1e-6


def test_charbonnier_close_to_l1_for_large_errors():
    a, b = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    assert abs(float(CharbonnierLoss()(a, b)) - float(L1Loss()(a, b))) < 1e-5


def test_fft_complex_sees_a_shift_that_amplitude_ignores(pair):
    _, clean = pair
    shifted = torch.roll(clean, shifts=3, dims=-1)  # a circular shift keeps |FFT| exactly
    assert float(FFTLoss("amplitude")(shifted, clean)) < 1e-5
    assert float(FFTLoss("complex")(shifted, clean)) > 1e-3


def test_weighted_sum_and_multiscale_option(pair):
    rainy, clean = pair
    loss = build_loss([LossTerm("l1", 1.0), LossTerm("fft", 0.1, {"mode": "amplitude", "scales": [1.0, 0.5]})])
    total, parts = loss(rainy, clean)
    assert set(parts) == {"l1", "fft"}
    assert abs(float(total) - (parts["l1"] + 0.1 * parts["fft"])) < 1e-5


def test_bad_loss_names_and_options_are_one_line_errors():
    with pytest.raises(DerainError, match="unknown loss 'l3'"):
        build_term("l3")
    with pytest.raises(DerainError, match="charbonnier"):
        build_term("charbonnier", {"epsilon": 1e-3})
    with pytest.raises(DerainError, match="amplitude or complex"):
        build_term("fft", {"mode": "phase"})
    with pytest.raises(DerainError, match="outputs must be first or all"):
        build_term("l1", {"outputs": "last"})
    with pytest.raises(DerainError, match="channels must be rgb or y"):
        build_term("l1", {"channels": "lab"})
    with pytest.raises(DerainError, match="gaussian or laplacian"):
        build_term("edge", {"kernel": "sobel"})


def test_multi_output_terms_see_every_output_the_others_the_first(pair):
    """A list prediction (full, 1/2, 1/4): ``outputs: all`` sums over it against resized targets."""
    rainy, clean = pair
    outputs = [rainy, F.avg_pool2d(rainy, 2), F.avg_pool2d(rainy, 4)]
    loss = build_loss([LossTerm("l1", 1.0, {"outputs": "all"}), LossTerm("mse", 1.0)])
    _, parts = loss(outputs, clean)
    l1 = L1Loss()
    expected = sum(float(l1(o, F.interpolate(clean, size=o.shape[-2:], mode="bilinear"))) for o in outputs)
    assert parts["l1"] == pytest.approx(expected, rel=1e-6)
    assert parts["mse"] == pytest.approx(float(((rainy - clean) ** 2).mean()), rel=1e-6)  # the first output only
    assert float(MultiOutput(L1Loss())(rainy, clean)) == pytest.approx(float(l1(rainy, clean)))  # one tensor


def test_fft_full_unnormalised_spectrum_option(pair):
    rainy, clean = pair
    full = torch.view_as_real(torch.fft.fft2(rainy) - torch.fft.fft2(clean)).abs().mean()
    assert float(FFTLoss("complex", norm="backward", onesided=False)(rainy, clean)) == pytest.approx(float(full),
                                                                                                     rel=1e-5)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_luma_loss_is_the_matlab_y_error(pair):
    """``channels: y``: MSE on the luma is the `matlab-y` PSNR's error (before its rounding to uint8), a gray
    change of d moves the luma by 219/255 d, and a change of colour that keeps the luma costs nothing."""
    rainy, clean = pair
    mse_y = float(build_term("mse", {"channels": "y"})(rainy, clean))
    metric = psnr(rgb_to_y_matlab(_to_uint8(rainy)), rgb_to_y_matlab(_to_uint8(clean)))
    assert 10 * np.log10(1 / mse_y) == pytest.approx(metric, abs=0.05)
    assert float(build_term("mse", {"channels": "y"})(rainy, clean)) != pytest.approx(
        float(build_term("mse")(rainy, clean)), rel=1e-2)  # not the RGB error
    luma = LumaOnly(L1Loss())
    assert float(luma(clean + 0.1, clean)) == pytest.approx(0.1 * 219.0 / 255.0, rel=1e-5)
    weights = torch.tensor([65.481, 128.553, 24.966])
    chroma = torch.tensor([weights[1], -weights[0], 0.0]).view(1, 3, 1, 1) / 2000  # orthogonal to the weights
    assert float(luma(clean + chroma, clean)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DerainError, match="needs RGB"):
        luma(clean[:, :1], clean[:, :1])


def test_psnr_loss_is_minus_the_mean_per_sample_psnr(pair):
    """``psnr``: each sample's PSNR (peak 1) from its own MSE, averaged over the batch with a minus sign; on a
    batch of a well and a badly restored image it is not minus the PSNR of the pooled error."""
    rainy, clean = pair
    near = clean + 0.1 * (rainy - clean)  # 20 dB better
    pred, target = torch.cat([rainy, near]), torch.cat([clean, clean])
    per_image = [float(((p - t) ** 2).mean()) for p, t in zip(pred, target)]
    expected = float(np.mean([10 * np.log10(m) for m in per_image]))
    loss = build_term("psnr")
    assert float(loss(pred, target)) == pytest.approx(expected, rel=1e-4)
    pooled = 10 * np.log10(np.mean(per_image))
    assert float(loss(pred, target)) < pooled - 5  # the well restored sample counts as much as the bad one
    y_loss = float(build_term("psnr", {"channels": "y"})(rainy, clean))
    assert -y_loss == pytest.approx(psnr(rgb_to_y_matlab(_to_uint8(rainy)), rgb_to_y_matlab(_to_uint8(clean))), abs=0.05)
