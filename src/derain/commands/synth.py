"""Adding synthetic rain to files: the job behind ``derain synth``.

Each clean image gets ``count`` rainy versions from :mod:`derain.data.synth`, written under the output
folder with its own name (``name_k`` with k = 1..count when count > 1, the Rain1400 naming that
``derain.data`` pairs with ``name``), bit depth, EXIF and ICC profile. The rain of one output depends only on
the seed, the file name and k, so adding files to a folder or skipping existing outputs never changes the
rain of the others. Presets that make night scenes (``real``) darken some photos: the clean target of such a
rainy image is then written under ``targets/`` with the same name.
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from derain.data.synth import preset, synthesize_pair
from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError
from derain.files.imageio import expand_inputs, read_image, write_image


@dataclass
class SynthJob:
    """Everything ``derain synth`` needs to know."""

    inputs: list[str]
    output_dir: Path
    preset: str = "light"
    seed: int = 0
    count: int = 1
    overwrite: bool = False


@dataclass
class SynthReport:
    """What a synth job did, file by file."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def image_seed(seed: int, name: str, k: int) -> int:
    """The generator seed of rainy version ``k`` of the file called ``name`` (stable across runs and folders)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode()), k]).generate_state(1)[0])


def synth_outputs(files: list[Path], output_dir: Path, count: int) -> list[list[Path]]:
    """Output paths of each input (``count`` of them); two inputs landing on one output are an error."""
    outputs = [[output_dir / f.name] if count == 1 else [output_dir / f"{f.stem}_{k}{f.suffix}"
                                                          for k in range(1, count + 1)] for f in files]
    from derain.files.outputs import check_outputs

    check_outputs((src, dst) for src, dsts in zip(files, outputs) for dst in dsts)
    return outputs


def synth(job: SynthJob) -> SynthReport:
    """Write the rainy versions of every input image of ``job``."""
    from derain.files.outputs import prepare_output_dir

    if job.count < 1:
        raise DerainError(f"--count must be at least 1, got {job.count}")
    try:
        config = preset(job.preset)
    except ValueError as exc:
        raise DerainError(str(exc)) from None
    files = expand_inputs(job.inputs)
    outputs = synth_outputs(files, job.output_dir, job.count)
    prepare_output_dir(job.output_dir)
    report = SynthReport()
    for src, dsts in zip(files, outputs):
        todo = [(k, dst) for k, dst in enumerate(dsts, start=1) if job.overwrite or not dst.exists()]
        report.skipped += [dst for dst in dsts if all(dst != d for _, d in todo)]
        if not todo:
            continue
        image = read_image(src)
        clean = image_to_tensor(image.pixels)
        for k, dst in todo:
            generator = torch.Generator().manual_seed(image_seed(job.seed, src.name, k))
            rainy, target = synthesize_pair(clean, config, generator, wrap=False)  # whole photo: no wrap round
            write_image(dst, tensor_to_image(rainy), bit_depth=image.bit_depth, exif=image.exif,
                        icc_profile=image.icc_profile)
            report.written.append(dst)
            if not torch.equal(target, clean):  # a night scene: its target is the darkened photo, not the input
                scene_path = job.output_dir / "targets" / dst.name
                scene_path.parent.mkdir(exist_ok=True)
                write_image(scene_path, tensor_to_image(target), bit_depth=image.bit_depth,
                            exif=image.exif, icc_profile=image.icc_profile)
                report.written.append(scene_path)
    return report


def main(args: argparse.Namespace) -> int:
    """``derain synth``: add synthetic rain to clean images."""
    job = SynthJob(inputs=args.inputs, output_dir=Path(args.output), preset=args.preset, seed=args.seed,
                   count=args.count, overwrite=args.overwrite)
    report = synth(job)
    print(f"derain: wrote {len(report.written)} rainy image(s) to {job.output_dir}"
          + (f", skipped {len(report.skipped)} existing (use --overwrite to redo them)" if report.skipped else ""))
    return 0
