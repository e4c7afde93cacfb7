"""The CPU inference paths of one model side by side in one process: float32, native bf16, int8.

    python benchmarks/cpu_paths.py [--weights CKPT] [--int8 FILE.int8.onnx] [--student CKPT] [--runs 20]
                                   [--threads 2] [--photo-runs 3] [--psnr] [--heavy work/heavy-val]
                                   [--no-photo] [--no-peak]

Paths (each through the Python API, ``derain.Session``, as a user calls it: numpy in and out, padding and
cropping included): the reference (eager float32, ``fast=False``), the fast path in float32, the fast path in
bf16 (only where the CPU computes bf16 natively; elsewhere it is emulated and many times slower), onnxruntime
float32 (the export the int8 model is made from) and onnxruntime int8 (``--int8``, default: the checkpoint's
int8 version made by ``scripts/quantize_default.py``; the row is left out, saying why, where there is none).

Per path: the median milliseconds of ``--runs`` calls on the 481x321 Rain100L image ``rain-001.png``, taken
round-robin across the paths (a shared CPU's speed drifts; it then slows every path alike), and the speed-up
over the fast path in float32; the median seconds of ``--photo-runs`` runs of the 12-megapixel photo
``real-rain/91.jpg`` through ``derain.commands.run.restore_file`` (read, restore at the default working side, write
JPEG: the per-file step of ``derain run``), also round-robin; the peak RSS of a fresh process that loads the
path and restores that photo once (one process per path, so that one path's memory does not hide another's);
the largest error relative to the reference's output and the mean absolute error in 8-bit grey levels; with
``--psnr`` Rain100L ``matlab-y`` PSNR over all 100 pairs and its difference from the reference; with ``--heavy``
the same on the heavy-rain validation set (``python scripts/make_heavy_val.py work/heavy-val``).
``--student`` adds the paths of a second checkpoint, the CPU student (``student fast fp32``, ``student fast
bf16`` where native, ``student onnxruntime int8`` where its int8 version exists), in the same turns; their
errors are measured against the student's own float32 fast path.
Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import derain
from derain.weights.load import load_model
from derain.data.pairs import find_pairs
from derain.inference.hardware import cpu_flag_set, cpu_kind, _cpu_flags
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions, prepare_for, resolve_tile, resolve_working_side, size_multiple_of
from derain.metrics import psnr_ssim
from derain.models import get_spec
from derain.commands.run import restore_file
from derain.weights import default_checkpoint

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = DATA / "rain100l" / "rainy" / "rain-001.png"
PHOTO = DATA / "real-rain" / "91.jpg"
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
PATHS = ("reference fp32", "fast fp32", "fast bf16", "onnxruntime fp32", "onnxruntime int8")
STUDENT = "student "  # label prefix of the --student checkpoint's paths
STUDENT_PATHS = ("fast fp32", "fast bf16", "onnxruntime int8")


def cpu_description() -> str:
    """CPU model name, the flags that decide the path, and the kind (derain.inference.hardware)."""
    text = _cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = cpu_flag_set(text)
    return f"{model}, flags {' '.join(f for f in SHOWN_FLAGS if f in flags) or 'none of ' + '/'.join(SHOWN_FLAGS)}" \
           f", kind {cpu_kind().value}"


def build_path(label: str, weights: str, int8: Path | None, workdir: Path,
               threads: int) -> tuple[torch.nn.Module, InferenceOptions, str]:
    """(network, options, registry name) of one path; the ONNX export is written into ``workdir`` once."""
    from derain.inference.onnx import OnnxModel, export_onnx

    workdir.mkdir(parents=True, exist_ok=True)
    if label == "onnxruntime int8":
        model = OnnxModel(int8, threads=threads)
        return model, InferenceOptions(), model.name
    if label == "onnxruntime fp32":
        path = workdir / "float32.onnx"
        if not path.is_file():
            net, name = load_model(None, weights)
            export_onnx(net, name, path, size_multiple_of(net, get_spec(name).size_multiple))
        model = OnnxModel(path, threads=threads)
        return model, InferenceOptions(), model.name
    net, name = load_model(None, weights)
    options = {"reference fp32": InferenceOptions(fast=False, precision="fp32"),
               "fast fp32": InferenceOptions(precision="fp32"),
               "fast bf16": InferenceOptions(precision="bf16")}[label]
    return net, options, name


def photo_runner(model: torch.nn.Module, options: InferenceOptions, name: str, out: Path):
    """A function restoring the 12-megapixel photo as ``derain run`` does (default working side, tile from the
    free memory), the model prepared once."""
    cpu = torch.device("cpu")
    options = resolve_working_side(dataclasses.replace(options, working_side="auto"), name)
    prepared = prepare_for(model, options, cpu)
    multiple = size_multiple_of(prepared, get_spec(name).size_multiple)
    options = resolve_tile(options, prepared, multiple, cpu)
    return lambda: restore_file(PHOTO, out, prepared, multiple, options, cpu)


def peak_of(label: str, weights: str, int8: Path | None, workdir: Path, threads: int) -> float:
    """Peak RSS in MB of this process after loading ``label`` and restoring the photo once (``--peak-of``)."""
    model, options, name = build_path(label, weights, int8, workdir, threads)
    photo_runner(model, options, name, workdir / f"peak-{label.replace(' ', '-')}.jpg")()
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (``ru_maxrss`` keeps the
    parent's peak across fork and exec, so a child of a large process would report its parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_psnr(session: derain.Session, folder: Path = DATA / "rain100l") -> float:
    """Mean ``matlab-y`` PSNR of ``session`` over the pairs in ``folder``."""
    scores = []
    for pair in find_pairs(folder):
        x = read_uint8_rgb(pair.input).astype(np.float32) / 255
        y = np.rint(np.clip(session.derain(x), 0, 1) * 255).astype(np.uint8)
        scores.append(psnr_ssim(y, read_uint8_rgb(pair.target), "matlab-y")[0])
    return float(np.mean(scores))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="checkpoint (default: the bundled model)")
    parser.add_argument("--int8", type=Path, help="int8 ONNX file (default: the checkpoint's cached int8 version)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--photo-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--psnr", action="store_true", help="score all 100 Rain100L pairs per path")
    parser.add_argument("--heavy", type=Path, help="also score the heavy-rain validation set in this folder")
    parser.add_argument("--student", help="a second checkpoint (the CPU student) whose paths run alongside")
    parser.add_argument("--no-photo", dest="photo", action="store_false", help="skip the 12-megapixel photo")
    parser.add_argument("--no-peak", dest="peak", action="store_false", help="skip the per-path memory processes")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # internal: one path's peak memory, as JSON
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or str(default_checkpoint())
    int8 = args.int8
    if int8 is None:
        from derain.inference.quantize import find_int8
        int8 = find_int8(weights)
    if args.peak_of:
        print(json.dumps({"peak_mb": peak_of(args.peak_of, weights, int8, args.workdir, args.threads)}))
        return 0
    for needed in (SMALL, PHOTO):
        if not needed.is_file():
            sys.exit(f"needs {needed} (../shared/data beside the project)")

    import onnxruntime
    labels = [p for p in PATHS if p != "fast bf16" or cpu_kind().value == "bf16"]
    if int8 is None:
        print("note: no int8 row: no int8 model for this checkpoint (run scripts/quantize_default.py or pass --int8)")
        labels.remove("onnxruntime int8")
    print(f"{datetime.date.today()}, {cpu_description()}, {args.threads} threads, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}")
    print(f"weights {weights}" + (f", int8 {int8}" if int8 else ""))
    checkpoints = {label: (weights, int8) for label in labels}
    if args.student:
        from derain.inference.quantize import find_int8
        student_int8 = find_int8(args.student)
        print(f"student {args.student}" + (f", int8 {student_int8}" if student_int8 else ", no int8 version"))
        for path in STUDENT_PATHS:
            if (path == "fast bf16" and cpu_kind().value != "bf16") or (path.endswith("int8") and not student_int8):
                continue
            labels.append(STUDENT + path)
            checkpoints[STUDENT + path] = (args.student, student_int8)
    pixels = read_uint8_rgb(SMALL).astype(np.float32) / 255
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        sessions, photos = {}, {}
        for label in labels:
            ckpt, ckpt_int8 = checkpoints[label]
            model, options, name = build_path(label.removeprefix(STUDENT), ckpt, ckpt_int8,
                                              workdir / label.replace(" ", "-"), args.threads)
            sessions[label] = derain.Session(model, name=name, device="cpu", fast=options.fast,
                                             precision=options.precision)
            photos[label] = photo_runner(model, options, name, workdir / f"{label.replace(' ', '-')}.jpg")
        outputs = {label: s.derain(pixels) for label, s in sessions.items()}  # warm-up (oneDNN caches)
        small: dict[str, list[float]] = {label: [] for label in labels}
        for _ in range(args.runs):
            for label, session in sessions.items():
                start = time.perf_counter()
                session.derain(pixels)
                small[label].append(time.perf_counter() - start)
        photo: dict[str, list[float]] = {label: [] for label in labels}
        if args.photo:
            for label in labels:
                photos[label]()  # warm-up at the photo's working size
            for _ in range(args.photo_runs):
                for label in labels:
                    start = time.perf_counter()
                    photos[label]()
                    photo[label].append(time.perf_counter() - start)
        peaks = {}
        if args.photo and args.peak:
            for label in labels:
                ckpt, ckpt_int8 = checkpoints[label]
                command = [sys.executable, __file__, "--weights", ckpt, "--threads", str(args.threads),
                           "--peak-of", label.removeprefix(STUDENT), "--workdir", str(workdir / label.replace(" ", "-"))
                           ] + (["--int8", str(ckpt_int8)] if ckpt_int8 else [])
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                peaks[label] = json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]
        psnr = {label: mean_psnr(s) for label, s in sessions.items()} if args.psnr else {}
        heavy = {label: mean_psnr(s, args.heavy) for label, s in sessions.items()} if args.heavy else {}

    base = statistics.median(small["fast fp32"])
    print("| path | ms per 481x321 | speed-up vs fast fp32 | 12 MP photo (s) | peak RSS (MB) | max rel. error | "
          "mean abs error (grey levels) | Rain100L PSNR | vs reference | heavy-val PSNR |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label in labels:
        own = STUDENT + "fast fp32" if label.startswith(STUDENT) else "reference fp32"
        reference = outputs[own]
        ms = statistics.median(small[label]) * 1000
        error = float(np.abs(outputs[label] - reference).max() / np.abs(reference).max())
        mean_error = float(np.abs(outputs[label] - reference).mean() * 255)
        photo_s = f"{statistics.median(photo[label]):.2f}" if photo[label] else ""
        peak = f"{peaks[label]:.0f}" if label in peaks else ""
        score = f"{psnr[label]:.3f}" if label in psnr else ""
        delta = f"{psnr[label] - psnr[own]:+.3f}" if label in psnr and label != own else ""
        hv = f"{heavy[label]:.2f}" if label in heavy else ""
        print(f"| {label} | {ms:.1f} | {base * 1000 / ms:.2f}x | {photo_s} | {peak} | {error:.1e} | "
              f"{mean_error:.3f} | {score} | {delta} | {hv} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
