"""Copy a trained checkpoint into the package as the bundled default model (float16 safetensors).

    python scripts/bundle_default.py runs/fastderain_rain100l/last.pt [--dest src/derain/weights/default.safetensors]

The weights are stored in float16 (half the size; the package limit is 10 MB) and cast back to float32 on
load. The script scores the float16 copy against the original on two Rain100L images and refuses to write
it when they differ by more than 0.01 dB, so rounding can never silently cost quality.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from derain.weights.load import load_model  # noqa: E402
from derain.files.checkpoints import read_checkpoint, save_checkpoint  # noqa: E402
from derain.data import find_pairs  # noqa: E402
from derain.files.imageio import read_image, read_uint8_rgb  # noqa: E402
from derain.inference.restore import InferenceOptions, restore  # noqa: E402
from derain.metrics import psnr_ssim  # noqa: E402
from derain.models import get_spec  # noqa: E402


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
    args = parser.parse_args()
    model, name = load_model(None, args.checkpoint)
    header = read_checkpoint(args.checkpoint)
    extra = {"step": header.get("step"), "source": args.checkpoint.name}
    tmp = args.dest.with_name("candidate.safetensors")
    save_checkpoint(tmp, model, args.name or name, header.get("config") or {}, extra=extra, dtype=torch.float16)
    half, _ = load_model(None, tmp)
    pairs = find_pairs(ROOT.parent / "shared" / "data" / "rain100l")[:2]
    full_db, half_db = score(model, name, pairs), score(half, name, pairs)
    print(f"float32 {full_db:.4f} dB, float16 copy {half_db:.4f} dB on {len(pairs)} Rain100L images")
    if abs(full_db - half_db) > 0.01:
        tmp.unlink()
        sys.exit("float16 copy differs by more than 0.01 dB; not bundled")
    tmp.replace(args.dest)
    print(f"wrote {args.dest} ({args.dest.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
