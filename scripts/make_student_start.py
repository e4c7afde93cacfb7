"""Write the starting weights of the CPU student (issue 37): the default network with a 2x unshuffle stem.

    python scripts/make_student_start.py runs/general_stage2/last.safetensors runs/student_start.safetensors

The student keeps every level of the source network and unshuffles the image 2x more, so each convolution
runs on a quarter of the pixels (about 4x fewer multiply-adds). It starts as the source run at half size
(derain.models.fastderain.coarser_start_state_dict) and configs/student_stage1.yaml trains it from there.
"""
from __future__ import annotations

import argparse

from derain.weights.load import load_model
from derain.files.checkpoints import read_checkpoint, save_checkpoint
from derain.models.fastderain import FastDerain, coarser_start_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="trained FastDerain checkpoint (the teacher)")
    parser.add_argument("out", help="where to write the student's starting checkpoint")
    parser.add_argument("--factor", type=int, default=2, help="how many times more the student unshuffles")
    args = parser.parse_args()
    source, name = load_model(None, args.source)
    if not isinstance(source, FastDerain):
        raise SystemExit(f"{args.source} holds {name}, not a FastDerain")
    config = {**dict(read_checkpoint(args.source).get("config") or {}), "low_precision_residuals": True}
    config["unshuffle"] = source.unshuffle * args.factor
    student = FastDerain(**config)
    student.load_state_dict(coarser_start_state_dict(source.state_dict(), student))
    save_checkpoint(args.out, student, "fastderain", config, extra={"started_from": args.source})
    print(f"wrote {args.out}: {config}")


if __name__ == "__main__":
    main()
