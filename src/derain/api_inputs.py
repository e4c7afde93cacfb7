"""What the Python API accepts as an image, and how each kind comes back.

:func:`restore_any` turns one input into float32 H x W x 3 RGB images in [0, 1], hands each to a restore
function and gives the results back in the input's own kind:

- a numpy array (or anything ``np.asarray`` takes, e.g. a CPU tensor): H x W x 3, or N x H x W x 3 for a batch;
  uint8 comes back uint8, floats come back float32 on the scale they came in. Floats must be in [0, 1] unless
  ``value_range`` says otherwise: 0..255 floats are the commonest mistake, and a network shown them returns
  an all-white image without a word;
- a PIL image of any mode: a PIL image, in the input's mode where that is sensible (RGBA keeps its alpha, L
  stays L, 16-bit greyscale stays 16-bit; palette, CMYK and other colour spaces come back RGB);
- a path (``str`` or ``os.PathLike``): a PIL image (RGB, or RGBA where the file has transparency), upright;
- the bytes of an image file: the bytes of a file in the same format, with its bit depth, EXIF, colour
  profile, alpha and JPEG tables (as ``derain run`` writes it).

Lists are the caller's business (:class:`derain.session.Session` maps over them).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from derain.errors import DerainError

Restore = Callable[[np.ndarray], np.ndarray]  # float32 H x W x 3 in [0, 1] -> the same

ACCEPTED = "a numpy array (HxWx3 or NxHxWx3), a PIL image, a path, the bytes of an image file, or a list of these"
# Floats this far outside their range are taken as rounding, not as another scale, and clipped.
_RANGE_TOLERANCE = 1e-3
_FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tiff", "BMP": ".bmp"}
# PIL modes given back as they came, and the mode each is restored through.
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")
_AS_RGB = {"P": "RGB", "PA": "RGBA", "RGBa": "RGBA", "La": "LA", "1": "L", "RGBX": "RGB"}


def restore_any(image: Any, restore: Restore, value_range: float | tuple[float, float] | None = None) -> Any:
    """``image`` restored by ``restore``, in the kind it came as (see the module docstring)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _restore_bytes(bytes(image), restore, value_range)
    if isinstance(image, (str, os.PathLike)):
        return _restore_path(Path(image), restore, value_range)
    from PIL import Image

    if isinstance(image, Image.Image):
        return _restore_pil(image, restore, value_range)
    if isinstance(image, (list, tuple, dict, set)) or not hasattr(image, "__array__"):  # arrays, CPU tensors
        raise DerainError(f"cannot derain an object of type {type(image).__name__}: expected {ACCEPTED}")
    return _restore_array(np.asarray(image), restore, value_range)


# --- arrays ------------------------------------------------------------------------------------------------------
def _restore_array(pixels: np.ndarray, restore: Restore, value_range: Any) -> np.ndarray:
    batch = pixels.ndim == 4
    if pixels.ndim not in (3, 4) or pixels.shape[-1] != 3:
        raise DerainError(f"expected an HxWx3 RGB image (or an NxHxWx3 batch), got an array of shape "
                          f"{pixels.shape}; pass greyscale or RGBA images as PIL images")
    if pixels.shape[-3] == 0 or pixels.shape[-2] == 0:
        raise DerainError(f"the image has no pixels ({pixels.shape[-2]}x{pixels.shape[-3]})")
    to_unit, from_unit = _scaling(pixels, value_range)
    if batch and len(pixels) == 0:
        return from_unit(np.zeros(pixels.shape, np.float32))
    unit = to_unit(pixels)
    out = np.stack([restore(one) for one in unit]) if batch else restore(unit)
    return from_unit(out)


def _scaling(pixels: np.ndarray, value_range: Any) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                             Callable[[np.ndarray], np.ndarray]]:
    """(input -> float32 in [0, 1], float32 in [0, 1] -> output of the input's dtype and scale)."""
    if pixels.dtype == np.uint8:
        if value_range is not None:
            raise DerainError("value_range is for float images; uint8 images are always 0..255")
        return (lambda a: a.astype(np.float32) / 255.0,
                lambda u: np.rint(np.clip(u, 0.0, 1.0) * 255.0).astype(np.uint8))
    if not np.issubdtype(pixels.dtype, np.floating):
        raise DerainError(f"expected uint8 or floats in [0, 1], got {pixels.dtype} values")
    if not np.isfinite(pixels).all():
        raise DerainError("the image holds NaN or infinite values")
    low, high = _parse_range(value_range)
    if pixels.size:
        check_float_range(float(pixels.min()), float(pixels.max()), value_range)
    span = high - low
    return (lambda a: np.clip((a.astype(np.float32) - low) / span, 0.0, 1.0).astype(np.float32),
            lambda u: (u * span + low).astype(np.float32) if value_range is not None else u.astype(np.float32))


