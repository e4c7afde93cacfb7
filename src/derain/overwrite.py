"""The rule for every file a command writes: one that exists is replaced only when the user asked.

Commands check their outputs before any work, so a refused run costs nothing and changes nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from derain.errors import DerainError


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise one clear line naming the files of ``paths`` that exist, unless ``overwrite``."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        named = ", ".join(str(p) for p in existing[:3]) + more
        raise DerainError(f"{named} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite to replace "
                          f"{'it' if len(existing) == 1 else 'them'}")
