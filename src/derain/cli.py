"""Command line: argument parsing only. Each subcommand runs ``main(args)`` of its module in
:mod:`derain.commands`.

``derain photo.jpg`` is the short form of ``derain run photo.jpg``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from derain.commands import BACKENDS
from derain.data.degradations import RAIN_PRESETS, TASK_CHOICES
from derain.errors import DerainError
from derain.files.imageio import OUTPUT_FORMATS, SUBSAMPLINGS
from derain.inference import ENSEMBLE_NAMES, PRECISIONS, TRAINING_PRECISIONS
from derain.rain2avoid import MODES as SELFSUP_MODES
from derain.rain2avoid import VARIANTS as SELFSUP_VARIANTS

# The module of derain.commands whose main(args) runs each command (imported only when it runs).
COMMANDS = {"run": "run", "eval": "evaluate", "bench": "bench", "models": "models", "train": "train",
            "finetune": "finetune", "synth": "synth", "serve": "serve", "compare": "compare", "export": "export",
            "selfsup": "selfsup", "video": "video"}
SUBCOMMANDS = tuple(COMMANDS)
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


def _pixels(text: str) -> int:
    """A count of pixels, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more pixels, not {value}")
    return value


def _tile_side(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return _pixels(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 0 or more pixels or auto, not {text!r}") from None


def _whole_number(low: int, high: int | None, what: str):
    """An argparse type: a whole number from ``low`` to ``high`` (no upper bound: None), else one clear line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
        return value
    return parse


_quality = _whole_number(1, 100, "a quality from 1 to 100")
_positive_int = _whole_number(1, None, "a whole number of at least 1")
_port = _whole_number(0, 65535, "a port from 0 to 65535")


def _pixel_count(text: str) -> int:
    """A pixel count such as 250000000 or 250M."""
    scale = 1_000_000 if text[-1:] in ("M", "m") else 1
    try:
        value = int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of pixels such as 250000000 or 250M, not {text!r}")
    return value


def _megapixels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of megapixels, not {text!r}")
    return value


def _inference_args(p: argparse.ArgumentParser, model_args: bool = True, fast: bool = True,
                    int8: bool = False) -> None:
    """Options shared by the commands that run a network; ``fast``: whether the fast path is the default;
    ``int8``: whether ``--precision int8`` (an onnxruntime model, derain.inference.quantize) is offered."""
    if model_args:
        p.add_argument("--model", help="network name (see `derain models`); optional when the checkpoint names it")
        p.add_argument("--weights", help="checkpoint file (.pth/.pt/.safetensors; official Restormer format accepted)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS) + ["int8"] * int8,
                   help="auto: bf16 where the GPU or CPU computes it natively (CPU: with the fast path only), "
                        + ("else the model's int8 version where one was made (scripts/quantize_default.py), "
                           "else float32; int8: that version, or --weights FILE.int8.onnx" if int8 else "else float32"))
    if fast:
        p.add_argument("--no-fast", dest="fast", action="store_false",
                       help="run the reference path (the network as trained, eager) instead of the fast path "
                            "(folded layers, channels-last, native bf16)")
    else:  # benchmarks score the reference path, as the papers do, unless asked
        p.add_argument("--fast", action="store_true",
                       help="score the fast path (folded layers, channels-last, native bf16) instead of the "
                            "reference path")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile to the fast path (pays for folders and tiles; compiles per size)")
    p.add_argument("--tile", type=_tile_side, default=None,
                   help="tile side for large images, 0 = never tile (default auto: from the free memory, at most "
                        "1024 on the CPU)")
    p.add_argument("--tile-overlap", type=_pixels, default=64, help="pixels shared by neighbouring tiles (default 64)")
    p.add_argument("--tile-threshold", type=_megapixels, default=1.0,
                   help="tile images larger than this many megapixels (default 1.0)")
    p.add_argument("--working-side", type=_working_side, default="auto", metavar="PIXELS",
                   help="show the network photos whose shorter side is longer than this downscaled to it, and "
                        "remove the rain it finds there from the full-resolution photo (rain streaks grow with "
                        "the photo's resolution); 0 = never; auto (default): 640 for rain networks, off for "
                        "all-in-one ones (derain bench: off, the papers' protocols score native resolution)")
    # A bare --ensemble means flips: quarter turns make vertical rain horizontal, which a network trained
    # upright (the default model) never saw (dihedral costs it 5.4 dB on Rain100L, docs/journal/fastderain.md).
    p.add_argument("--ensemble", nargs="?", const="flips", default="none",
                   choices=ENSEMBLE_NAMES,
                   help="self-ensemble: average the network over flipped/rotated copies. flips (the default "
                        "of a bare --ensemble): the 4 that keep vertical rain vertical, 4x the time; hflip: the "
                        "image and its mirror, 2x; dihedral: all 8 flips and quarter turns, 8x, only for networks "
                        "trained on rotated rain")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _working_side(text: str) -> int:
    if text == "auto":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or auto, got {text!r}") from None
    if value != 0 and value < 64:
        raise argparse.ArgumentTypeError(f"the working side must be 0 (off) or at least 64 pixels, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Remove rain from photos; train, evaluate and "
                                     "compare restoration networks. Short form: derain PHOTO... [-o OUT]")
    from derain import __version__
    parser.add_argument("--version", action="version", version=f"derain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="derain images, folders or globs")
    run.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="image files, folders or glob patterns; - reads one image from stdin")
    run.add_argument("-o", "--output", default="derained",
                     help="output folder (default ./derained), or, for one input, the output file (clean.png); "
                          "- writes the image to stdout (format from --format, else the input's)")
    run.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    run.add_argument("--keep-existing", action="store_true",
                     help="keep existing outputs that other models or weights made (default: make them again; "
                          "outputs made by the same model and weights, or not by derain, are always kept)")
    run.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default: as input)")
    run.add_argument("-r", "--recursive", action="store_true",
                     help="folders: their sub-folders too, mirrored under the output folder")
    run.add_argument("--suffix", default="", metavar="TEXT",
                     help="add TEXT to each output's name: --suffix _derained writes photo_derained.jpg")
    run.add_argument("--quality", type=_quality, metavar="1-100",
                     help="JPEG/WebP quality (default: a JPEG input's own quantization tables, else 95; WebP "
                          "lossless)")
    run.add_argument("--subsampling", choices=SUBSAMPLINGS,
                     help="JPEG chroma subsampling (default: the input JPEG's own, else 444)")
    run.add_argument("--max-pixels", type=_pixel_count, default=None, metavar="N",
                     help="refuse images with more pixels than this (e.g. 300M; default 180M, about Pillow's "
                          "decompression-bomb limit)")
    run.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads (default: all cores)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON line per input (input, output, model, seconds, status) on stdout")
    run.add_argument("--shard", help="process only part I of N of the files (0-based), e.g. 0/4")
    run.add_argument("--task", choices=TASK_CHOICES,
                     help="all-in-one models (fsdrnet): the degradation to remove; auto (default) lets the "
                          "model's selector decide and prints what it chose")
    run.add_argument("--backend", default="torch", choices=BACKENDS,
                     help="torch (default) or onnxruntime with --weights MODEL.onnx from `derain export --onnx`")
    _inference_args(run, int8=True)

    vid = sub.add_parser("video", help="derain a video (streamed, sound kept, neighbouring frames combined)")
    vid.add_argument("input", metavar="VIDEO", nargs="?",
                     help="video file (any container and codec FFmpeg decodes)")
    vid.add_argument("-o", "--output", required=True, help="output video file (.mp4, .mkv, .mov)")
    vid.add_argument("--shard", help="derain only the I-th of N equal time ranges (0-based, e.g. 0/4) into "
                                     "OUTPUT's .shard-I-of-N piece; under torchrun taken from RANK/WORLD_SIZE")
    vid.add_argument("--batch", type=int, default=1, metavar="N",
                     help="frames derained together (default 1: the fastest per frame on a quiet CPU)")
    vid.add_argument("--join", nargs="+", metavar="PIECE",
                     help="join the pieces of a --shard run into OUTPUT, copying their packets (no VIDEO)")
    vid.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    vid.add_argument("--temporal", action=argparse.BooleanOptionalAction, default=True,
                     help="combine each frame with its 5 neighbours on each side, aligned by optical flow, where "
                          "the alignment is reliable (default: on; --no-temporal: each frame alone)")
    vid.add_argument("--codec", help="video encoder (default libx264; e.g. libx265, mpeg4, ffv1)")
    vid.add_argument("--crf", type=int, help="constant quality for x264/x265/VP9/AV1, lower is better (default 18)")
    vid.add_argument("--bitrate", help="target bitrate instead of --crf, e.g. 4M or 800k")
    vid.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="begin this far into the input")
    vid.add_argument("--duration", type=float, metavar="SECONDS", help="derain only this many seconds")
    _inference_args(vid)

    exp = sub.add_parser("export", help="export a model to ONNX (dynamic size), checked against PyTorch")
    exp.add_argument("--onnx", required=True, metavar="FILE.onnx", help="ONNX file to write")
    exp.add_argument("--model", help="network name; optional when the checkpoint names it")
    exp.add_argument("--weights", help="checkpoint to export (default: the bundled model)")
    exp.add_argument("--overwrite", action="store_true", help="replace FILE.onnx if it exists")
    exp.add_argument("--tolerance", type=float, default=1e-4,
                     help="largest absolute difference from PyTorch accepted by the check (default 1e-4)")

    ev = sub.add_parser("eval", help="score result images against ground truth, or NIQE without it")
    ev.add_argument("--pred", help="folder of results (named after the inputs or the targets)")
    ev.add_argument("--gt", help="ground-truth folder, or a paired dataset folder (e.g. rain100l)")
    ev.add_argument("--protocol", default="matlab-y", help="matlab-y (default), rgb or skimage-rgb")
    ev.add_argument("--no-reference", nargs="+", metavar="INPUT", help="NIQE of these images/folders")
    ev.add_argument("--out", help="write per-image CSV and JSON summary to OUT(.csv|.json)")
    ev.add_argument("--overwrite", action="store_true", help="replace the reports of --out if they exist")
    ev.add_argument("--partial", action="store_true",
                    help="score only the results present: ground truth without a result is left out, not an error")

    bench = sub.add_parser("bench", help="run a model over benchmark sets and print a paper-style table")
    bench.add_argument("model_or_checkpoint", help="a model name or a checkpoint file")
    bench.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="paired sets (or folders of sets)")
    bench.add_argument("--protocol", default="matlab-y", help="matlab-y (default), rgb or skimage-rgb")
    bench.add_argument("--save", help="also write the restored images to SAVE/<set>/")
    bench.add_argument("--overwrite", action="store_true", help="replace images already saved under --save")
    bench.add_argument("--limit", type=int, help="only the first N pairs of each set")
    _inference_args(bench, fast=False)

    mods = sub.add_parser("models", help="list the available networks (the bundled default marked)")
    mods.add_argument("name", nargs="?", help="show this model in full: description, configuration, weights")

    syn = sub.add_parser("synth", help="add synthetic rain to clean images (training pairs, previews)")
    syn.add_argument("inputs", nargs="+", metavar="CLEAN", help="clean image files, folders or glob patterns")
    syn.add_argument("-o", "--output", required=True, help="output folder for the rainy images")
    syn.add_argument("--preset", default="light", choices=RAIN_PRESETS,
                     help="light: Rain100L-like (default); heavy: Rain100H-like, dense, with haze; real: fitted "
                          "to real rainy photos (depth layers, near drops, veil, night scenes whose darkened "
                          "targets go to OUT/targets/, noise, JPEG); dense: the dense tail of real rain (many "
                          "short drops in three layers, near out-of-focus drops)")
    syn.add_argument("--seed", type=int, default=0, help="random seed; same seed, same rain (default 0)")
    syn.add_argument("--count", type=int, default=1,
                     help="rainy versions per image, named NAME_1 .. NAME_K when K > 1 (default 1)")
    syn.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")

    srv = sub.add_parser("serve", help="local web page to derain photos in the browser (works offline)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0: the network)")
    srv.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    srv.add_argument("--weights", action="append", default=[], metavar="[NAME=]CHECKPOINT",
                     help="offer another model besides the bundled default; NAME is its network (e.g. "
                          "restormer=deraining.pth) or any label for a self-describing checkpoint; repeatable")
    srv.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted, in MB (default 50)")
    srv.add_argument("--max-megapixels", type=float, default=50,
                     help="largest image accepted, in megapixels (default 50)")
    srv.add_argument("--open", action="store_true", help="open the page in the default browser")
    _inference_args(srv, model_args=False)

    cmp = sub.add_parser("compare", help="comparison sheet (PNG): inputs beside results, zoomed insets, scores")
    cmp.add_argument("inputs", nargs="+", metavar="INPUT", help="input (rainy) images, folders or glob patterns")
    cmp.add_argument("-r", "--result", action="append", required=True, metavar="NAME=FOLDER",
                     help="a column of results, matched to the inputs by file name; repeatable")
    cmp.add_argument("-o", "--output", default="compare.png", help="sheet to write (default compare.png)")
    cmp.add_argument("--overwrite", action="store_true", help="replace the sheet if it exists")
    cmp.add_argument("--gt", help="ground-truth folder or paired dataset folder: adds a column and PSNR/SSIM")
    cmp.add_argument("--protocol", default="matlab-y", help="PSNR/SSIM protocol: matlab-y (default), rgb, skimage-rgb")
    cmp.add_argument("--masks", help="folder of Rain2Avoid rain masks, matched by file name: adds a column")
    cmp.add_argument("--fft", action="store_true", help="add a row of FFT log-amplitude panels under each image")
    cmp.add_argument("--crop", metavar="X,Y,W,H", help="show only this region of every image (default: all of it)")
    cmp.add_argument("--inset", metavar="X,Y",
                     help="centre of the zoomed inset, in image pixels (default: where the first result "
                          "changed its input most)")
    cmp.add_argument("--inset-size", type=int, default=48, help="side of the inset region in pixels (default 48)")
    cmp.add_argument("--panel-width", type=int, default=280, help="width of each panel in the sheet (default 280)")
    cmp.add_argument("--limit", type=int, help="only the first N inputs")

    train = sub.add_parser("train", help="train or fine-tune a network from a YAML config")
    train.add_argument("config", help="YAML config (see configs/), or a recipe: a list of configs trained in order, "
                                      "each warm-started from the one before (configs/default_model.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, dotted for nested keys (optim.lr=5e-4); repeatable")
    train.add_argument("--time-budget", type=float, metavar="MINUTES",
                       help="stop cleanly at a checkpoint before this many minutes; continue with --resume")
    train.add_argument("--resume", metavar="PATH|auto",
                       help="continue exactly from a run: its folder, last.safetensors or last.state.pt; "
                            "'auto': the config's own run folder when it holds a state")
    train.add_argument("--overwrite", action="store_true",
                       help="start the run again where its folder holds an earlier run's checkpoints (removed first)")
    train.add_argument("--use-committed", action="store_true",
                       help="recipes only: the stages up to the last one with committed weights are taken from those "
                            "weights where their run folders are gone, instead of being trained again")

    ft = sub.add_parser("finetune", help="FSDerain fine-tuning of a trained model (paired, or real rain with "
                                         "--unpaired)")
    ft.add_argument("--from", dest="source", required=True, metavar="CHECKPOINT",
                    help="weights to start from: any checkpoint derain run loads, or a run folder")
    ft.add_argument("data", metavar="DATA", help="paired training set (e.g. ../shared/data/rain100l-train), or a "
                                                 "folder of rainy photos with --unpaired")
    ft.add_argument("--config", help="YAML recipe (configs/fsderain_paired.yaml, configs/fsderain_unpaired.yaml); "
                                     "default: the built-in FSDerain recipe")
    ft.add_argument("--unpaired", action="store_true",
                    help="rainy photos without ground truth (our extension): clean-pool positives, "
                         "low-frequency consistency to the input")
    ft.add_argument("--model", help="network name, for checkpoints that do not name it (e.g. restormer for the "
                                    "official deraining.pth)")
    ft.add_argument("-o", "--output", metavar="RUN_DIR", help="run folder (default runs/<config name>)")
    ft.add_argument("--overwrite", action="store_true",
                    help="start again where the run folder holds an earlier run's checkpoints (removed first)")
    ft.add_argument("--time-budget", type=float, metavar="MINUTES",
                    help="stop cleanly, with the weights reached, before this many minutes")
    ft.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, dotted (loss.perceptual=0, data.patch=64); repeatable")

    ss = sub.add_parser("selfsup", help="Rain2Avoid: self-supervised deraining, trained on the rainy images alone")
    ss.add_argument("inputs", nargs="+", metavar="IMAGE", help="rainy image files, folders or glob patterns")
    ss.add_argument("-o", "--output", default="selfsup", help="output folder (default ./selfsup)")
    ss.add_argument("--variant", default="icassp", choices=SELFSUP_VARIANTS,
                    help="icassp: ICASSP 2023 random sampling, lr 1e-2 (default); nlss: the later non-local "
                         "stochastic sampling, lr 1e-3")
    ss.add_argument("--mode", default="per-image", choices=SELFSUP_MODES,
                    help="per-image: a fresh network per image (default); multiple: one network for all inputs")
    ss.add_argument("--fast", action="store_true",
                    help="CPU recipe: random-crop batches, short warmup+cosine schedule, half-width residual UNet, "
                         "lr 1e-3, bf16 where the CPU has it (default: the official 5,000-step recipe)")
    ss.add_argument("--steps", type=int, help="training steps (default: 5000 per image, --fast 300; multiple: "
                                               "2000 epochs of the folder, --fast 1200 steps)")
    ss.add_argument("--lr", type=float, help="learning rate (default: the variant's; --fast: 1e-3)")
    ss.add_argument("--width", type=int, help="UNet width (default 64, the paper's; --fast: 32)")
    ss.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                    help="output = input + UNet, identity at the start (default: on with --fast, off otherwise)")
    ss.add_argument("--batch", type=int, help="crops per step (default 1 whole image; --fast: 8; multiple: 64)")
    ss.add_argument("--crop", type=int, help="crop side, a multiple of 16; 0 = whole images")
    ss.add_argument("--pseudo", type=int, default=50, help="pseudo ground truths per image (default 50)")
    ss.add_argument("--seed", type=int, default=3, help="random seed (default 3, as the official scripts)")
    ss.add_argument("--precision", default="auto", choices=TRAINING_PRECISIONS,
                    help="auto: bf16 autocast with --fast where the CPU/GPU computes bf16 natively, else float32")
    ss.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    ss.add_argument("--save-masks", action="store_true", help="also write the LDGP rain masks to OUT/masks/")
    ss.add_argument("--save-pseudo", action="store_true",
                    help="also write the pseudo ground truths and their mean to OUT/pseudo/NAME/")
    ss.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    ss.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``derain`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS + TOP_LEVEL_OPTIONS:
        argv.insert(0, "run")  # short form: derain photo.jpg, derain -q photo.jpg -o clean.jpg
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return importlib.import_module(f"derain.commands.{COMMANDS[args.command]}").main(args)
    except DerainError as exc:
        print(f"derain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("derain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
