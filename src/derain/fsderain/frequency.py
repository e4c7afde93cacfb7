"""Fourier views of images for FSDerain: amplitude spectra and the high-/low-frequency masks.

All spectra are the full orthonormal 2-D FFT (``torch.fft.fft2(x, norm="ortho")``) over the last two dims,
per channel, computed in float32. FSDerain uses the amplitude only.

The high-pass removes a disc of radius ``radius * H`` pixels around ``(H // 2, W // 2)`` and keeps everything
strictly outside it (as the original code does: ``dist > radius * H``). Where that disc sits depends on the
layout of the spectrum:

- ``shift=True`` (our default, the intent, and what the original ``vis.py`` does): the spectrum is first
  ``fftshift``-ed so DC is at the centre, which makes the disc the *low* frequencies: a true high-pass.
- ``shift=False`` (``faithful``, what the original training code ``new-dual.py`` does): no shift, so the
  centre of the unshifted array is the Nyquist corner and the disc removes the *highest* frequencies while
  DC and the low frequencies stay.

The masked maps are returned in the layout they were masked in (centred for ``shift=True``); the
FrequencyEncoder only needs a consistent layout.
"""
from __future__ import annotations

import torch


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """Complex orthonormal 2-D FFT of (..., H, W) in float32 (an unshifted full spectrum, not rfft2)."""
    return torch.fft.fft2(x.float(), norm="ortho")


def amplitude(x: torch.Tensor) -> torch.Tensor:
    """|FFT| of each channel of ``x`` (..., H, W): orthonormal, full, unshifted, float32."""
    return spectrum(x).abs()


def disc_mask(height: int, width: int, radius: float = 0.1, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (H, W) mask, True inside the disc of radius ``radius * height`` around (H // 2, W // 2)."""
    ys = torch.arange(height, device=device, dtype=torch.float32) - height // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) - width // 2
    dist = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return dist <= radius * height


def high_pass_amplitude(x: torch.Tensor, radius: float = 0.1, shift: bool = True) -> torch.Tensor:
    """Amplitude spectrum of image ``x`` with the central disc zeroed (see the module docstring).

    ``shift=True``: true high-pass in the centred layout; ``shift=False``: the original training code's
    mask on the unshifted spectrum (removes the highest frequencies instead).
    """
    amp = amplitude(x)
    if shift:
        amp = torch.fft.fftshift(amp, dim=(-2, -1))
    keep = ~disc_mask(amp.shape[-2], amp.shape[-1], radius, amp.device)
    return amp * keep


def low_pass_spectrum(x: torch.Tensor, radius: float = 0.1) -> torch.Tensor:
    """Real and imaginary parts (..., K, 2) of the K spectrum coefficients inside the disc (centred layout).

    The complement of the high-pass: the phase as well as the amplitude of the low frequencies, i.e. the
    image's colours, shading and coarse layout (the unpaired consistency term compares these). Only the
    coefficients inside the disc are returned, so a mean over them is not diluted by the zeros outside.
    """
    spec = torch.fft.fftshift(spectrum(x), dim=(-2, -1))
    inside = disc_mask(spec.shape[-2], spec.shape[-1], radius, spec.device)
    return torch.view_as_real(spec[..., inside])
