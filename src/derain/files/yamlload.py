"""Reading YAML files strictly: a key written twice in one mapping is an error, not "the last one wins".

PyYAML keeps the last of two equal keys without a word, so ``total_steps: 12`` followed later by
``total_steps: 99`` trains 99 steps (and a garbled, doubly pasted config passes every check). Every config
reader of the project (training configs, recipes, fine-tuning configs, ``--set`` values) loads through
:func:`load_yaml_text`, which names the dotted key and both line numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from derain.errors import DerainError


def _check_duplicates(node: yaml.Node, path: str, source: str) -> None:
    """Walk the composed document and refuse a mapping that holds one key twice (``<<`` merges may repeat)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = key_node.value
                line = key_node.start_mark.line + 1
                dotted = f"{path}{key}"
                if key in seen:
                    raise DerainError(f"{source}: duplicate key '{dotted}' at line {line} "
                                      f"(first at line {seen[key]}); keep one of them")
                seen[key] = line
                _check_duplicates(value_node, f"{dotted}.", source)
            else:
                _check_duplicates(value_node, path, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path.rstrip('.')}[{i}].", source)


def load_yaml_text(text: str, source: str = "YAML") -> Any:
    """The data of one YAML document (safe types only); a duplicate key or a syntax error is a
    :class:`DerainError` that starts with ``source`` (e.g. ``config configs/x.yaml``)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(node, "", source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DerainError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}{where}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, what: str = "config") -> Any:
    """:func:`load_yaml_text` of the file at ``path``; a missing or unreadable file is one line too."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DerainError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DerainError(f"cannot read {what} {path}: {exc}") from None
    return load_yaml_text(text, f"{what} {path}")
