"""Image files in and out: EXIF orientation, 8/16-bit depth, alpha, metadata kept, atomic writes, inputs.

Pillow decodes everything it can; 16-bit PNG/TIFF go through OpenCV because Pillow reduces 16-bit colour to
8 bits. Pixels are applied the EXIF orientation on read (so the model sees the photo upright) and written
with orientation 1, keeping the rest of the EXIF block, the ICC profile, the alpha channel and, for JPEG, the
input's own quantization tables and chroma subsampling (so a derained JPEG is about the size of its input).
A file is refused, with one line, when it has too many pixels or its image data ends early (Pillow fills the
missing rows of such a PNG with black without a word).
"""
from __future__ import annotations

import glob
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from derain.errors import DerainError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_ORIENTATION_TAG = 0x0112
_GLOB_CHARS = re.compile(r"[*?\[]")
_ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # formats that keep an alpha channel
DEFAULT_MAX_PIXELS = 180_000_000  # about Pillow's decompression-bomb limit (2 x 89.5 MP)
_PROVENANCE_KEY = "derain"  # PNG text key / start of the EXIF UserComment that records what made a result
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


@dataclass
class LoadedImage:
    """An RGB image as float32 H x W x 3 in [0, 1], with what is needed to write a faithful result."""

    pixels: np.ndarray
    bit_depth: int  # 8 or 16
    exif: bytes | None
    icc_profile: bytes | None
    path: Path
    alpha: np.ndarray | None = None  # H x W float32 in [0, 1], upright, when the file has transparency
    jpeg: "JpegSettings | None" = None  # the input's JPEG encoding, reused for JPEG output


@dataclass(frozen=True)
class JpegSettings:
    """How a JPEG was encoded: Pillow's quantization tables and chroma subsampling (0: 4:4:4, 1: 4:2:2,
    2: 4:2:0)."""

    qtables: dict = field(hash=False)
    subsampling: int


@dataclass(frozen=True)
class Encoding:
    """Choices for writing: ``quality`` (JPEG/WebP 1-100; None: the input's JPEG tables, else 95 for JPEG and
    lossless WebP), ``subsampling`` (JPEG chroma: "444", "422", "420"; None: the input's, else 4:4:4) and a
    ``provenance`` note recorded in the file (what made it: see :func:`read_provenance`)."""

    quality: int | None = None
    subsampling: str | None = None
    provenance: str | None = None


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _label(source: Path | bytes) -> str:
    return "<stdin>" if isinstance(source, bytes) else str(source)


