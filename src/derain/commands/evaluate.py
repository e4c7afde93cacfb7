"""Scoring folders of results: the job behind ``derain eval``.

Full-reference: result folder against ground-truth folder (or a paired dataset, whose targets are the
ground truth), per image and per set, with a named protocol. No-reference: NIQE over a folder.
Files are paired by name (never by sort order); a result without ground truth, or ground truth without
result, is an error that names the files.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from derain.data import find_datasets, is_dataset, pair_folders
from derain.data.pairs import images_in, match_files
from derain.errors import DerainError
from derain.files.imageio import IMAGE_SUFFIXES, expand_inputs, read_uint8_rgb
from derain.files.outputs import refuse_existing
from derain.metrics import describe, niqe, psnr_ssim


@dataclass
class ImageScore:
    """Scores of one image (ssim is None for no-reference scores)."""

    name: str
    psnr: float | None = None
    ssim: float | None = None
    niqe: float | None = None


@dataclass
class SetScore:
    """Per-image scores of one set and their means."""

    name: str
    images: list[ImageScore] = field(default_factory=list)

    def mean(self, attr: str) -> float:
        values = [getattr(s, attr) for s in self.images if getattr(s, attr) is not None]
        return sum(values) / len(values) if values else math.nan


def has_images(folder: Path) -> bool:
    """True when ``folder`` directly holds image files."""
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def ground_truth_sets(pred_dir: Path, gt_dir: Path, partial: bool = False) -> dict[str, list[tuple[Path, Path]]]:
    """(result, ground truth) pairs per set; with ``partial``, ground truth without a result is left out
    (scoring the results made so far) instead of being an error.

    ``gt_dir`` is either a folder of ground-truth images (one set), or a paired dataset (``rainy/`` +
    ``clean/`` and the other known layouts), or a folder of such datasets. For several sets, results are
    looked up in ``pred_dir/<set name>/`` (falling back to ``pred_dir`` itself for a single set).
    """
    for folder, role in ((pred_dir, "results"), (gt_dir, "ground-truth")):
        if not folder.is_dir():
            raise DerainError(f"{role} folder {folder} " + ("is not a folder" if folder.exists() else "does not exist"))
    if has_images(gt_dir) and not is_dataset(gt_dir):  # a dataset in one folder (rain-N + norain-N) is not
        return {gt_dir.name: pair_folders(pred_dir, gt_dir, partial=partial)}  # all ground truth
    datasets = find_datasets(gt_dir)
    sets: dict[str, list[tuple[Path, Path]]] = {}
    for name, pairs in datasets.items():
        folder = pred_dir / name if (pred_dir / name).is_dir() else pred_dir
        if folder == pred_dir and len(datasets) > 1:
            raise DerainError(f"{gt_dir} holds {len(datasets)} sets; put each set's results in {pred_dir}/<set name>/")
        preds = images_in(folder)
        if not preds:
            raise DerainError(f"no result images in {folder}")
        targets = list(dict.fromkeys(p.target for p in pairs))  # the set's ground truth, each file once
        sets[name] = match_files(preds, targets, what="result", many_to_one=False, partial=partial)
    return sets


def score_sets(sets: dict[str, list[tuple[Path, Path]]], protocol: str) -> list[SetScore]:
    """PSNR/SSIM of every (result, ground truth) pair under ``protocol``."""
    results = []
    for name, pairs in sets.items():
        scores = SetScore(name)
        for pred, gt in pairs:
            try:
                p, s = psnr_ssim(read_uint8_rgb(pred), read_uint8_rgb(gt), protocol)
            except DerainError as exc:
                raise DerainError(f"{pred.name} vs {gt.name}: {exc}") from None
            scores.images.append(ImageScore(pred.name, psnr=p, ssim=s))
        results.append(scores)
    return results


def score_no_reference(inputs: list[str]) -> SetScore:
    """NIQE of every image found in ``inputs`` (files, folders or globs)."""
    scores = SetScore(", ".join(inputs))
    for path in expand_inputs(inputs):
        scores.images.append(ImageScore(path.name, niqe=niqe(read_uint8_rgb(path))))
    return scores


def _looks_numeric(cell: object) -> bool:
    return bool(str(cell).strip()) and str(cell).replace(",", "").replace(".", "", 1).replace("-", "", 1).isdigit()


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with right-aligned numeric columns."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    numeric = [i > 0 and all(_looks_numeric(r[i]) for r in rows) for i in range(len(headers))]

    def line(r):
        return "  ".join(str(c).rjust(w) if num else str(c).ljust(w)
                         for c, w, num in zip(r, widths, numeric)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def full_reference_table(results: list[SetScore], protocol: str) -> str:
    """Per-set PSNR/SSIM table, with the average over sets when there are several, and its protocol."""
    rows = [[r.name, str(len(r.images)), f"{r.mean('psnr'):.4f}", f"{r.mean('ssim'):.4f}"] for r in results]
    if len(results) > 1:
        rows.append(["Average (of set means)", str(sum(len(r.images) for r in results)),
                     f"{sum(r.mean('psnr') for r in results) / len(results):.4f}",
                     f"{sum(r.mean('ssim') for r in results) / len(results):.4f}"])
    return format_table(["set", "images", "PSNR (dB)", "SSIM"], rows) + f"\nprotocol: {protocol}: {describe(protocol)}"


def report_paths(out: Path, overwrite: bool = False) -> tuple[Path, Path]:
    """``(<out>.csv, <out>.json)`` (``out`` may end in .json/.csv); existing ones are an error unless
    ``overwrite``."""
    base = out.with_suffix("") if out.suffix.lower() in (".json", ".csv") else out
    paths = base.with_suffix(".csv"), base.with_suffix(".json")
    refuse_existing(paths, overwrite)
    return paths


def write_reports(results: list[SetScore], out: Path, protocol: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<out>.csv`` (one row per image) and ``<out>.json`` (summary); ``out`` may end in .json/.csv."""
    csv_path, json_path = report_paths(out, overwrite)
    base = csv_path.with_suffix("")
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["set", "image", "psnr", "ssim", "niqe"])
            for r in results:
                for s in r.images:
                    writer.writerow([r.name, s.name, *(_fmt(v) for v in (s.psnr, s.ssim, s.niqe))])
        summary = {
            "protocol": protocol,
            "protocol_description": describe(protocol) if protocol != "niqe" else "NIQE, standard pristine model",
            "sets": {r.name: {"images": len(r.images), "psnr": _num(r.mean("psnr")), "ssim": _num(r.mean("ssim")),
                              "niqe": _num(r.mean("niqe"))} for r in results},
            "per_image": {r.name: [{k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(s).items()}
                                   for s in r.images] for r in results},
        }
        json_path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=str))
    except OSError as exc:
        raise DerainError(f"cannot write the report to {base.parent}: {exc.strerror}") from None
    return csv_path, json_path


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _num(value: float) -> float | None:
    # JSON has no NaN/inf; identical images (infinite PSNR) are written as null with the CSV saying inf.
    return None if not math.isfinite(value) else round(value, 6)


