"""In-memory paired patches: real pairs, aligned crops, the 8 dihedral transforms, resumable randomness."""
from __future__ import annotations

import numpy as np
import pytest

from derain.data.datasets import PairedPatches, load_pairs, transplant_rain
from derain.data.dihedral import dihedral
from derain.errors import DerainError


def real_pairs(shared, n: int = 3):
    return load_pairs(shared("data/rain100l-train"), limit=n)


def test_load_pairs_reads_uint8_rgb(shared):
    pairs = real_pairs(shared)
    assert len(pairs) == 3
    for name, inp, tgt in pairs:
        assert inp.dtype == np.uint8 and inp.ndim == 3 and inp.shape[2] == 3 and inp.shape == tgt.shape
        assert np.abs(inp.astype(int) - tgt.astype(int)).mean() > 1  # rain is there


def test_crops_are_aligned_and_in_range(shared):
    # Target = inverted input: any misalignment between the two crops or transforms would show.
    pairs = [(name, inp, 255 - inp) for name, inp, _ in real_pairs(shared)]
    data = PairedPatches(pairs, seed=1)
    x, y = data.sample(6, 64)
    assert x.shape == y.shape == (6, 3, 64, 64)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float((x + y - 1.0).abs().max()) < 1e-6


def test_dihedral_gives_eight_distinct_transforms():
    image = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    variants = {dihedral(image, k).tobytes() + bytes(dihedral(image, k).shape) for k in range(8)}
    assert len(variants) == 8


def test_every_pair_is_visited_once_per_epoch(shared):
    pairs = real_pairs(shared)
    data = PairedPatches(pairs, seed=0)
    seen = [data._next_index() for _ in range(len(pairs))]
    assert sorted(seen) == list(range(len(pairs)))


def test_state_dict_resumes_the_same_patches(shared):
    pairs = real_pairs(shared)
    data = PairedPatches(pairs, seed=5)
    data.sample(4, 32)
    state = data.state_dict()
    expected = [data.sample(4, 32)[0] for _ in range(3)]
    other = PairedPatches(pairs, seed=123)
    other.load_state_dict(state)
    for want in expected:
        assert bool((other.sample(4, 32)[0] == want).all())


def test_patch_larger_than_images_is_one_line_error(shared):
    data = PairedPatches(real_pairs(shared, 1))
    with pytest.raises(DerainError, match="patch size 400 is larger than the smallest training image"):
        data.sample(1, 400)


def test_no_pairs_is_one_line_error(tmp_path):
    (tmp_path / "rainy").mkdir()
    (tmp_path / "clean").mkdir()
    with pytest.raises(DerainError):
        load_pairs(tmp_path)
    with pytest.raises(DerainError, match="not found"):
        load_pairs(tmp_path / "missing")


def test_flips_keep_vertical_streaks_vertical(shared):
    """augment 'flips' draws only the 4 transforms that map a vertical line to a vertical line."""
    image = load_pairs(shared("data/rain100l-train"), limit=1)[0][1]
    patch = 64
    crop = image[:patch, :patch]
    streak = np.zeros((patch, patch, 3), dtype=np.uint8)
    streak[:, 10] = 255  # one vertical streak
    sampler = PairedPatches([("streak", streak, crop)], seed=3, augment="flips")
    seen = set()
    for _ in range(64):
        x, y = sampler.sample(1, patch)
        column_sums = x[0, 0].sum(dim=0)
        assert float(column_sums.max()) == patch  # still a full vertical line
        matches = [k for k in range(8) if np.array_equal(
            (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), dihedral(crop, k))]
        seen.update(matches)
    assert seen == {0, 2, 4, 6}
    everything = PairedPatches([("streak", streak, crop)], seed=3)
    turned = [float(everything.sample(1, patch)[0][0, 0].sum(dim=1).max()) == patch for _ in range(64)]
    assert any(turned)  # the default (all 8) also turns the streak horizontal
    with pytest.raises(DerainError, match="augment must be one of"):
        PairedPatches([("streak", streak, crop)], augment="rotate")


def test_transplanting_a_pairs_own_rain_gives_back_its_input(shared):
    """Rain100L's rain is additive: input = min(target + rain, 255), so the identity must hold exactly."""
    for _, inp, tgt in real_pairs(shared):
        assert np.array_equal(transplant_rain(tgt, inp, tgt), inp)


def test_transplanted_rain_lands_on_the_samples_own_background(shared):
    pairs = real_pairs(shared, 4)
    plain = PairedPatches(pairs, seed=7, augment="flips")
    mixed = PairedPatches(pairs, seed=7, augment="flips", rain_mix=1.0)
    x0, y0 = plain.sample(8, 64)
    x1, y1 = mixed.sample(8, 64)
    # The first draw of each sample is the same crop of the same pair: targets agree in the first sample.
    assert bool((y0[0] == y1[0]).all())
    rain = (x1 - y1) * 255
    assert float(rain.min()) >= -1e-3  # the transplanted layer only adds light, as the donors' does
    assert float(rain.mean()) > 1.0  # and there is rain on every mixed batch
    # Mixing moved the rain off the target's own scene: inputs differ from the plain sampler's.
    assert not bool((x0 == x1).all())


def test_rain_mix_off_draws_the_patches_it_always_drew(shared):
    pairs = real_pairs(shared)
    a, b = PairedPatches(pairs, seed=2), PairedPatches(pairs, seed=2, rain_mix=0.0)
    for _ in range(3):
        assert all(bool((u == v).all()) for u, v in zip(a.sample(4, 32), b.sample(4, 32)))
    with pytest.raises(DerainError, match="rain_mix must be in"):
        PairedPatches(pairs, rain_mix=1.5)


def test_a_donors_overexposed_background_is_not_painted_onto_the_patch():
    clean = np.full((8, 8, 3), 40, dtype=np.uint8)
    donor_input = np.full((8, 8, 3), 255, dtype=np.uint8)  # overexposed sky, no rain: 255 in both images
    donor_target = donor_input.copy()
    donor_input[:, 3] = 255
    donor_target[:, 3] = 200  # one clipped streak: its rain is at least 55
    mixed = transplant_rain(clean, donor_input, donor_target)
    assert np.array_equal(mixed[:, [0, 1, 2, 4, 5, 6, 7]], clean[:, [0, 1, 2, 4, 5, 6, 7]])
    assert (mixed[:, 3] == 95).all()  # the streak moves with its known lower bound
