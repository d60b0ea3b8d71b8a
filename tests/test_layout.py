"""The package layout of issue 11, checked from the source: layers import downwards only.

Platform modules (the top level of `adlake` and `adlake.settings`) import no layer; a layer
imports the platform and lower layers; nothing forms a cycle; no module passes 500 lines;
the test-data generator stays out of the production package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
# Lowest first: a module may import its own layer, the platform and the layers before it.
LAYERS = ("bronze", "silver", "gold", "quality", "ops", "notebook")
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(LIB.glob("adlake*/**/*.py"))}


def imported(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """Every known module `path` imports, at any depth of the file (function-level too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from adlake import storage` imports the module adlake.storage.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not _is_package_of(target, name):
                yield target


def _is_package_of(target: str, name: str) -> bool:
    return name.startswith(target + ".") and target.count(".") < name.count(".")


def layer_of(name: str) -> str | None:
    """The layer of an `adlake` module, or None for the platform."""
    parts = name.split(".")
    if parts[0] != "adlake" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in LAYERS else None


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(path, name, known)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up: platform -> layer, or a layer -> a higher layer."""
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if source.startswith("adlake_datagen") or target.startswith("adlake_datagen"):
                if target.startswith("adlake_datagen") and not source.startswith("adlake_datagen"):
                    bad.append(f"{source} -> {target} (the generator is a test-data tool)")
                continue
            low, high = layer_of(target), layer_of(source)
            if low is None:
                continue
            if high is None or LAYERS.index(low) > LAYERS.index(high):
                bad.append(f"{source} ({high or 'platform'}) -> {target} ({low})")
    return bad


def test_the_walk_sees_imports_of_every_form(tmp_path: Path) -> None:
    pkg = tmp_path / "adlake"
    (pkg / "gold").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "gold" / "__init__.py").write_text("")
    (pkg / "storage.py").write_text("def f():\n    from adlake.gold import run\n")
    (pkg / "gold" / "run.py").write_text("from .. import storage\nfrom . import models\n")
    (pkg / "gold" / "models.py").write_text("import adlake.storage as s\n")
    known = {"adlake", "adlake.storage", "adlake.gold", "adlake.gold.run", "adlake.gold.models"}

    def walk(relative: str, name: str) -> set[str]:
        return set(imported(pkg / relative, name, known))

    assert walk("storage.py", "adlake.storage") == {"adlake.gold.run", "adlake.gold"}
    assert walk("gold/run.py", "adlake.gold.run") == {"adlake.storage", "adlake.gold.models"}
    assert walk("gold/models.py", "adlake.gold.models") == {"adlake.storage"}
    graph = {
        "adlake.storage": {"adlake.gold.run"},
        "adlake.gold.run": {"adlake.storage", "adlake.gold.models"},
        "adlake.gold.models": {"adlake.storage"},
    }
    assert cycles(graph) == [["adlake.gold.models", "adlake.gold.run", "adlake.storage"]]
    assert wrong_way(graph) == ["adlake.storage (platform) -> adlake.gold.run (gold)"]


def test_no_import_cycle_in_lib() -> None:
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers() -> None:
    assert wrong_way(import_graph()) == []


def test_every_layer_exists() -> None:
    found = modules()
    assert {layer for layer in LAYERS if f"adlake.{layer}" in found} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_500_lines(name: str) -> None:
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
