"""Uploaded photos: checking them at the door, decoding them for the model, encoding results, all in memory.

An upload is fully decoded once when it arrives, so that a file that is not an image, is truncated or is
too large gets a clear HTTP error at once; only its compressed bytes wait in the queue. The model's decoder
(:func:`derain.files.imageio.read_image`: EXIF orientation, 16-bit, alpha) reads the bytes; nothing is written
anywhere.

An upload arrives either as the file's raw bytes (the page, ``curl --data-binary @photo.jpg``) or as a
``multipart/form-data`` form (``curl -F file=@photo.jpg``, HTML forms, ``requests.post(files=...)``).
Results are kept as PNG and re-encoded on request as JPEG or WebP (:func:`encode_result`).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

import numpy as np
from PIL import Image, UnidentifiedImageError

from derain.errors import DerainError
from derain.files.imageio import JpegSettings, LoadedImage, check_png_complete, read_image

# Suffix that makes read_image take the right path (16-bit PNG/TIFF go through OpenCV).
_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}


class UploadError(DerainError):
    """An upload the server refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadInfo:
    """What the door check learnt about an upload."""

    width: int
    height: int
    format: str

    @property
    def suffix(self) -> str:
        return _SUFFIXES.get(self.format, ".img")


def inspect_upload(data: bytes, max_pixels: int) -> UploadInfo:
    """Check that ``data`` is a whole image of at most ``max_pixels``; raise :class:`UploadError` if not."""
    if not data:
        raise UploadError(400, "the upload is empty: send the image file's bytes as the request body")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UploadError(415, "not an image (or a format this server cannot read); "
                                   "send a PNG, JPEG, WebP, TIFF or BMP photo") from None
        except Image.DecompressionBombError:
            raise UploadError(413, "the image has too many pixels") from None
        width, height = image.size
        # The size is in the header: refuse huge images before spending time and memory decoding them.
        if width * height > max_pixels:
            raise UploadError(413, f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                                   f"this server accepts at most {max_pixels / 1e6:g} megapixels "
                                   "(derain serve --max-megapixels)")
        frames = getattr(image, "n_frames", 1)  # only the formats that can animate have it
        if frames > 1:
            raise UploadError(415, f"the image is an animation ({frames} frames); send a still photo")
        try:
            image.load()  # decode everything now: a truncated file fails here, not in the queue
            if image.format == "PNG":
                check_png_complete(data, "upload")  # Pillow pads a PNG whose data ends early with black rows
        except DerainError as exc:
            raise UploadError(422, str(exc).replace("cannot read image upload: ", "the image is ")) from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise UploadError(422, f"the image is corrupt or truncated ({exc})") from None
    return UploadInfo(width, height, image.format or "")


@dataclass(frozen=True)
class FormUpload:
    """The file of a multipart form and its other (text) fields."""

    data: bytes
    filename: str | None
    fields: dict[str, str]


def parse_form(body: bytes, content_type: str) -> FormUpload:
    """The one file and the text fields of a ``multipart/form-data`` body; :class:`UploadError` if it has no
    file, more than one, or is not a well-formed form.

    Written here because the standard library's ``cgi`` module is gone; the parts are split on the boundary
    and each part's headers are parsed by :mod:`email`, which handles quoting and RFC 2231 file names.
    """
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise UploadError(400, "multipart/form-data without a boundary: send the file as -F file=@photo.jpg")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise UploadError(400, "the form upload is cut off or malformed (its closing boundary is missing)")
    files: list[tuple[str | None, bytes]] = []
    fields: dict[str, str] = {}
    for piece in pieces[1:-1]:
        _, _, piece = piece.partition(b"\r\n")  # the rest of the boundary line
        head, sep, content = piece.partition(b"\r\n\r\n")
        if not sep:
            raise UploadError(400, "the form upload is malformed (a part has no blank line after its headers)")
        part = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if filename is not None or name == "file":
            files.append((filename, content))
        elif isinstance(name, str):
            fields[name] = content.decode("utf-8", errors="replace")
    if not files:
        raise UploadError(400, "the form has no file: send the photo as a file field, e.g. curl -F file=@photo.jpg")
    if len(files) > 1:
        raise UploadError(400, f"the form has {len(files)} files; send one photo per request")
    filename, data = files[0]
    return FormUpload(data, filename, fields)