def _parse_range(value_range: Any) -> tuple[float, float]:
    """``value_range`` as (low, high): None is (0, 1), a number ``v`` is (0, v), a pair is itself."""
    if value_range is None:
        return 0.0, 1.0
    try:
        low, high = (0.0, float(value_range)) if np.ndim(value_range) == 0 else map(float, value_range)
    except (TypeError, ValueError):
        raise DerainError(f"value_range must be a number (such as 255) or a (low, high) pair, "
                          f"not {value_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise DerainError(f"value_range must have low < high, not {value_range!r}")
    return low, high


def check_float_range(lowest: float, highest: float, value_range: Any = None) -> None:
    """Refuse float pixel values outside [0, 1] (or ``value_range``), saying how to pass them instead."""
    low, high = _parse_range(value_range)
    slack = _RANGE_TOLERANCE * (high - low)
    if lowest >= low - slack and highest <= high + slack:
        return
    span = f"[{lowest:g}, {highest:g}]"
    if value_range is None:
        raise DerainError(f"float image values span {span}, but float images must be in [0, 1]: divide by 255, "
                          "or pass value_range=255 for 0..255 floats (value_range=(-1, 1) for [-1, 1]), "
                          "or pass a uint8 array")
    raise DerainError(f"image values span {span}, outside value_range=({low:g}, {high:g})")


# --- PIL images ----------------------------------------------------------------------------------------------
def _restore_pil(image: Any, restore: Restore, value_range: Any) -> Any:
    from PIL import Image

    width, height = image.size
    if width == 0 or height == 0:
        raise DerainError(f"the image has no pixels ({width}x{height})")
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1:
        raise DerainError(f"the image holds {frames} frames (an animation); derain each frame "
                          "(PIL.ImageSequence.Iterator) and reassemble them")
    mode = image.mode
    if mode in ("F", "I"):  # one channel of floats or 32-bit integers: the float rule, on the declared scale
        if mode == "I" and value_range is None:
            value_range = 65535  # how Pillow holds 16-bit greyscale from older decoders
        grey = np.asarray(image, dtype=np.float32)
        rgb = _restore_array(np.repeat(grey[..., None], 3, axis=2), restore, value_range)
        grey = _luma(rgb)
        out = Image.fromarray(grey.astype(np.float32) if mode == "F" else np.rint(grey).astype(np.int32))
        return _with_info(out, image)
    if value_range is not None:
        raise DerainError(f"value_range is for float images; a PIL image of mode {mode} has its own range")
    if mode in _SIXTEEN_BIT_GREY:
        grey = np.asarray(image).astype(np.float32) / 65535.0
        rgb = restore(np.repeat(grey[..., None], 3, axis=2))
        out = np.rint(np.clip(_luma(rgb), 0.0, 1.0) * 65535.0).astype(np.uint16)
        return _with_info(Image.fromarray(out), image)
    if mode in _AS_RGB:
        mode = "RGBA" if mode == "P" and "transparency" in image.info else _AS_RGB[mode]
        image_as = image.convert(mode)
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        mode, image_as = "RGB", image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: given back as RGB
    else:
        image_as = image
    alpha = image_as.getchannel("A") if mode in ("RGBA", "LA") else None
    rgb = np.asarray(image_as.convert("RGB"))
    out = Image.fromarray(_restore_array(rgb, restore, None))
    if mode in ("L", "LA"):
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(alpha)
    return _with_info(out, image)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Greyscale of an RGB result with the ITU-R 601 weights (those PIL's convert("L") uses)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _with_info(out: Any, source: Any) -> Any:
    """``out`` with ``source``'s colour profile, where the result is in the colour space the profile is for."""
    profile = source.info.get("icc_profile")
    if profile and out.mode.rstrip("A") == source.mode.rstrip("A"):
        out.info["icc_profile"] = profile
    return out


# --- files -------------------------------------------------------------------------------------------------------
def _peek(source: Path | bytes) -> tuple[str | None, int]:
    """(PIL format name, frame count) of an image file without decoding it; (None, 1) when unreadable (the
    reader then says why)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.format, int(getattr(image, "n_frames", 1))
    except Exception:  # any decoder failure is reported by read_image with its own clear line
        return None, 1


def _refuse_animation(frames: int, label: str) -> None:
    if frames > 1:
        raise DerainError(f"{label} holds {frames} frames (an animation); derain each frame as an image")


def _restore_path(path: Path, restore: Restore, value_range: Any) -> Any:
    from PIL import Image

    from derain.files.imageio import read_image

    if value_range is not None:
        raise DerainError("value_range is for float images; an image file has its own range")
    loaded = read_image(path)
    _refuse_animation(_peek(path)[1], str(path))
    out = np.rint(np.clip(restore(loaded.pixels), 0.0, 1.0) * 255.0).astype(np.uint8)
    alpha = getattr(loaded, "alpha", None)
    if alpha is not None:
        out = np.dstack([out, np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)])
    result = Image.fromarray(out)  # RGB, or RGBA with the alpha
    if loaded.icc_profile:
        result.info["icc_profile"] = loaded.icc_profile
    return result


def _restore_bytes(data: bytes, restore: Restore, value_range: Any) -> bytes:
    from derain.files.imageio import encode_image, read_image

    if value_range is not None:
        raise DerainError("value_range is for float images; an image file has its own range")
    if not data:
        raise DerainError("cannot read image: the bytes are empty")
    loaded = read_image(data)
    fmt, frames = _peek(data)
    _refuse_animation(frames, "the image")
    return encode_image(restore(loaded.pixels), _FORMAT_SUFFIX.get(fmt or "", ".png"), bit_depth=loaded.bit_depth,
                        exif=loaded.exif, icc_profile=loaded.icc_profile, alpha=loaded.alpha, jpeg=loaded.jpeg)
