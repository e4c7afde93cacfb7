"""Image files in and out: EXIF orientation, 8/16-bit depth, metadata kept, atomic writes, input expansion.

Pillow decodes everything it can; 16-bit PNG/TIFF go through OpenCV because Pillow reduces 16-bit colour to
8 bits. Pixels are applied the EXIF orientation on read (so the model sees the photo upright) and written
with orientation 1, keeping the rest of the EXIF block and the ICC profile.
"""
from __future__ import annotations

import glob
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from derain.errors import DerainError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_ORIENTATION_TAG = 0x0112
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class LoadedImage:
    """An RGB image as float32 H x W x 3 in [0, 1], with what is needed to write a faithful result."""

    pixels: np.ndarray
    bit_depth: int  # 8 or 16
    exif: bytes | None
    icc_profile: bytes | None
    path: Path


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise DerainError(f"image not found: {path}")
    if not path.is_file():
        raise DerainError(f"not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()  # decode now, so a truncated file fails here and not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else f"corrupt or truncated ({exc})"
        raise DerainError(f"cannot read image {path}: {reason}") from None
    return image


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to an H x W x C array (the transform Pillow's exif_transpose applies)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, -1)[::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale as Pillow holds it
        grey = np.asarray(image, dtype=np.uint32).astype(np.uint16)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")  # palette, greyscale, CMYK; alpha is dropped
    return np.asarray(image)


def _read_sixteen_bit(path: Path) -> np.ndarray | None:
    """The file's pixels as uint16 RGB when it holds 16-bit colour, else None."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2)
    return np.ascontiguousarray(data[..., 2::-1])  # BGR(A) -> RGB


def _decode(path: str | Path) -> tuple[np.ndarray, bytes | None, bytes | None]:
    """(uint8 or uint16 H x W x 3 array upright, EXIF with orientation reset, ICC profile)."""
    path = Path(path)
    image = _open(path)
    exif_obj = image.getexif()
    orientation = int(exif_obj.get(_ORIENTATION_TAG, 1) or 1)
    exif = None
    if len(exif_obj):
        if _ORIENTATION_TAG in exif_obj:
            exif_obj[_ORIENTATION_TAG] = 1
        exif = exif_obj.tobytes()
    icc = image.info.get("icc_profile")
    array = _read_sixteen_bit(path) if path.suffix.lower() in _SIXTEEN_BIT_SUFFIXES else None
    if array is None:
        array = _to_rgb_array(image)
    return _orient(array, orientation), exif, icc


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file as float32 RGB in [0, 1], upright, remembering bit depth, EXIF and ICC profile."""
    array, exif, icc = _decode(path)
    depth = 16 if array.dtype == np.uint16 else 8
    pixels = array.astype(np.float32) / (65535.0 if depth == 16 else 255.0)
    return LoadedImage(pixels, depth, exif, icc, Path(path))


def read_uint8_rgb(path: str | Path) -> np.ndarray:
    """Exact 8-bit RGB pixels (H x W x 3 uint8), upright; 16-bit files are rounded to 8 bits."""
    array, _, _ = _decode(path)
    if array.dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    return np.ascontiguousarray(array)


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int = 8, exif: bytes | None = None,
                icc_profile: bytes | None = None) -> Path:
    """Write float RGB in [0, 1] (H x W x 3) to ``path`` atomically; format from the suffix.

    16-bit output is kept for PNG and TIFF; other formats are written at 8 bits. A failed write never leaves
    a partial file under the final name.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DerainError(f"cannot write {path}: unknown image format {path.suffix!r}")
    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        if bit_depth == 16 and suffix in _SIXTEEN_BIT_SUFFIXES:
            import cv2

            data = np.rint(pixels * 65535.0).astype(np.uint16)[..., ::-1]
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(data)):
                raise OSError("OpenCV could not encode the image")
        else:
            image = Image.fromarray(np.rint(pixels * 255.0).astype(np.uint8), "RGB")
            options: dict = {}
            if exif and suffix in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"):
                options["exif"] = exif
            if icc_profile:
                options["icc_profile"] = icc_profile
            if suffix in (".jpg", ".jpeg"):
                options.update(quality=95, subsampling=0)
            elif suffix == ".webp":
                options.update(lossless=True)
            image.save(tmp, format=Image.registered_extensions()[suffix], **options)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DerainError(f"cannot write {path}: {exc}") from None
    return path


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Image files named by ``items``: files, folders (their images, naturally sorted) and glob patterns."""
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            images = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                            key=natural_key)
            if not images:
                raise DerainError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            found.extend(images)
        elif path.is_file():
            found.append(path)
        elif _GLOB_CHARS.search(text):
            matches = sorted((Path(p) for p in glob.glob(text, recursive=True)
                              if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
            if not matches:
                raise DerainError(f"no images match {text!r}")
            found.extend(matches)
        else:
            raise DerainError(f"no such file or folder: {text}")
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p, None)
    return list(unique)
