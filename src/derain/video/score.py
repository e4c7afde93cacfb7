"""Scores of a restored clip against its clean frames: per-frame PSNR/SSIM and temporal consistency."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from derain.errors import DerainError
from derain.metrics import psnr_ssim


@dataclass
class ClipScores:
    """Means over the frames; ``flicker`` in 0-255 units (lower is better, 0 for the clean clip itself)."""

    psnr: float
    ssim: float
    flicker: float
    frames: int


def flicker(frames: Sequence[np.ndarray], clean: Sequence[np.ndarray]) -> float:
    """Mean absolute difference between the clip's frame-to-frame changes and the clean clip's (0-255 scale).

    A perfect result changes from one frame to the next exactly as the clean clip does; rain, and restorations
    that differ from frame to frame, add changes the clean clip does not have.
    """
    if len(frames) != len(clean) or len(frames) < 2:
        raise DerainError(f"flicker needs two clips of the same length (>= 2 frames), got {len(frames)} and "
                          f"{len(clean)}")
    total = 0.0
    for t in range(1, len(frames)):
        change = frames[t].astype(np.float32) - frames[t - 1].astype(np.float32)
        truth = clean[t].astype(np.float32) - clean[t - 1].astype(np.float32)
        total += float(np.abs(change - truth).mean())
    return total / (len(frames) - 1)


def score_clip(frames: Sequence[np.ndarray], clean: Sequence[np.ndarray], protocol: str = "matlab-y") -> ClipScores:
    """Mean PSNR/SSIM under ``protocol`` (see :mod:`derain.metrics`) and :func:`flicker` of uint8 RGB frames."""
    pairs = [psnr_ssim(f, c, protocol) for f, c in zip(frames, clean, strict=True)]
    return ClipScores(psnr=float(np.mean([p for p, _ in pairs])), ssim=float(np.mean([s for _, s in pairs])),
                      flicker=flicker(frames, clean), frames=len(pairs))