def decode_upload(data: bytes, info: UploadInfo) -> LoadedImage:
    """The upload as float32 RGB, upright, with bit depth, EXIF and ICC profile (see ``read_image``)."""
    return read_image(data)


def encode_png(pixels: np.ndarray, bit_depth: int = 8, exif: bytes | None = None,
               icc_profile: bytes | None = None, alpha: np.ndarray | None = None) -> bytes:
    """PNG bytes of float RGB in [0, 1] (H x W x 3), 16-bit when the input was, keeping EXIF, ICC and the
    alpha channel (H x W in [0, 1]) of a transparent upload."""
    pixels = np.clip(pixels, 0.0, 1.0)
    channels = [pixels] if alpha is None else [pixels, np.clip(alpha, 0.0, 1.0)[..., None]]
    pixels = np.concatenate(channels, axis=2)
    if bit_depth == 16:
        import cv2

        data = np.rint(pixels * 65535.0).astype(np.uint16)
        data = data[..., [2, 1, 0, 3]] if alpha is not None else data[..., ::-1]
        ok, buffer = cv2.imencode(".png", np.ascontiguousarray(data))
        if not ok:
            raise DerainError("could not encode the result as a 16-bit PNG")
        return buffer.tobytes()
    options: dict = {"compress_level": 3}  # much faster than the default 6 on 12 MP photos, a little larger
    if exif:
        options["exif"] = exif
    if icc_profile:
        options["icc_profile"] = icc_profile
    out = io.BytesIO()
    mode = "RGB" if alpha is None else "RGBA"
    Image.fromarray(np.rint(pixels * 255.0).astype(np.uint8), mode).save(out, format="PNG", **options)
    return out.getvalue()


# Result formats: the name a request may use -> (Pillow format, MIME type, file suffix).
RESULT_FORMATS = {"png": ("PNG", "image/png", ".png"), "jpeg": ("JPEG", "image/jpeg", ".jpg"),
                  "jpg": ("JPEG", "image/jpeg", ".jpg"), "webp": ("WEBP", "image/webp", ".webp")}
# Where the input's own JPEG settings are unknown: a quality that keeps rain-free detail at a fraction of the
# PNG's size, with the 4:2:0 chroma of cameras and the web.
DEFAULT_QUALITY = {"JPEG": 90, "WEBP": 90}


def encode_result(png: bytes, fmt: str, quality: int | None = None, jpeg: JpegSettings | None = None) -> bytes:
    """The result ``png`` re-encoded as ``fmt`` (a :data:`RESULT_FORMATS` key), keeping EXIF and ICC.

    JPEG without a ``quality`` reuses the upload's own quantization tables and chroma subsampling when it was
    a JPEG (``jpeg``: its :class:`derain.files.imageio.JpegSettings`), so the result is about the size of the photo
    sent; otherwise ``quality`` (default :data:`DEFAULT_QUALITY`). 16-bit results become 8-bit.
    """
    kind = RESULT_FORMATS[fmt][0]
    if kind == "PNG":
        return png
    image = Image.open(io.BytesIO(png))
    options: dict = {key: image.info[key] for key in ("exif", "icc_profile") if image.info.get(key)}
    # WebP keeps the transparency of a transparent upload; JPEG has none
    rgb = image.convert("RGBA" if kind == "WEBP" and "A" in image.mode else "RGB")
    if kind == "JPEG" and quality is None and jpeg is not None and jpeg.qtables:
        options.update(qtables=jpeg.qtables, subsampling=jpeg.subsampling)
    elif kind == "JPEG":
        options.update(quality=quality or DEFAULT_QUALITY[kind], subsampling=2)
    else:
        options.update(quality=quality or DEFAULT_QUALITY[kind], method=4)
    out = io.BytesIO()
    rgb.save(out, format=kind, **options)
    return out.getvalue()


def encode_preview(pixels: np.ndarray) -> bytes:
    """JPEG bytes of the upright input, for the page's "before" view (browsers cannot show every format)."""
    out = io.BytesIO()
    Image.fromarray(np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB").save(
        out, format="JPEG", quality=95, subsampling=0)
    return out.getvalue()
