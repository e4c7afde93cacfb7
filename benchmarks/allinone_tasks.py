"""The per-task table of all-in-one restoration (issue 15): every checkpoint on every task, in one run.

    python benchmarks/allinone_tasks.py --weights NAME=CKPT [--weights NAME=CKPT ...] [--threads 2]
        [--sets runs/allinone_sets] [--limit N] [--task auto | --oracle]

Tasks and protocols: rain on the real Rain100L (``matlab-y``, the deraining papers' protocol); noise at sigma
15/25/50, haze, motion blur and low light synthesised from CBSD68 with the fixed seed of
``derain.data.tasks.load_synthetic_test_set`` (``rgb``; the sets are **synthetic** and named so). The synthetic
sets are written once under ``--sets`` and reused, so ``derain bench CKPT runs/allinone_sets/NAME`` scores
the same pixels. Every image goes through the reference float32 path (as ``derain bench``), routed as
``--task`` says (``auto``: each model's degradation selector, the blind all-in-one setting; ``--oracle``: each
set's own task, as a perfect selector would). For models with a
selector, the table also counts how often it chose the right task. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from derain.weights.load import load_model
from derain.data.pairs import find_pairs
from derain.data.tasks import SYNTHETIC_TEST_TASKS, load_synthetic_test_set, synthetic_set_name, write_test_set
from derain.files.imageio import read_uint8_rgb
from derain.inference.restore import InferenceOptions, all_in_one_network, prepare_for, restore, set_task
from derain.metrics import psnr_ssim
from derain.models import count_parameters, get_spec

RAIN100L = Path("../shared/data/rain100l")
CBSD68 = Path("../shared/data/clean/cbsd68")
REFERENCE = InferenceOptions(tile=0, fast=False)


def test_sets(folder: Path) -> list[tuple[str, str, str, Path]]:
    """(task, set name, protocol, folder) of every test set, the synthetic ones written if missing."""
    sets = [("rain", "rain100l", "matlab-y", RAIN100L)]
    for task, sigma in SYNTHETIC_TEST_TASKS:
        name = synthetic_set_name(task, CBSD68.name, sigma if task == "noise" else None)
        target = folder / name
        if not (target / "input").is_dir():
            _, triples = load_synthetic_test_set(task, CBSD68, sigma)
            write_test_set(triples, target)
        sets.append((task, name, "rgb", target))
    return sets


def evaluate(label: str, weights: str, sets, task: str | None, limit: int | None, oracle: bool = False) -> dict:
    """Mean PSNR/SSIM per set and the selector's choices of one checkpoint."""
    model, name = load_model(None, weights)
    parameters = count_parameters(model)  # before preparing, which freezes them
    # Prepared once: restore() would otherwise prepare a fresh copy per call, whose choices we would not see.
    model = prepare_for(model, REFERENCE, torch.device("cpu"))
    routed = set_task(model, name, task) if all_in_one_network(model) is not None else None
    multiple = get_spec(name).size_multiple
    results = {"label": label, "model": name, "params": parameters, "sets": {}}
    start = time.perf_counter()
    for kind, set_name, protocol, folder in sets:
        if oracle and routed is not None:
            set_task(model, name, kind)  # the true task of the set: what a perfect selector would choose
        pairs = find_pairs(folder)[:limit or None]
        psnrs, ssims, choices = [], [], Counter()
        for pair in pairs:
            x = torch.from_numpy(np.array(read_uint8_rgb(pair.input))).permute(2, 0, 1)[None].float() / 255.0
            with torch.no_grad():
                y = restore(model, x, multiple, REFERENCE, torch.device("cpu"))
            pred = np.clip(np.rint(y[0].permute(1, 2, 0).numpy() * 255.0), 0, 255).astype(np.uint8)
            p, s = psnr_ssim(pred, read_uint8_rgb(pair.target), protocol)
            psnrs.append(p)
            ssims.append(s)
            if routed is not None and not oracle:
                choices.update(routed.last_choice)
        results["sets"][set_name] = (float(np.mean(psnrs)), float(np.mean(ssims)), choices, len(pairs))
        print(f"{label} {set_name}: {np.mean(psnrs):.2f} / {np.mean(ssims):.4f}"
              + (f"  chose {dict(choices)}" if routed is not None else ""), flush=True)
    results["seconds"] = time.perf_counter() - start
    return results


def input_scores(sets, limit: int | None) -> dict[str, tuple[float, float]]:
    """The degraded inputs' own PSNR/SSIM, under each set's protocol."""
    out = {}
    for _, set_name, protocol, folder in sets:
        pairs = find_pairs(folder)[:limit or None]
        values = [psnr_ssim(read_uint8_rgb(p.input), read_uint8_rgb(p.target), protocol) for p in pairs]
        out[set_name] = (float(np.mean([v[0] for v in values])), float(np.mean([v[1] for v in values])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True, metavar="NAME=CKPT",
                        help="a checkpoint and the column label to report it under (repeatable)")
    parser.add_argument("--sets", type=Path, default=Path("runs/allinone_sets"),
                        help="where the synthetic test sets are written (default runs/allinone_sets)")
    parser.add_argument("--task", default="auto", help="auto (the selector; default) or a task to force")
    parser.add_argument("--oracle", action="store_true",
                        help="route each set to its own task (a perfect selector): separates routing errors "
                             "from restoration quality")
    parser.add_argument("--limit", type=int, help="only the first N images of each set (quick checks)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for data in (RAIN100L, CBSD68):
        if not data.is_dir():
            raise SystemExit(f"allinone_tasks: {data} is missing (run from the project root beside ../shared)")
    checkpoints = []
    for item in args.weights:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"allinone_tasks: --weights wants NAME=CKPT with an existing file, got {item!r}")
        checkpoints.append((label, path))

    sets = test_sets(args.sets)
    task = None if args.task == "auto" else args.task
    inputs = input_scores(sets, args.limit)
    results = [evaluate(label, path, sets, task, args.limit, args.oracle) for label, path in checkpoints]

    header = ["task", "test set", "protocol", "input"] + [r["label"] for r in results]
    selectors = [r for r in results if any(v[2] for v in r["sets"].values())]
    header += [f"{r['label']}: selector right" for r in selectors]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for kind, set_name, protocol, _ in sets:
        row = [kind, set_name, protocol, "%.2f / %.3f" % inputs[set_name]]
        row += ["%.2f / %.3f" % r["sets"][set_name][:2] for r in results]
        for r in selectors:
            _, _, choices, n = r["sets"][set_name]
            others = ", ".join(f"{k} {v}" for k, v in choices.most_common() if k != kind)
            row.append(f"{choices[kind]} / {n}" + (f" ({others})" if others else ""))
        print("| " + " | ".join(row) + " |")
    for r in results:
        print(f"{r['label']}: {r['model']}, {r['params'] / 1e6:.2f}M parameters, {r['seconds']:.0f} s for the table")


if __name__ == "__main__":
    main()
