"""The import graph of a source tree, read from the code (every import, those inside functions included), and
the rules a layered package is held to: each layer imports only itself and the layers below it, and no module
imports another that (directly or not) imports it back. Used by tests/unit/test_layers.py, on this checkout and on
small trees made to break a rule."""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Edge:
    """`source` imports `target` at `line` (inside a function or not)."""

    source: str
    target: str
    line: int


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package is its __init__.py)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(root: Path, packages: Iterable[str]) -> tuple[dict[str, Path], list[Edge]]:
    """The modules of the packages and every import between them.

    `from a.b import c` is an import of the module a.b.c when there is one, else of a.b; importing a module does not
    count as importing the packages above it (Python runs their __init__ first, but that is their business)."""
    known = modules(root, packages)
    edges: list[Edge] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            for target in _targets(node, name, is_package):
                resolved = _resolve(target, known)
                if resolved is not None and resolved != name:
                    edges.append(Edge(name, resolved, getattr(node, "lineno", 0)))
    return known, edges


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The module an import names: itself if known, else the nearest known module above it (a name in it)."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _dedupe(edges: list[Edge]) -> list[Edge]:
    """From `from a import b` both a.b and a are targets; keep the most specific one per import line."""
    by_line: dict[tuple[str, int], list[Edge]] = {}
    for edge in edges:
        by_line.setdefault((edge.source, edge.line), []).append(edge)
    out: list[Edge] = []
    for group in by_line.values():
        targets = {e.target for e in group}
        out += [e for e in group if not any(t != e.target and t.startswith(e.target + ".") for t in targets)]
    return sorted(set(out), key=lambda e: (e.source, e.line, e.target))


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> int | None:
    """The index of the layer a module belongs to: the layer with the longest matching prefix."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def upward(edges: list[Edge], layers: Sequence[Sequence[str]]) -> list[str]:
    """Every import of a higher layer (or of a module in no layer), as `source:line -> target`."""
    found = []
    for edge in _dedupe(edges):
        source, target = layer_of(edge.source, layers), layer_of(edge.target, layers)
        if source is None or target is None or target > source:
            found.append(f"{edge.source}:{edge.line} -> {edge.target}")
    return found


def cycles(edges: list[Edge]) -> list[str]:
    """One import cycle, as `a -> b -> a` (empty if there is none: graphlib finds one at a time)."""
    graph: dict[str, set[str]] = {}
    for edge in _dedupe(edges):
        graph.setdefault(edge.source, set()).add(edge.target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return [" -> ".join(exc.args[1])]
    return []
