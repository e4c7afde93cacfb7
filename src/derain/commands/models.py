"""What ``derain models`` prints: the registered networks, their parameters and the bundled weights.

Nothing here imports torch or builds a network: the registry records each default configuration's parameter
count, and a bundled ``.safetensors`` file's own count is read from its JSON header (shapes only), so the list
prints at once however many networks are registered.
"""
from __future__ import annotations

import argparse
import json
import struct
import textwrap
from math import prod
from pathlib import Path

from derain.files import INT8_SCALE_SUFFIX
from derain.models.registry import ModelSpec, get_spec, list_specs

WIDTH = 100  # longest line printed
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # saved with the weights, not parameters


def safetensors_header(path: Path) -> dict:
    """The JSON header of a ``.safetensors`` file: tensor names with dtype and shape, and ``__metadata__``."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def bundled_weights() -> dict[str, tuple[Path, bool, dict]]:
    """``{model name: (file, whether it is the default model, its derain header)}`` for the shipped weights."""
    from derain.weights import BUNDLED, default_checkpoint

    found: dict[str, tuple[Path, bool, dict]] = {}
    files = [(default_checkpoint(), True)] + [(Path(__file__).parents[1] / "weights" / f, False)
                                               for f in BUNDLED.values()]
    for path, default in files:
        if path is None or not path.is_file():
            continue
        header = safetensors_header(path)
        info = json.loads((header.get("__metadata__") or {}).get("derain", "{}"))
        if info.get("model"):
            found.setdefault(info["model"], (path, default, header))
    return found


def parameters_in(header: dict) -> int:
    """Parameter values held in a safetensors header (normalisation statistics and 8-bit weights' scales left
    out)."""
    return sum(prod(entry["shape"]) for name, entry in header.items()
               if name != "__metadata__" and not name.endswith((*_BUFFERS, INT8_SCALE_SUFFIX)))


def _parameters(spec: ModelSpec) -> int:
    if spec.parameters is not None:
        return spec.parameters
    import torch  # a model registered without its count: build it on the meta device (no memory, no init)

    from derain.models.registry import build, count_parameters
    with torch.device("meta"):
        return count_parameters(build(spec.name))


def models_table() -> str:
    """The table of ``derain models``: one line per network, bundled weights marked."""
    bundled = bundled_weights()
    rows = []
    for spec in list_specs():
        weights = bundled.get(spec.name)
        count = parameters_in(weights[2]) if weights else _parameters(spec)
        mark = ("default, bundled" if weights[1] else "bundled") if weights else ""
        rows.append((spec.name, f"{count:,}", str(spec.size_multiple), mark, spec.description))
    head = ("model", "parameters", "multiple", "weights", "about")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        text = "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                          r[3].ljust(widths[3]), r[4]])
        if len(text) <= WIDTH:
            return text
        return text[:WIDTH - 4].rsplit(" ", 1)[0].rstrip(",;:(") + " ..."  # whole words; NAME shows it all
    lines = [line(head), line(tuple("-" * w for w in widths) + ("-----",)), *map(line, rows)]
    notes = ["parameters: of the bundled weights where a model is bundled, else of its default configuration.",
             "derain PHOTO uses the default model; --model NAME --weights FILE any other, and --weights FILE",
             "alone recognises the network from the file. derain models NAME: one model in full.",
             _this_cpu(bundled)]
    return "\n".join(line.rstrip() for line in lines) + "\n\n" + "\n".join(notes)


def _this_cpu(bundled: dict) -> str:
    """Which model ``derain PHOTO`` runs on this CPU (derain.inference.model_choice, without torch)."""
    from derain.inference.hardware import STUDENT_KINDS, cpu_kind
    from derain.weights import DEFAULT, STUDENT

    kind = cpu_kind()
    if kind in STUDENT_KINDS and STUDENT in bundled:
        return (f"This CPU ({kind.value}, no native bf16): derain PHOTO runs {STUDENT}, the default "
                f"model's CPU student; --model {DEFAULT} runs the full default model.")
    return f"This CPU ({kind.value}): derain PHOTO runs the default model."


def describe_model(name: str) -> str:
    """``derain models NAME``: the description, size multiple, default configuration and bundled weights."""
    spec = get_spec(name)
    wrap = textwrap.TextWrapper(width=WIDTH, subsequent_indent="    ", break_long_words=False)
    config = ", ".join(f"{k}={v}" for k, v in spec.default_config.items())
    out = [spec.name, *wrap.wrap(f"  {spec.description}"),
           *wrap.wrap(f"  parameters (default configuration): {_parameters(spec):,}; "
                      f"image sides padded to multiples of {spec.size_multiple}"),
           *wrap.wrap(f"  default configuration: {config}")]
    if spec.tasks:
        out += wrap.wrap(f"  tasks (derain run --task): {', '.join(spec.tasks)}")
    weights = bundled_weights().get(spec.name)
    if weights:
        path, default, header = weights
        info = json.loads(header["__metadata__"]["derain"])
        held = ", ".join(f"{k}={v}" for k, v in (info.get("config") or {}).items())
        out += wrap.wrap(f"  bundled weights{' (the default model)' if default else ''}: {path.name}, "
                         f"{parameters_in(header):,} parameters: {held}")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    """``derain models``: list the registered networks, or describe one."""
    print(describe_model(args.name) if args.name else models_table())
    return 0