def main(args: argparse.Namespace) -> int:
    """``derain eval``: score results against ground truth (or NIQE without it) and print the table."""
    if args.out:
        report_paths(Path(args.out), args.overwrite)  # refused before the scoring, not after
    if args.no_reference:
        results = [score_no_reference(args.no_reference)]
        s = results[0]
        print(format_table(["images", "NIQE (lower is better)"], [[str(len(s.images)), f"{s.mean('niqe'):.4f}"]]))
        print("protocol: niqe: standard pristine model, 96x96 blocks, rounded BT.601 studio-swing Y")
        protocol = "niqe"
    else:
        if not (args.pred and args.gt):
            raise DerainError("eval needs --pred DIR and --gt DIR (or --no-reference DIR for NIQE)")
        from derain.metrics import PROTOCOLS
        if args.protocol not in PROTOCOLS:
            raise DerainError(f"unknown protocol {args.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        sets = ground_truth_sets(Path(args.pred), Path(args.gt), partial=args.partial)
        results = score_sets(sets, args.protocol)
        print(full_reference_table(results, args.protocol))
        protocol = args.protocol
    if args.out:
        csv_path, json_path = write_reports(results, Path(args.out), protocol, args.overwrite)
        print(f"derain: per-image scores in {csv_path}, summary in {json_path}")
    return 0
