"""Rain2Avoid: LDGP (reference vs torch), pseudo ground truths (vectorised vs the official per-pixel loops),
the paper's UNet, and `derain selfsup` end to end on small real crops with a few steps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from derain.cli import main
from derain.files.imageio import read_uint8_rgb, write_image
from derain.models import build, count_parameters
from derain.rain2avoid import ldgp as L
from derain.rain2avoid import pseudo_gt as P
from derain.rain2avoid.selfsup import SelfSupConfig, resolve

import rain2avoid_oracles as R  # the official scripts' definitions, test-only (tests/)


def rainy(shared, name: str) -> np.ndarray:
    return read_uint8_rgb(shared("data/rain100l/rainy") / name)


@pytest.fixture
def crop_and_mask(shared) -> tuple[np.ndarray, np.ndarray]:
    """A 64x96 crop of a real rainy image and its LDGP mask (cut from the whole image's mask)."""
    image = rainy(shared, "rain-001.png")
    mask = L.ldgp(image).mask
    return np.ascontiguousarray(image[100:164, 200:296]), np.ascontiguousarray(mask[100:164, 200:296])


# ----------------------------------------------------------------------------------------------------------
# LDGP


def test_hog_sums_torch_match_reference(shared):
    image = rainy(shared, "rain-002.png")[:160, :160]
    grey = L.grey_opencv(torch.from_numpy(np.array(image)).permute(2, 0, 1)).numpy().astype(np.uint8)
    assert np.array_equal(grey, R.grey_opencv4_reference(image))
    patches = np.stack([grey[y:y + 80, x:x + 80] for x in (0, 80) for y in (0, 80)])
    ref = np.stack([R.hog_orientation_sums_reference(p) for p in patches])
    fast = L.hog_orientation_sums(torch.from_numpy(patches).float()).numpy()
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, box", [("rain-002.png", (0, 0, 160, 320)), ("rain-005.png", (80, 80, 240, 400))])
def test_ldgp_implementations_agree_on_real_images(shared, name, box):
    y0, x0, y1, x1 = box
    image = np.ascontiguousarray(rainy(shared, name)[y0:y1, x0:x1])
    ref, fast = R.ldgp_reference(image), L.ldgp(image)
    assert (fast.angle, fast.raw_angle) == (ref.angle, ref.raw_angle)
    assert fast.angle != 0  # a rotated case: the warp, threshold and opening are all exercised
    a, b = ref.mask > 0, fast.mask > 0
    assert 0.02 < a.mean() < 0.4  # a plausible amount of rain
    agreement = (a == b).mean()
    iou = (a & b).sum() / (a | b).sum()
    assert agreement > 0.999 and iou > 0.99, (agreement, iou)


def _line_distance(size: int, normal_deg: float, period: float = 12.0) -> np.ndarray:
    """Distance of every pixel to the nearest of parallel lines whose normal is at ``normal_deg`` (y down)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    t = math.radians(normal_deg)
    d = (x * math.cos(t) + y * math.sin(t)) % period
    return np.minimum(d, period - d)


def _grating(size: int, normal_deg: float) -> np.ndarray:
    """Bright thin lines (Gaussian profile, sigma 1 pixel) on a dark background, as uint8 RGB."""
    grey = 40 + 180 * np.exp(-_line_distance(size, normal_deg) ** 2 / 2.0)
    return np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=2)


def test_ldgp_finds_the_streak_angle_and_keeps_the_streaks():
    # Gradients at 42.5 degrees, the centre of bin 8: the official angle is bin * 5 = 40.
    image = _grating(240, 42.5)
    for impl in (L.ldgp, R.ldgp_reference):
        result = impl(image, "nlss")
        assert (result.raw_angle, result.angle) == (40, 40)
    mask = L.ldgp(image, "nlss").mask > 0
    distance = _line_distance(240, 42.5)
    # Rotated upright, the lines survive the vertical opening: the mask covers them and nothing else.
    assert (distance[mask] <= 2.5).mean() > 0.99
    assert mask[distance <= 1].mean() > 0.95
    # Without the rotation the same opening removes these slanted lines: the rotation is what keeps them.
    grey = L.grey_opencv(torch.from_numpy(image).permute(2, 0, 1)).double()
    unrotated = L.vertical_opening(L.adaptive_mean_threshold(grey), 10)
    assert (unrotated > 0).float().mean() < 0.05 * mask.mean()


def test_angle_mapping_of_both_versions():
    assert [L.map_angle(a, "icassp") for a in (0, 5, 85, 90, 95, 175)] == [0, 5, 85, 0, -85, -5]
    assert [L.map_angle(a, "nlss") for a in (85, 90, 95)] == [0, 0, -85]
    assert L.most_frequent([5, 175, 175, 5, 40]) in (5, 175)


# ----------------------------------------------------------------------------------------------------------
# pseudo ground truths


def test_icassp_candidate_sets_match_the_loop(crop_and_mask):
    _, mask = crop_and_mask
    valid = P.icassp_candidates(torch.from_numpy(mask))
    targets = P.icassp_targets(torch.from_numpy(mask), valid)
    loop = R.icassp_candidates_loop(mask)
    ys, xs = targets.nonzero(as_tuple=True)
    assert set(zip(ys.tolist(), xs.tolist())) == set(loop) and len(loop) > 100
    for y, x in loop:
        assert valid[:, y, x].nonzero()[:, 0].tolist() == loop[(y, x)]


def test_icassp_sampling_is_uniform_over_the_candidates(crop_and_mask):
    image, mask = crop_and_mask
    num = 4000
    pgt = P.icassp_pseudo_gt(image, mask, num=num, generator=torch.Generator().manual_seed(0))
    loop = R.icassp_candidates_loop(mask)
    w = mask.shape[1]
    dy, dx = P._offsets(7)
    for n in range(0, pgt.target.numel(), 97):  # a spread of pixels
        y, x = divmod(int(pgt.target[n]), w)
        allowed = {(y + int(dy[o])) * w + x + int(dx[o]) for o in loop[(y, x)]}
        drawn = pgt.source[:, n]
        assert set(drawn.tolist()) <= allowed
        counts = torch.bincount(drawn, minlength=mask.size)[sorted(allowed)].double()
        expected = num / len(allowed)
        # every candidate equally likely: counts within 5 sigma of the binomial mean
        assert (counts - expected).abs().max() < 5 * math.sqrt(expected) + 1


def test_icassp_loop_and_vectorised_fill_the_same_pixels_from_the_same_sets(crop_and_mask):
    image, mask = crop_and_mask
    loop = R.icassp_pseudo_gt_loop(image, mask, num=30, rng=np.random.RandomState(0))
    fast = P.icassp_pseudo_gt(image, mask, num=30, generator=torch.Generator().manual_seed(0))
    fast_images = fast.stack().permute(0, 2, 3, 1).numpy()
    changed_loop = (loop != image[None]).any(-1).any(0)
    changed_fast = (fast_images != image[None]).any(-1).any(0)
    assert not (changed_loop & (mask == 0)).any() and not (changed_fast & (mask == 0)).any()
    candidates = R.icassp_candidates_loop(mask)
    for (y, x), offsets in list(candidates.items())[::50]:
        allowed = {tuple(image[y + o // 7 - 3, x + o % 7 - 3]) for o in offsets}
        assert {tuple(v) for v in loop[:, y, x]} <= allowed
        assert {tuple(v) for v in fast_images[:, y, x]} <= allowed


def test_icassp_row_break_quirk():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255  # a 10x10 rain block: its centre has no non-rain pixel in its 7x7 window
    valid = P.icassp_candidates(torch.from_numpy(mask))
    quirk = P.icassp_targets(torch.from_numpy(mask), valid, row_break=True)
    clean = P.icassp_targets(torch.from_numpy(mask), valid, row_break=False)
    loop = R.icassp_candidates_loop(mask)
    assert set(zip(*[t.tolist() for t in quirk.nonzero(as_tuple=True)])) == set(loop)
    assert not quirk[9, 13:].any() and quirk[9, 10:13].all()  # the row stops at the first empty window
    assert clean[9, 17:20].all()


def test_nss_candidates_weights_and_samples_match_the_loop(crop_and_mask):
    image, mask = crop_and_mask
    targets, weights = P.nss_weights(image, mask)
    probs = P.nss_probabilities(weights)
    loop = R.nss_candidates_loop(image, mask)
    w = mask.shape[1]
    dy, dx = P._offsets(7)
    assert sorted(divmod(int(t), w) for t in targets) == sorted(loop) and len(loop) > 100
    for n, t in enumerate(targets.tolist()):
        y, x = divmod(t, w)
        neighbours, p = loop[(y, x)]
        nz = probs[n].nonzero()[:, 0]
        assert [(y + int(dy[o]), x + int(dx[o])) for o in nz] == neighbours
        np.testing.assert_allclose(probs[n, nz].numpy(), p, rtol=1e-5, atol=1e-7)
    # With the official uniforms (numpy reseeded with 0 at every pixel) the samples are the official ones.
    fast = P.nss_pseudo_gt(image, mask, num=10, shared_uniforms=True).stack().permute(0, 2, 3, 1).numpy()
    official = R.nss_pseudo_gt_loop(image, mask, num=10, candidates=loop)
    assert (fast == official).all(-1).mean() > 0.999


@pytest.mark.parametrize("variant", ["icassp", "nlss"])
def test_pseudo_gt_pixels_come_from_non_rain_pixels(crop_and_mask, variant):
    image, mask = crop_and_mask
    pgt = P.pseudo_gt(variant, image, mask, num=20, generator=torch.Generator().manual_seed(1))
    flat_mask = torch.from_numpy(mask).reshape(-1)
    assert pgt.target.numel() > 100
    assert (flat_mask[pgt.source] == 0).all()  # sources are non-rain pixels
    assert (flat_mask[pgt.target] > 0).all()  # only rain pixels are replaced
    w = mask.shape[1]
    assert ((pgt.source // w - pgt.target // w).abs() <= 3).all()
    assert ((pgt.source % w - pgt.target % w).abs() <= 3).all()
    stack = pgt.stack()
    untouched = torch.ones(mask.size, dtype=torch.bool)
    untouched[pgt.target] = False
    rainy_t = torch.from_numpy(image).permute(2, 0, 1).reshape(3, -1)
    assert (stack.reshape(20, 3, -1)[:, :, untouched] == rainy_t[:, untouched]).all()
    assert torch.allclose(pgt.fused(), stack.float().mean(0), atol=1e-3)


# ----------------------------------------------------------------------------------------------------------
# network and training


def test_unet_parameter_count_and_shapes():
    model = build("rain2avoid-unet")
    assert count_parameters(model) == 4_539_988
    small = build("rain2avoid-unet", width=32)
    assert count_parameters(small) < count_parameters(model) / 3
    with torch.no_grad():
        assert small(torch.rand(1, 3, 48, 64)).shape == (1, 3, 48, 64)
    # The CPU recipe's residual variant has the same parameters and starts as the identity, in train mode too.
    residual = build("rain2avoid-unet", width=32, residual=True).train()
    assert count_parameters(residual) == count_parameters(small)
    x = torch.rand(2, 3, 48, 64)
    assert torch.equal(residual(x), x)


def test_recipes():
    icassp = resolve(SelfSupConfig())
    assert (icassp.steps, icassp.lr, icassp.batch, icassp.crop) == (5000, 1e-2, 1, 0)
    assert icassp.bn_train_at_inference and icassp.width == 64
    later = resolve(SelfSupConfig(variant="nlss"))
    assert (later.lr, later.bn_train_at_inference, later.precision) == (1e-3, False, "fp32")
    multiple = resolve(SelfSupConfig(variant="nlss", mode="multiple"), num_images=100)
    assert (multiple.batch, multiple.crop, multiple.steps, multiple.schedule) == (64, 64, 4000, "constant")
    fast = resolve(SelfSupConfig(fast=True))
    assert fast.width == 32 and fast.crop > 0 and fast.schedule == "cosine" and fast.steps < 5000
    assert fast.residual and not icassp.residual and not later.residual
    assert fast.lr == 1e-3 and resolve(SelfSupConfig(fast=True, lr=5e-3)).lr == 5e-3
    assert not resolve(SelfSupConfig(fast=True, residual=False)).residual


def test_selfsup_cli_writes_results_masks_and_pseudo(shared, tmp_path, capsys):
    folder = tmp_path / "in"
    for name in ("rain-001.png", "rain-002.png"):
        write_image(folder / name, rainy(shared, name)[100:164, 200:296] / 255.0)
    out = tmp_path / "out"
    args = ["selfsup", str(folder), "-o", str(out), "--steps", "3", "--pseudo", "4", "-q"]
    assert main(args + ["--save-masks", "--save-pseudo"]) == 0
    for name in ("rain-001.png", "rain-002.png"):
        result = read_uint8_rgb(out / name)
        assert result.shape == (64, 96, 3)
        mask = read_uint8_rgb(out / "masks" / name)[..., 0]
        assert np.array_equal(mask, L.ldgp(read_uint8_rgb(folder / name)).mask)
        stem = name[:-4]
        assert sorted(p.name for p in (out / "pseudo" / stem).iterdir()) == ["0.png", "1.png", "2.png", "3.png",
                                                                            "fused.png"]
        pseudo = read_uint8_rgb(out / "pseudo" / stem / "0.png")
        same = (pseudo == read_uint8_rgb(folder / name)).all(-1)
        assert same[mask == 0].all() and not same[mask > 0].all()
    before = (out / "rain-001.png").stat().st_mtime_ns
    assert main(args) == 0
    assert "skipped 2 existing" in capsys.readouterr().out
    assert (out / "rain-001.png").stat().st_mtime_ns == before
    assert main(args + ["--mode", "multiple", "--variant", "nlss", "--fast", "--batch", "2", "--overwrite"]) == 0
    assert (out / "rain-001.png").stat().st_mtime_ns != before


def test_selfsup_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["selfsup", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("derain: error:") and "\n" not in err
    assert main(["selfsup", str(tmp_path), "-o", str(tmp_path / "o2"), "--crop", "50"]) == 1
