"""``derain compare``: one PNG sheet that puts inputs, several methods' results and the ground truth side by side.

Each input is a row: the same region of every image (``--crop``, default all of it), a zoomed inset of the
same place in each panel (``--inset``, default where the first result changed its input most, i.e. where
the rain was), PSNR/SSIM under each panel when ground truth is given (computed on the whole image, under a
named protocol), an optional row of FFT log-amplitude panels (:mod:`derain.metrics.spectrum`) and an optional
column of Rain2Avoid rain masks. Results are matched to inputs by file name, never by order.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from derain.data.pairs import find_pairs, images_in, is_dataset, name_key
from derain.errors import DerainError
from derain.files.imageio import expand_inputs, read_uint8_rgb
from derain.files.outputs import refuse_existing
from derain.metrics import PROTOCOLS, describe, psnr_ssim
from derain.metrics.spectrum import log_amplitude, to_grey_uint8

INSET_COLOUR = (230, 40, 40)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (90, 90, 90)
PAD = 8
INSET_FRACTION = 0.42  # side of the zoomed inset relative to the panel width


@dataclass
class CompareJob:
    """Everything ``derain compare`` needs to know."""

    inputs: list[str]
    results: list[tuple[str, Path]]  # (column name, folder)
    output: Path = Path("compare.png")
    gt: Path | None = None
    protocol: str = "matlab-y"
    masks: Path | None = None
    fft: bool = False
    crop: tuple[int, int, int, int] | None = None  # x, y, width, height in image pixels
    inset: tuple[int, int] | None = None  # centre in image pixels; None: chosen automatically
    inset_size: int = 48
    panel_width: int = 280
    limit: int | None = None
    overwrite: bool = False  # replace an existing sheet


@dataclass
class Panel:
    """One cell of the sheet: a whole image, its column title and its score line."""

    title: str
    image: np.ndarray  # uint8 H x W x 3, the whole image
    scores: str = ""
    spectrum: bool = True  # whether it gets an FFT panel (masks do not)


@dataclass
class Row:
    """One input and everything shown beside it."""

    name: str
    panels: list[Panel] = field(default_factory=list)


# --- arguments ----------------------------------------------------------------------------------------------
def parse_named_folder(text: str) -> tuple[str, Path]:
    """``NAME=FOLDER`` (or just ``FOLDER``, named after itself) -> (name, folder), the folder checked."""
    name, sep, folder = text.partition("=")
    if not sep:
        name, folder = Path(text).name, text
    if not name or not folder:
        raise DerainError(f"--result expects NAME=FOLDER, got {text!r}")
    if not Path(folder).is_dir():
        raise DerainError(f"result folder {folder} (for {name!r}) does not exist")
    return name, Path(folder)


def _ints(text: str, count: int, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < 0:
        raise DerainError(f"{what} expects {count} non-negative integers separated by commas, got {text!r}")
    return values


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> (x, y, w, h)."""
    box = _ints(text, 4, "--crop X,Y,W,H")
    if box[2] == 0 or box[3] == 0:
        raise DerainError(f"--crop {text}: width and height must be positive")
    return box  # type: ignore[return-value]


