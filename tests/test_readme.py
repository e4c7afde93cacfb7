"""The README's shell commands work as written (issue 38 item 14): every `derain` command in its bash blocks
parses with the real command line (subcommand, flags, their values), `derain eval --pred DIR` is preceded by a
command that writes DIR, and the official checkpoints it names say where they come from."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from derain.cli import SUBCOMMANDS, TOP_LEVEL_OPTIONS, build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def shell_commands(text: str) -> list[str]:
    """Each command of the README's bash blocks, in order: continuation lines joined, comments dropped, and
    `a && b` split into its commands."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            commands += [part.strip() for part in re.split(r"&&|\|\||;|\|", line) if part.strip()]
    return commands


def derain_args(command: str) -> list[str] | None:
    """The arguments after `derain` (or `python -m derain.cli`, `torchrun ... -m derain.cli`), else None."""
    words = shlex.split(command)
    for i, word in enumerate(words):  # a shell redirection ends the command's own arguments
        if word in (">", ">>", "<", "2>") or word.startswith((">", "2>")):
            words = words[:i]
            break
    if words and words[0] == "derain":
        return words[1:]
    if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] in ("derain",
                                                                                              "derain.cli"):
        return words[words.index("-m") + 2:]
    return None


def readme_derain_commands() -> list[list[str]]:
    return [args for args in map(derain_args, shell_commands(README.read_text())) if args is not None]


def test_the_readme_has_derain_commands():
    commands = readme_derain_commands()
    assert len(commands) > 20
    assert {args[0] for args in commands if args[0] in SUBCOMMANDS} >= {"run", "eval", "bench", "models", "train"}


@pytest.mark.parametrize("args", readme_derain_commands(), ids=" ".join)
def test_every_readme_command_parses(args):
    parser = build_parser()
    argv = list(args)
    if argv and argv[0] not in SUBCOMMANDS + TOP_LEVEL_OPTIONS:
        argv.insert(0, "run")  # the short form, as derain.cli.main reads it
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`derain {' '.join(args)}` does not parse (exit {exc.code})")


def _written_by(args: list[str]) -> list[str]:
    """Folders or files a command writes: its -o/--output/--save/--out value."""
    out = []
    for flag in ("-o", "--output", "--save", "--out"):
        for i, word in enumerate(args[:-1]):
            if word == flag:
                out.append(args[i + 1].rstrip("/"))
    return out


def test_eval_results_are_made_by_an_earlier_command():
    written: list[str] = []
    for args in readme_derain_commands():
        if args[0] == "eval" and "--pred" in args:
            pred = args[args.index("--pred") + 1].rstrip("/")
            made = pred.startswith("../shared/") or any(pred == w or pred.startswith(w + "/") for w in written)
            assert made, f"`derain {' '.join(args)}`: no earlier README command writes {pred}"
        written += _written_by(args)


def test_official_checkpoints_say_where_they_come_from():
    text = README.read_text()
    for name in sorted(set(re.findall(r"\b[\w-]+\.pth\b", text))):
        sentences = [s for s in re.split(r"(?<=[.!?])\s", text) if name in s]
        assert any(re.search(r"download|https://|github\.com/", s, re.I) for s in sentences), \
            f"the README names {name} but never says where it comes from"
