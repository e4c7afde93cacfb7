"""derain compare and the FFT view: spectra, inset placement, panels, and sheets made from Rain100L."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from derain.cli import main
from derain.commands.compare import (PAD, CompareJob, _font, _line_height, _panel, auto_inset, compare, gather_rows,
                                     inset_box, parse_box, parse_named_folder, render_sheet)
from derain.errors import DerainError
from derain.metrics.spectrum import log_amplitude, luminance, to_grey_uint8
from derain.files.imageio import read_uint8_rgb

NAMES = ["rain-001", "rain-005"]


# --- FFT view ------------------------------------------------------------------------------------------------
def test_log_amplitude_is_centred_orthonormal_and_finds_a_stripe_frequency():
    h, w = 64, 96
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.5 + 0.25 * np.cos(2 * np.pi * 8 * x / w)  # 8 cycles across the width
    amp = log_amplitude(np.repeat(stripes[..., None], 3, axis=2))
    assert amp.shape == (h, w)
    spectrum = np.expm1(amp)
    # Zero frequency in the centre, holding the mean times sqrt(N) on the 0..255 scale (orthonormal FFT).
    assert np.isclose(spectrum[h // 2, w // 2], 0.5 * 255 * np.sqrt(h * w))
    # The cosine's energy sits at +-8 cycles on the horizontal axis, nowhere else.
    spectrum[h // 2, w // 2] = 0
    peaks = sorted(zip(*np.unravel_index(np.argsort(spectrum, axis=None)[-2:], spectrum.shape)))
    assert peaks == [(h // 2, w // 2 - 8), (h // 2, w // 2 + 8)]
    # Parseval: the orthonormal transform keeps the energy.
    total = (np.expm1(amp) ** 2).sum()
    assert np.isclose(total, ((luminance(np.repeat(stripes[..., None], 3, axis=2)) * 255) ** 2).sum())


def test_spectra_share_one_grey_scale():
    a = np.linspace(0, 4, 100).reshape(10, 10)
    low, high = to_grey_uint8([a, 2 * a])
    assert high.max() == 255 and low.max() == pytest.approx(128, abs=2)  # half as bright, not stretched


# --- insets ---------------------------------------------------------------------------------------------------
def test_auto_inset_finds_the_changed_place_and_boxes_stay_inside():
    before = np.zeros((120, 200, 3), np.uint8)
    after = before.copy()
    before[70:90, 150:170] = 255  # a bright blob the "method" removed
    cx, cy = auto_inset(before, after, 20)
    assert abs(cx - 160) <= 1 and abs(cy - 80) <= 1
    assert inset_box((5, 5), 48, 200, 120) == (0, 0, 48, 48)
    assert inset_box((199, 119), 48, 200, 120) == (152, 72, 200, 120)
    assert inset_box((10, 10), 48, 30, 20) == (0, 0, 20, 20)  # never larger than the crop


def test_panel_outlines_the_inset_and_magnifies_it_pixel_for_pixel():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 200, (100, 150, 3), dtype=np.uint8)
    box = (100, 60, 124, 84)  # lower right: the magnified view goes to the upper left corner
    panel = np.asarray(_panel(crop, box, 300))  # 2x
    plain = np.asarray(Image.fromarray(crop).resize((300, 200), Image.LANCZOS))
    assert panel.shape == (200, 300, 3)
    assert np.array_equal(panel[100:115, 150:195], plain[100:115, 150:195])  # untouched away from the inset
    assert tuple(panel[120, 200]) == (230, 40, 40)  # frame at the scaled box corner (100*2, 60*2)
    side = round(300 * 0.42)
    scale = side / 24
    for i, j in [(0, 0), (10, 17), (23, 23)]:  # nearest-neighbour copies of the crop's own pixels
        assert np.array_equal(panel[2 + int((i + 0.5) * scale), 2 + int((j + 0.5) * scale)], crop[60 + i, 100 + j])


def test_parsing_arguments(tmp_path):
    assert parse_box("10,20,300,200") == (10, 20, 300, 200)
    assert parse_named_folder(f"ours={tmp_path}") == ("ours", tmp_path)
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4", "-1,2,3,4"):
        with pytest.raises(DerainError, match="--crop"):
            parse_box(bad)
    with pytest.raises(DerainError, match="does not exist"):
        parse_named_folder(f"ours={tmp_path / 'missing'}")


# --- sheets from Rain100L ---------------------------------------------------------------------------------
@pytest.fixture
def rain100l(shared, tmp_path):
    """Two Rain100L inputs, a 'perfect' result folder (the clean images under the rainy names), masks."""
    root = shared("data/rain100l")
    inputs = [root / "rainy" / f"{n}.png" for n in NAMES]
    perfect = tmp_path / "perfect"
    masks = tmp_path / "masks"
    perfect.mkdir()
    masks.mkdir()
    for n in NAMES:
        clean = root / "clean" / f"no{n}.png"
        shutil.copy(clean, perfect / f"{n}.png")
        diff = np.abs(read_uint8_rgb(root / "rainy" / f"{n}.png").astype(int) - read_uint8_rgb(clean)).max(axis=2)
        Image.fromarray(((diff > 30) * 255).astype(np.uint8)).save(masks / f"{n}.png")
    return root, inputs, perfect, masks


def test_rows_hold_aligned_images_scored_like_the_matlab_reference(rain100l, shared):
    root, inputs, perfect, masks = rain100l
    job = CompareJob(inputs=[str(p) for p in inputs], results=[("perfect", perfect)], gt=root, masks=masks)
    rows = gather_rows(job)
    assert [r.name for r in rows] == ["rain-001.png", "rain-005.png"]
    assert [p.title for p in rows[0].panels] == ["input", "perfect", "ground truth", "rain mask"]
    reference = {line.split()[0]: line.split() for line in
                 shared("reference/rain100l_input_matlab_y.tsv").read_text().splitlines() if not line.startswith("#")}
    for row in rows:
        psnr, ssim = (float(v) for v in reference[row.name][2:4])
        assert row.panels[0].scores == f"{psnr:.2f} dB / {ssim:.4f}"  # the input's score, as MATLAB has it
        assert row.panels[1].scores == "inf dB / 1.0000"  # the clean image itself
        assert row.panels[3].spectrum is False  # masks get no FFT panel
        assert len({p.image.shape for p in row.panels}) == 1


def test_sheet_layout_panels_and_fft_rows(rain100l, tmp_path):
    root, inputs, perfect, masks = rain100l
    job = CompareJob(inputs=[str(p) for p in inputs], results=[("perfect", perfect)], gt=root / "clean",
                     masks=masks, panel_width=160, output=tmp_path / "sheet.png")
    rows = gather_rows(job)
    sheet = np.asarray(render_sheet(rows, job))
    assert sheet.shape[1] == PAD + 4 * (160 + PAD)
    # The first panel is the input with the inset where the perfect result removed the most rain.
    x0 = auto_inset(rows[0].panels[0].image, rows[0].panels[1].image, 48)
    expected = np.asarray(_panel(rows[0].panels[0].image, inset_box(x0, 48, 481, 321), 160))
    top = PAD + _line_height(_font(14))
    assert np.array_equal(sheet[top:top + expected.shape[0], PAD:PAD + 160], expected)
    # The inset sits on rain: the rainy input and the clean image differ a lot there.
    bx0, by0, bx1, by1 = inset_box(x0, 48, 481, 321)
    region = np.abs(rows[0].panels[0].image[by0:by1, bx0:bx1].astype(int)
                    - rows[0].panels[1].image[by0:by1, bx0:bx1]).mean()
    assert region > 2 * np.abs(rows[0].panels[0].image.astype(int) - rows[0].panels[1].image).mean()

    job.fft = True
    with_fft = np.asarray(render_sheet(rows, job))
    assert with_fft.shape[1] == sheet.shape[1]
    assert with_fft.shape[0] > sheet.shape[0] + 2 * expected.shape[0]  # a spectrum row under each image row
    # No spectrum under the mask column: that area stays white.
    spectrum_top = top + expected.shape[0] + _line_height(_font(12))
    mask_x = PAD + 3 * (160 + PAD)
    assert (with_fft[spectrum_top:spectrum_top + 50, mask_x:mask_x + 160] == 255).all()
    assert with_fft[spectrum_top:spectrum_top + 50, PAD:PAD + 160].std() > 10


def test_derain_compare_command_writes_the_sheet(rain100l, tmp_path, capsys):
    root, inputs, perfect, _ = rain100l
    out = tmp_path / "out" / "sheet.png"
    code = main(["compare", *map(str, inputs), "-r", f"perfect={perfect}", "-r", f"rainy={root / 'rainy'}",
                 "--gt", str(root), "--fft", "--crop", "100,50,240,160", "--inset", "200,100", "-o", str(out)])
    assert code == 0 and f"wrote comparison sheet {out}" in capsys.readouterr().out
    sheet = Image.open(out)
    assert sheet.format == "PNG" and sheet.width == PAD + 4 * (280 + PAD)
    # The crop is 240x160, shown 280 wide: each image row is 280 * 160/240 = 187 pixels high.
    assert sheet.height > 2 * 2 * 187


@pytest.mark.parametrize("case, message", [
    ("empty ground truth", "no images in ground-truth folder"),
    ("jpeg output", "written as PNG"),
    ("unknown protocol", "unknown protocol 'psnr-rgb'"),
    ("wrong size", "result 'small' for rain-001.png is 240x160, the input 481x321"),
    ("missing result", "result 'partial': no file in"),
])
def test_user_mistakes_are_one_line_errors(rain100l, tmp_path, capsys, case, message):
    root, inputs, perfect, _ = rain100l
    gt_empty, small, partial = tmp_path / "gt_empty", tmp_path / "small", tmp_path / "partial"
    for folder in (gt_empty, small, partial):
        folder.mkdir()
    for n in NAMES:
        cv2.imwrite(str(small / f"{n}.png"), np.zeros((160, 240, 3), np.uint8))
    shutil.copy(perfect / "rain-001.png", partial / "rain-001.png")
    extra = {"empty ground truth": ["--gt", str(gt_empty)], "jpeg output": ["-o", str(tmp_path / "sheet.jpg")],
             "unknown protocol": ["--protocol", "psnr-rgb"], "wrong size": ["-r", f"small={small}"],
             "missing result": ["-r", f"partial={partial}"]}[case]
    code = main(["compare", *map(str, inputs), "-r", f"perfect={perfect}", "-o", str(tmp_path / "s.png"), *extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("s.png")) and not list(tmp_path.glob("sheet.*"))


def test_compare_needs_a_result(rain100l, tmp_path):
    _, inputs, _, _ = rain100l
    with pytest.raises(DerainError, match="at least one --result"):
        compare(CompareJob(inputs=[str(inputs[0])], results=[], output=tmp_path / "s.png"))