def parse_point(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> (x, y)."""
    return _ints(text, 2, "--inset X,Y")  # type: ignore[return-value]


# --- finding the files -----------------------------------------------------------------------------------------
def match_in(image: Path, candidates: list[Path], folder: Path, what: str) -> Path:
    """The file of ``candidates`` named like ``image``: same stem, else same scene key (rain-001 ~ norain-1)."""
    for key in (lambda p: p.stem, lambda p: name_key(p.stem)):
        found = [c for c in candidates if key(c) == key(image)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DerainError(f"{what}: several files in {folder} match {image.name}: "
                              f"{', '.join(f.name for f in found[:4])}")
    raise DerainError(f"{what}: no file in {folder} matches {image.name}")


def ground_truth_files(gt: Path) -> list[Path]:
    """The ground-truth images of ``gt``: a folder of images, or a paired dataset's targets."""
    if not gt.is_dir():
        raise DerainError(f"ground-truth folder {gt} does not exist")
    if is_dataset(gt):
        return [pair.target for pair in find_pairs(gt)]
    files = images_in(gt)
    if not files:
        raise DerainError(f"no images in ground-truth folder {gt}")
    return files


def _folder_images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DerainError(f"{what} folder {folder} does not exist")
    files = images_in(folder)
    if not files:
        raise DerainError(f"no images in {what} folder {folder}")
    return files


def _score(pred: np.ndarray, gt: np.ndarray | None, protocol: str) -> str:
    if gt is None:
        return ""
    p, s = psnr_ssim(pred, gt, protocol)
    return f"{p:.2f} dB / {s:.4f}"


def gather_rows(job: CompareJob) -> list[Row]:
    """Read every image of the sheet, check they align, and score them against the ground truth."""
    if job.protocol not in PROTOCOLS:
        raise DerainError(f"unknown protocol {job.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not job.results:
        raise DerainError("compare needs at least one --result NAME=FOLDER")
    inputs = expand_inputs(job.inputs)[: job.limit]
    results = [(name, folder, _folder_images(folder, f"result {name!r}")) for name, folder in job.results]
    gts = ground_truth_files(job.gt) if job.gt else None
    masks = _folder_images(job.masks, "masks") if job.masks else None

    rows = []
    for path in inputs:
        image = read_uint8_rgb(path)
        # gts and masks are set exactly when their folders are (the folder checks only narrow the types)
        gt = (read_uint8_rgb(match_in(path, gts, job.gt, "ground truth"))
              if gts is not None and job.gt is not None else None)
        row = Row(path.name, [Panel("input", image, _score(image, gt, job.protocol) if gt is not None else "")])
        for name, folder, files in results:
            pred = read_uint8_rgb(match_in(path, files, folder, f"result {name!r}"))
            _check_same_size(pred, image, f"result {name!r} for {path.name}")
            row.panels.append(Panel(name, pred, _score(pred, gt, job.protocol)))
        if gt is not None:
            _check_same_size(gt, image, f"ground truth for {path.name}")
            row.panels.append(Panel("ground truth", gt))
        if masks is not None and job.masks is not None:
            mask = read_uint8_rgb(match_in(path, masks, job.masks, "masks"))
            _check_same_size(mask, image, f"mask for {path.name}")
            row.panels.append(Panel("rain mask", mask, spectrum=False))
        rows.append(row)
    return rows


def _check_same_size(image: np.ndarray, reference: np.ndarray, what: str) -> None:
    if image.shape != reference.shape:
        raise DerainError(f"{what} is {image.shape[1]}x{image.shape[0]}, the input "
                          f"{reference.shape[1]}x{reference.shape[0]}: panels must align")


# --- geometry -----------------------------------------------------------------------------------------------
def crop_box(shape: tuple[int, ...], crop: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of ``crop`` clipped to an image of ``shape``; the whole image when None."""
    h, w = shape[:2]
    if crop is None:
        return 0, 0, w, h
    x, y, cw, ch = crop
    x0, y0, x1, y1 = min(x, w - 1), min(y, h - 1), min(x + cw, w), min(y + ch, h)
    return x0, y0, x1, y1


def auto_inset(before: np.ndarray, after: np.ndarray, size: int) -> tuple[int, int]:
    """Centre (x, y) of the ``size`` square where ``after`` differs most from ``before`` (where the rain was)."""
    diff = np.abs(before.astype(np.float32) - after.astype(np.float32)).mean(axis=2)
    mean = cv2.blur(diff, (size, size), borderType=cv2.BORDER_CONSTANT)
    h, w = diff.shape
    half = size // 2
    # Only centres whose square lies inside the image, so the inset never shows padding.
    inner = mean[half:h - (size - half) + 1, half:w - (size - half) + 1]
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(x) + half, int(y) + half


def inset_box(centre: tuple[int, int], size: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the ``size`` square around ``centre``, shifted to lie inside the crop."""
    size = min(size, width, height)
    x0 = min(max(centre[0] - size // 2, 0), width - size)
    y0 = min(max(centre[1] - size // 2, 0), height - size)
    return x0, y0, x0 + size, y0 + size


# --- drawing ------------------------------------------------------------------------------------------------
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont  # what ImageFont.load_default returns


def _font(size: int = 13) -> Font:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _line_height(font: Font) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - box[1]) + 5


def _panel(crop: np.ndarray, box: tuple[int, int, int, int], panel_width: int) -> Image.Image:
    """The crop scaled to ``panel_width``, with the inset region outlined and magnified in a far corner."""
    h, w = crop.shape[:2]
    scale = panel_width / w
    panel = Image.fromarray(crop).resize((panel_width, max(1, round(h * scale))), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(panel)
    x0, y0, x1, y1 = box
    draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=INSET_COLOUR, width=2)
    side = max(16, min(round(panel_width * INSET_FRACTION), panel.height - 4))
    # Nearest-neighbour magnification keeps single-pixel streaks and artefacts visible as they are.
    zoomed = Image.fromarray(crop[y0:y1, x0:x1]).resize((side, side), Image.Resampling.NEAREST)
    # The corner opposite the inset region, so the magnified view never hides the place it shows.
    right = (x0 + x1) / 2 < w / 2
    bottom = (y0 + y1) / 2 < h / 2
    px = panel.width - side - 2 if right else 2
    py = panel.height - side - 2 if bottom else 2
    panel.paste(zoomed, (px, py))
    draw.rectangle([px - 2, py - 2, px + side + 1, py + side + 1], outline=INSET_COLOUR, width=2)
    return panel


def _spectrum_panels(crops: list[np.ndarray], panel_width: int) -> list[Image.Image]:
    greys = to_grey_uint8([log_amplitude(c) for c in crops])
    out = []
    for grey, crop in zip(greys, crops):
        h, w = crop.shape[:2]
        out.append(Image.fromarray(grey).convert("RGB").resize((panel_width, max(1, round(h * panel_width / w))),
                                                              Image.Resampling.LANCZOS))
    return out


def render_sheet(rows: list[Row], job: CompareJob) -> Image.Image:
    """Draw the sheet: one row per input (plus its spectra), column titles, score lines and a footer."""
    font, small = _font(14), _font(12)
    line, small_line = _line_height(font), _line_height(small)
    pw = job.panel_width
    columns = max(len(r.panels) for r in rows)
    width = PAD + columns * (pw + PAD)
    blocks: list[tuple[Image.Image, int]] = []  # (rendered row block, its height)
    for row in rows:
        x0, y0, x1, y1 = crop_box(row.panels[0].image.shape, job.crop)
        crops = [np.ascontiguousarray(p.image[y0:y1, x0:x1]) for p in row.panels]
        size = min(job.inset_size, x1 - x0, y1 - y0)
        if job.inset is not None:
            centre = (job.inset[0] - x0, job.inset[1] - y0)
        else:
            centre = auto_inset(crops[0], crops[1], size)
        box = inset_box(centre, size, x1 - x0, y1 - y0)
        panels = [_panel(c, box, pw) for c in crops]
        spectra = _spectrum_panels([c for c, p in zip(crops, row.panels) if p.spectrum], pw) if job.fft else []
        ph = panels[0].height
        height = line + ph + small_line + (ph + small_line if spectra else 0) + PAD
        block = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(block)
        for i, (panel, info) in enumerate(zip(panels, row.panels)):
            x = PAD + i * (pw + PAD)
            title = f"{row.name}: input" if i == 0 else info.title
            draw.text((x, 2), _fit(title, font, pw), fill=INK, font=font)
            block.paste(panel, (x, line))
            draw.text((x, line + ph + 2), info.scores, fill=MUTED, font=small)
        for i, spectrum in enumerate(spectra):
            x, y = PAD + i * (pw + PAD), line + ph + small_line
            block.paste(spectrum, (x, y))
            draw.text((x, y + ph + 2), "log |FFT| (orthonormal, centred)", fill=MUTED, font=small)
        blocks.append((block, height))
    footer = _footer(rows, job)
    wrapped = _wrap(footer, small, width - 2 * PAD)
    sheet = Image.new("RGB", (width, PAD + sum(h for _, h in blocks) + len(wrapped) * small_line + PAD), BACKGROUND)
    y = PAD
    for block, height in blocks:
        sheet.paste(block, (0, y))
        y += height
    draw = ImageDraw.Draw(sheet)
    for text in wrapped:
        draw.text((PAD, y), text, fill=MUTED, font=small)
        y += small_line
    return sheet


def _footer(rows: list[Row], job: CompareJob) -> str:
    where = f"region x,y,w,h = {','.join(map(str, job.crop))}; " if job.crop else ""
    inset = (f"inset: {job.inset_size} px square centred at {job.inset[0]},{job.inset[1]}" if job.inset
             else f"inset: the {job.inset_size} px square where '{rows[0].panels[1].title}' changed its input most")
    text = f"{where}{inset}, magnified with nearest-neighbour pixels (red frames)."
    if job.gt:
        text += f" Scores: PSNR / SSIM of the whole image, protocol {job.protocol}: {describe(job.protocol)}."
    return text


def _fit(text: str, font: Font, width: int) -> str:
    while text and font.getlength(text) > width:
        text = text[:-4] + "..." if len(text) > 4 else ""
    return text


def _wrap(text: str, font: Font, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and font.getlength(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + ([current] if current else [])


def compare(job: CompareJob) -> Path:
    """Build the sheet for ``job`` and write it as PNG; returns its path."""
    if job.panel_width < 64:
        raise DerainError("--panel-width must be at least 64 pixels")
    if job.inset_size < 4:
        raise DerainError("--inset-size must be at least 4 pixels")
    output = job.output
    if output.suffix.lower() != ".png":
        raise DerainError(f"the sheet is written as PNG: name it *.png, not {output.name}")
    refuse_existing([output], job.overwrite)
    rows = gather_rows(job)
    if not rows:
        raise DerainError("no input images to compare")
    sheet = render_sheet(rows, job)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(output, format="PNG", optimize=True)
    except OSError as exc:
        raise DerainError(f"cannot write {output}: {exc}") from None
    return output


def main(args: argparse.Namespace) -> int:
    """``derain compare``: write a comparison sheet."""
    job = CompareJob(inputs=args.inputs, results=[parse_named_folder(r) for r in args.result],
                     output=Path(args.output), gt=Path(args.gt) if args.gt else None, protocol=args.protocol,
                     masks=Path(args.masks) if args.masks else None, fft=args.fft,
                     crop=parse_box(args.crop) if args.crop else None,
                     inset=parse_point(args.inset) if args.inset else None, inset_size=args.inset_size,
                     panel_width=args.panel_width, limit=args.limit, overwrite=args.overwrite)
    path = compare(job)
    print(f"derain: wrote comparison sheet {path}")
    return 0
