"""Copy a trained checkpoint into the package as the bundled default model (float16 or 8-bit safetensors).

    python scripts/bundle_default.py runs/fastderain_rain100l/last.pt [--dest src/derain/weights/default.safetensors]
    python scripts/bundle_default.py runs/default_experts/last.safetensors --int8 --pairs 10

The weights are stored in float16 (half the size; the package limit is 10 MB), or with ``--int8`` in 8 bits
with a scale per output channel (a quarter: the rain experts hold 6.4M parameters), and cast back to float32
on load. The script scores the copy against the original on the first ``--pairs`` Rain100L images and refuses
to write it when they differ by more than ``--tolerance`` dB, so rounding can never silently cost quality.
Training-only options (the experts' ``freeze_experts``) are left out of the bundled configuration: a model
fine-tuned from the bundle trains all of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from derain.data import find_pairs  # noqa: E402
from derain.files.checkpoints import read_checkpoint, save_checkpoint  # noqa: E402
from derain.files.imageio import read_image, read_uint8_rgb  # noqa: E402
from derain.inference.restore import InferenceOptions, restore  # noqa: E402
from derain.metrics import psnr_ssim  # noqa: E402
from derain.models import get_spec  # noqa: E402
from derain.weights.load import load_model  # noqa: E402

TRAINING_ONLY = ("freeze_experts",)  # model options that shape training, not the network


def score(model: torch.nn.Module, name: str, pairs) -> float:
    values = []
    for pair in pairs:
        x = torch.from_numpy(read_image(pair.input).pixels).permute(2, 0, 1)[None]
        y = restore(model, x, get_spec(name).size_multiple, InferenceOptions(precision="fp32"))
        pred = np.clip(np.rint(y[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
        values.append(psnr_ssim(pred, read_uint8_rgb(pair.target), "matlab-y")[0])
    return float(np.mean(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dest", type=Path, default=ROOT / "src" / "derain" / "weights" / "default.safetensors")
    parser.add_argument("--name", help="the registry name the bundle declares (e.g. fastderain-rain100l; default: "
                                       "the checkpoint's network)")
    parser.add_argument("--int8", action="store_true", help="8-bit weights (per output channel) instead of float16")
    parser.add_argument("--pairs", type=int, default=2, help="Rain100L pairs the copy is checked on (default 2)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest PSNR change allowed, dB (0.01)")
    args = parser.parse_args()
    model, name = load_model(None, args.checkpoint)
    header = read_checkpoint(args.checkpoint)
    extra = {"step": header.get("step"), "source": args.checkpoint.name}
    config = {k: v for k, v in (header.get("config") or {}).items() if k not in TRAINING_ONLY}
    tmp = args.dest.with_name("candidate.safetensors")
    save_checkpoint(tmp, model, args.name or name, config, extra=extra,
                    dtype=None if args.int8 else torch.float16, int8_weights=args.int8)
    copy, _ = load_model(None, tmp)
    kind = "int8" if args.int8 else "float16"
    pairs = find_pairs(ROOT.parent / "shared" / "data" / "rain100l")[:args.pairs]
    full_db, copy_db = score(model, name, pairs), score(copy, name, pairs)
    print(f"float32 {full_db:.4f} dB, {kind} copy {copy_db:.4f} dB on {len(pairs)} Rain100L images")
    if abs(full_db - copy_db) > args.tolerance:
        tmp.unlink()
        sys.exit(f"{kind} copy differs by more than {args.tolerance} dB; not bundled")
    tmp.replace(args.dest)
    print(f"wrote {args.dest} ({args.dest.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
