"""Planning what a command writes, before any work: output names and folders, the rule that an existing file
is replaced only when the user asked, and which share of the work this process does (``--shard``).

Commands check their outputs before any work, so a refused run costs nothing and changes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from derain.errors import DerainError
from derain.files.imageio import IMAGE_SUFFIXES

STDIO = Path("-")  # ``-`` as input: the image's bytes on stdin; as output: the result's bytes on stdout


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


_SAME_FORMAT = {".jpeg": (".jpg", ".jpeg"), ".tiff": (".tif", ".tiff")}  # --format names of an output's suffix


def names_one_image(output: Path) -> bool:
    """Whether ``-o output`` names one output image (``clean.png``, or ``-`` for stdout) rather than a folder;
    an existing folder with such a name stays a folder."""
    return output == STDIO or (output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir())


def output_name(name: Path, suffix: str | None, name_suffix: str = "") -> Path:
    """The output's path below the output folder for an input found as ``name``: the format ``suffix`` (else
    the input's own, or PNG where the input's format cannot be written, e.g. GIF) and ``name_suffix``."""
    ext = suffix or (name.suffix if name.suffix.lower() in IMAGE_SUFFIXES else ".png")
    return name.with_name(name.stem + name_suffix + ext)


def output_paths(files: list[Path], output_dir: Path, suffix: str | None, names: list[Path] | None = None,
                 name_suffix: str = "") -> list[Path]:
    """Output path of each input in ``output_dir`` (under its relative name in ``names``, else its file name);
    two inputs that would land on the same output are an error."""
    names = names or [Path(f.name) for f in files]
    outputs = [output_dir / output_name(n, suffix, name_suffix) for n in names]
    check_outputs(zip(files, outputs))
    return outputs


def run_outputs(files: list[Path], output: Path, suffix: str | None, names: list[Path] | None = None,
                name_suffix: str = "") -> list[Path]:
    """Output paths of ``derain run``: in the folder ``output``, or ``output`` itself when it is named like an
    image (or is ``-``), which needs exactly one input (and a ``suffix``, if given, that agrees with its name)."""
    if not names_one_image(output):
        return output_paths(files, output, suffix, names, name_suffix)
    if len(files) != 1:
        raise DerainError(f"-o {output} names one image file but there are {len(files)} inputs; "
                          "give an output folder instead")
    if output == STDIO:
        return [output]
    if suffix and suffix.lower() not in _SAME_FORMAT.get(output.suffix.lower(), (output.suffix.lower(),)):
        raise DerainError(f"--format {suffix.lstrip('.')} disagrees with the output name {output}")
    check_outputs([(files[0], output)])
    return [output]


def check_outputs(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Refuse (input, output) plans where two inputs share an output or an output is its own input."""
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in seen:
            raise DerainError(f"{seen[dst]} and {src} would both be written to {dst}; run them separately")
        if dst != STDIO and src != STDIO and dst.resolve() == src.resolve():
            raise DerainError(f"output {dst} is the input itself; choose another output folder with -o")
        seen[dst] = src


def prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and check it can be written, with one clear line if not."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DerainError(f"cannot create output folder {output_dir}: {exc.strerror}") from None
    if not output_dir.is_dir():
        raise DerainError(f"output path {output_dir} exists and is not a folder")
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise DerainError(f"output folder {output_dir} is not writable")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise DerainError(f"--shard expects I/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise DerainError(f"--shard {text}: need 0 <= I < N")
    return index, count


def torchrun_shard() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun with several processes, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def shard_files(files: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """The files (or their outputs) this process handles: every n-th one starting at i (sizes stay balanced)."""
    if shard is None:
        return files
    index, count = shard
    return files[index::count]