def _open(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The decoded image of ``source`` (a path or a file's bytes), refusing bombs and truncated data."""
    if not isinstance(source, bytes):
        if not source.exists():
            raise DerainError(f"image not found: {source}")
        if not source.is_file():
            raise DerainError(f"not a file: {source}")
    label = _label(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            width, height = image.size
            if width * height > max_pixels:
                raise DerainError(f"cannot read image {label}: too many pixels ({width}x{height}, "
                                  f"{width * height / 1e6:.1f} megapixels; limit {max_pixels / 1e6:g}, raise it "
                                  "with --max-pixels)")
            if width * height == 0:
                raise DerainError(f"cannot read image {label}: it has no pixels ({width}x{height})")
            bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked above, by our limit
            try:
                image.load()  # decode now, so a truncated file fails here and not later
            finally:
                Image.MAX_IMAGE_PIXELS = bomb_limit
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else f"corrupt or truncated ({exc})"
        raise DerainError(f"cannot read image {label}: {reason}") from None
    if image.format == "PNG":
        check_png_complete(source if isinstance(source, bytes) else source.read_bytes(), label)
    return image


def check_png_complete(data: bytes, label: str) -> None:
    """Raise when the PNG's image data holds fewer rows than its header declares (Pillow pads with black)."""
    try:
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        idat = bytearray()
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind == b"IDAT":
                idat += data[pos + 8:pos + 8 + length]
            elif kind == b"IEND":
                break
            pos += 12 + length
        decoded = len(zlib.decompressobj().decompress(bytes(idat)))
    except (struct.error, zlib.error) as exc:
        raise DerainError(f"cannot read image {label}: corrupt or truncated ({exc})") from None
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    row_bits = channels * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            expected += h * (1 + (w * row_bits + 7) // 8)
    if decoded < expected:
        rows = decoded * height // max(expected, 1)
        raise DerainError(f"cannot read image {label}: truncated (its data ends after about {rows} of "
                          f"{height} rows)")


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def frame_count(path: Path) -> int:
    """How many frames the image file holds (animated GIF, WebP or PNG: more than 1); 1 if unreadable."""
    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to an H x W x C array (the transform Pillow's exif_transpose applies)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, -1)[::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency (an alpha channel or a transparent palette entry)."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _to_rgb_array(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H x W x 3 RGB array, H x W alpha of the same dtype or None)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale as Pillow holds it
        grey = np.asarray(image, dtype=np.uint32).astype(np.uint16)
        return np.repeat(grey[..., None], 3, axis=2), None
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    if image.mode != "RGB":
        image = image.convert("RGB")  # palette, greyscale, CMYK
    return np.asarray(image), None


def _read_sixteen_bit(source: Path | bytes) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The file's pixels as uint16 (RGB, alpha or None) when it holds 16-bit colour, else None."""
    import cv2

    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    if isinstance(source, bytes):
        data = cv2.imdecode(np.frombuffer(source, np.uint8), flags)
    else:
        data = cv2.imread(str(source), flags)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2), None
    alpha = np.ascontiguousarray(data[..., 3]) if data.shape[2] == 4 else None
    return np.ascontiguousarray(data[..., 2::-1]), alpha  # BGR(A) -> RGB


@dataclass
class _Decoded:
    array: np.ndarray  # uint8 or uint16 H x W x 3, upright
    alpha: np.ndarray | None
    exif: bytes | None  # orientation reset to 1
    icc: bytes | None
    jpeg: JpegSettings | None


def _jpeg_settings(image: Image.Image) -> JpegSettings | None:
    if image.format != "JPEG" or not getattr(image, "quantization", None):
        return None
    from PIL import JpegImagePlugin

    sampling = JpegImagePlugin.get_sampling(image)
    quantization = image.quantization  # type: ignore[attr-defined]  # a JpegImageFile attribute (checked above)
    return JpegSettings(dict(quantization), sampling if sampling >= 0 else 0)


def _decode(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> _Decoded:
    """The pixels of ``source`` upright, with its alpha, EXIF (orientation reset), ICC profile and JPEG tables."""
    if not isinstance(source, bytes):
        source = Path(source)
    image = _open(source, max_pixels)
    exif_obj = image.getexif()
    orientation = int(exif_obj.get(_ORIENTATION_TAG, 1) or 1)
    exif = None
    if len(exif_obj):
        if _ORIENTATION_TAG in exif_obj:
            exif_obj[_ORIENTATION_TAG] = 1
        exif = exif_obj.tobytes()
    icc = image.info.get("icc_profile")
    sixteen = image.format in ("PNG", "TIFF") and (image.mode.startswith("I") or image.mode in ("RGB", "RGBA"))
    decoded = _read_sixteen_bit(source) if sixteen else None
    array, alpha = decoded if decoded is not None else _to_rgb_array(image)
    if alpha is not None and alpha.min() == alpha.max() == np.iinfo(alpha.dtype).max:
        alpha = None  # an alpha channel that is opaque everywhere says nothing
    if alpha is not None:
        alpha = _orient(alpha[..., None], orientation)[..., 0]
    return _Decoded(_orient(array, orientation), alpha, exif, icc, _jpeg_settings(image))


def read_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file (or a file's bytes) as float32 RGB in [0, 1], upright, remembering bit depth,
    alpha, EXIF, ICC profile and JPEG encoding."""
    decoded = _decode(source, max_pixels)
    depth = 16 if decoded.array.dtype == np.uint16 else 8
    scale = 65535.0 if depth == 16 else 255.0
    alpha = None if decoded.alpha is None else decoded.alpha.astype(np.float32) / scale
    return LoadedImage(decoded.array.astype(np.float32) / scale, depth, decoded.exif, decoded.icc,
                       Path("-") if isinstance(source, bytes) else Path(source), alpha, decoded.jpeg)


def read_uint8_rgb(path: str | Path) -> np.ndarray:
    """Exact 8-bit RGB pixels (H x W x 3 uint8), upright; 16-bit files are rounded to 8 bits."""
    array = _decode(path).array
    if array.dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    return np.ascontiguousarray(array)


FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}
_SUBSAMPLING = {"444": 0, "422": 1, "420": 2}
SUBSAMPLINGS = tuple(_SUBSAMPLING)  # JPEG chroma subsampling a user may ask for
# The formats a user may ask results to be written in (--format); the suffix is the format.
OUTPUT_FORMATS = ("png", "jpg", "webp", "tif")


def _with_provenance(exif: bytes | None, note: str) -> bytes:
    """``exif`` with ``note`` as its UserComment (ASCII, as the EXIF standard prefixes it)."""
    block = Image.Exif()
    if exif:
        block.load(exif)
    ifd = block.get_ifd(_EXIF_IFD)
    ifd[_USER_COMMENT] = b"ASCII\0\0\0" + note.encode("ascii", "replace")
    return block.tobytes()


def encode_image(pixels: np.ndarray, fmt: str, bit_depth: int = 8, exif: bytes | None = None,
                 icc_profile: bytes | None = None, alpha: np.ndarray | None = None,
                 encoding: Encoding = Encoding(), jpeg: JpegSettings | None = None) -> bytes:
    """The bytes of an image file in format ``fmt`` (a suffix such as ``.png``) from float RGB in [0, 1].

    16-bit output is kept for PNG and TIFF; alpha for PNG, WebP and TIFF. JPEG reuses ``jpeg`` (the input's
    tables and subsampling) unless ``encoding`` names a quality or subsampling.
    """
    fmt = fmt.lower()
    pixels = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    keep_alpha = alpha is not None and fmt in _ALPHA_SUFFIXES
    if keep_alpha:
        assert alpha is not None  # keep_alpha says so
        pixels = np.concatenate([pixels, np.clip(alpha, 0.0, 1.0)[..., None].astype(np.float32)], axis=2)
    if bit_depth == 16 and fmt in _SIXTEEN_BIT_SUFFIXES:
        import cv2

        data = np.rint(pixels * 65535.0).astype(np.uint16)
        data = data[..., [2, 1, 0, 3]] if keep_alpha else data[..., ::-1]
        params = [cv2.IMWRITE_TIFF_COMPRESSION, 5] if fmt in (".tif", ".tiff") else []  # LZW
        ok, buffer = cv2.imencode(fmt, np.ascontiguousarray(data), params)
        if not ok:
            raise OSError("OpenCV could not encode the image")
        if fmt == ".png" and encoding.provenance:
            return _png_with_text(buffer.tobytes(), _PROVENANCE_KEY, encoding.provenance)
        return buffer.tobytes()
    image = Image.fromarray(np.rint(pixels * 255.0).astype(np.uint8), "RGBA" if keep_alpha else "RGB")
    options: dict = {}
    if encoding.provenance and fmt != ".png":
        exif = _with_provenance(exif, f"{_PROVENANCE_KEY}: {encoding.provenance}")
    if exif and fmt in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"):
        options["exif"] = exif
    if icc_profile:
        options["icc_profile"] = icc_profile
    if fmt in (".jpg", ".jpeg"):
        options.update(_jpeg_options(encoding, jpeg))
    elif fmt == ".webp":
        options.update(lossless=True) if encoding.quality is None else options.update(quality=encoding.quality)
    elif fmt in (".tif", ".tiff"):
        options.update(compression="tiff_deflate")
    elif fmt == ".png" and encoding.provenance:
        info = PngImagePlugin.PngInfo()
        info.add_text(_PROVENANCE_KEY, encoding.provenance)
        options["pnginfo"] = info
    out = io.BytesIO()
    image.save(out, format=FORMATS[fmt], **options)
    return out.getvalue()


def _png_with_text(data: bytes, key: str, text: str) -> bytes:
    """``data`` (a PNG file) with a tEXt chunk ``key``: ``text`` before its end."""
    payload = key.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def _jpeg_options(encoding: Encoding, jpeg: JpegSettings | None) -> dict:
    """Pillow's JPEG options: the input's own tables where known and nothing else was asked, else quality."""
    subsampling = _SUBSAMPLING[encoding.subsampling] if encoding.subsampling else None
    if encoding.quality is None and jpeg is not None:
        return {"qtables": jpeg.qtables, "subsampling": jpeg.subsampling if subsampling is None else subsampling}
    return {"quality": 95 if encoding.quality is None else encoding.quality,
            "subsampling": 0 if subsampling is None else subsampling}


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int = 8, exif: bytes | None = None,
                icc_profile: bytes | None = None, alpha: np.ndarray | None = None,
                encoding: Encoding = Encoding(), jpeg: JpegSettings | None = None) -> Path:
    """Write float RGB in [0, 1] (H x W x 3) to ``path`` atomically; format from the suffix (see
    :func:`encode_image`). A failed write never leaves a partial file under the final name."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DerainError(f"cannot write {path}: unknown image format {path.suffix!r}")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        data = encode_image(pixels, suffix, bit_depth, exif, icc_profile, alpha, encoding, jpeg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DerainError(f"cannot write {path}: {exc}") from None
    return path


def read_provenance(path: Path) -> str | None:
    """The note :func:`write_image` recorded in ``path`` (which model and weights made it), or None."""
    try:
        with Image.open(path) as image:
            # .text reads the chunks after the image data too (where OpenCV-written files get theirs)
            text = image.text.get(_PROVENANCE_KEY) if image.format == "PNG" else None
            if text is None:
                comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
                if isinstance(comment, bytes):
                    comment = comment[8:].decode("ascii", "replace") if comment[:8] == b"ASCII\0\0\0" else None
                prefix = f"{_PROVENANCE_KEY}: "
                text = comment[len(prefix):] if isinstance(comment, str) and comment.startswith(prefix) else None
            return text
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def expand_inputs(items: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Image files named by ``items``: files, folders (their images, naturally sorted) and glob patterns."""
    return [path for path, _ in expand_input_tree(items, recursive)]


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    images = [p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
              and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(images, key=lambda p: natural_key(p.relative_to(folder)))


def expand_input_tree(items: Iterable[str | Path], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(image file, its name relative to where it was found) for every image named by ``items``.

    A folder gives its images (with ``recursive``, those of its sub-folders too, named by their path below the
    folder, so outputs can mirror the tree; hidden files and folders are left out); a file or a glob match is
    named by its file name.
    """
    found: list[tuple[Path, Path]] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            images = _folder_images(path, recursive)
            if not images:
                where = "folder or its sub-folders" if recursive else "folder"
                raise DerainError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where} {path}")
            found.extend((p, p.relative_to(path)) for p in images)
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif _GLOB_CHARS.search(text):
            matches = sorted((Path(p) for p in glob.glob(text, recursive=True)
                              if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
            if not matches:
                raise DerainError(f"no images match {text!r}")
            found.extend((p, Path(p.name)) for p in matches)
        else:
            raise DerainError(f"no such file or folder: {text}")
    unique: dict[Path, Path] = {}
    for p, name in found:
        unique.setdefault(p, name)
    return list(unique.items())
