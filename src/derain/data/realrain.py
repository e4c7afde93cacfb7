"""The real rainy photos (../shared/data/real-rain, 147 photos without ground truth) split once and for all.

30 photos are held out to judge real-rain results: those whose number ``n`` (``n.jpg``) has ``n % 5 == 1``
(1, 6, 11, ..., 146). Nothing trains, tunes or is selected on them; the other 117 may be used for fitting the
rain synthesis and for training without ground truth.
"""
from __future__ import annotations

from pathlib import Path

HELD_OUT: tuple[int, ...] = tuple(range(1, 148, 5))  # 30 photos: 1, 6, ..., 146


def photo_number(path: Path) -> int | None:
    """The number of a photo named ``N.jpg`` (None for any other name)."""
    return int(path.stem) if path.stem.isdigit() else None


def split_real_photos(folder: Path) -> tuple[list[Path], list[Path]]:
    """(training photos, held-out photos) of ``folder``, each sorted by number; other files are ignored."""
    photos = sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                     and photo_number(p) is not None), key=lambda p: photo_number(p) or 0)
    held = [p for p in photos if photo_number(p) in HELD_OUT]
    train = [p for p in photos if photo_number(p) not in HELD_OUT]
    return train, held
