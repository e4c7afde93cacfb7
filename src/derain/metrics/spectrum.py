"""The frequency view of an image: the centred log amplitude of its orthonormal 2-D FFT.

FSDerain and DMSR show this to argue that rain streaks live in particular frequency bands (a bright line at
right angles to the streaks); a derained image should lose that line and keep the rest of the spectrum.
"""
from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: the spectrum of the brightness, where rain streaks show most.
_LUMA = np.array([0.299, 0.587, 0.114])


def luminance(image: np.ndarray) -> np.ndarray:
    """H x W luma in [0, 1] of an RGB (uint8 or float in [0, 1]) or grey image."""
    x = image.astype(np.float64)
    if image.dtype == np.uint8:
        x /= 255.0
    return x if x.ndim == 2 else x[..., :3] @ _LUMA


def log_amplitude(image: np.ndarray) -> np.ndarray:
    """``log(1 + |FFT2(Y)|)`` with ``norm="ortho"``, zero frequency moved to the centre (H x W float64).

    Y is taken on the 0..255 scale, as the papers' scripts take it from 8-bit images: on a 0..1 scale most
    amplitudes are far below 1, where ``log1p`` is nearly linear and the spectrum would look black. The
    orthonormal transform keeps amplitudes comparable between crops of different sizes.
    """
    spectrum = np.fft.fft2(luminance(image) * 255.0, norm="ortho")
    return np.log1p(np.abs(np.fft.fftshift(spectrum)))


def to_grey_uint8(amplitudes: list[np.ndarray], percentile: float = 99.9) -> list[np.ndarray]:
    """Map several log-amplitude maps to uint8 with one shared scale, so panels can be compared by eye.

    The top of the scale is a high percentile rather than the maximum, because the zero-frequency term alone
    would otherwise squeeze everything else into black.
    """
    top = max(float(np.percentile(a, percentile)) for a in amplitudes) or 1.0
    return [np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8) for a in amplitudes]
