"""The shape of the package, read from its source: imports go one way, down the layers, and never in a circle.

Every ``import`` of every module under src/derain is read with ``ast`` (including imports inside functions and
under ``TYPE_CHECKING``: a lazy import is still a dependency). The layers are defined once, in :data:`LAYERS`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "derain"

# The layers, lowest first; a module may import from its own layer and the ones below it, never above.
# Metrics sit beside data, not above training: they are pure functions of images, which training validates
# with (PSNR) and the SSIM loss is built from. ``derain`` alone is the package's own __init__ (the library API).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("derain.errors",)),
    ("files", ("derain.files",)),
    ("data", ("derain.data", "derain.metrics")),
    ("models", ("derain.models",)),
    ("weights", ("derain.weights",)),
    ("inference", ("derain.inference",)),
    ("training", ("derain.losses", "derain.train", "derain.fsderain", "derain.rain2avoid")),
    ("api", ("derain", "derain.session", "derain.api_inputs")),
    ("commands", ("derain.commands", "derain.serve", "derain.video")),
    ("cli", ("derain.cli", "derain.__main__")),
]
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that module ``name`` imports (a name imported from a package's __init__ counts as
    the submodule when one of that name exists, else as the package)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                          for alias in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in MODULES:  # `import derain.x.y` names x's module y (or its attribute)
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the layer that holds ``module`` (the longest matching prefix decides)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "derain" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise KeyError(module)
    return best


def unit_of(module: str) -> str:
    """The room a module belongs to: its top-level sub-package (derain.inference), or itself at the top."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read_from_the_real_package():
    # The checks below mean something only if the reader sees the package's real arrows.
    assert "derain.cli" in MODULES and "derain.errors" in MODULES
    assert "derain.errors" in GRAPH["derain.cli"]
    assert sum(len(targets) for targets in GRAPH.values()) > 100


def test_every_module_has_a_layer():
    unplaced = [name for name in MODULES if _layer_or_none(name) is None]
    assert not unplaced, f"modules in no layer of LAYERS (add them there): {unplaced}"


def _layer_or_none(name: str) -> int | None:
    try:
        return layer_of(name)
    except KeyError:
        return None


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
              for name, targets in GRAPH.items() for target in sorted(targets)
              if None not in (_layer_or_none(name), _layer_or_none(target)) and layer_of(target) > layer_of(name)]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_circle_between_modules():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_circle_between_packages():
    units: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        units.setdefault(unit_of(name), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(name))
    cycle = _cycle(units)
    assert cycle is None, "import circle between packages: " + " -> ".join(cycle or [])


def test_the_top_level_holds_few_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules at the top of derain/: {top}"


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycle(graph) == expected
