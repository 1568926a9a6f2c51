"""The import rules of the package, read from the source: layers that point one way, and no
cycles between files.

    foundation (airclass, config, ports, clients, logtext, measure, tls) → media | auth → rtmp | hls
    → streams → cluster → web → entry points

A module may import from its own package or from any lower layer, never from a higher one nor
from another package of its own layer (so RTMP and HLS meet only at media's frames). Imports
inside functions and under TYPE_CHECKING count: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

LAYERS: Mapping[str, int] = {
    "": 0, "config": 0, "ports": 0, "logtext": 0, "measure": 0, "tls": 0, "clients": 0,
    "media": 1, "auth": 1,
    "rtmp": 2, "hls": 2,
    "streams": 3,
    "cluster": 4,
    "web": 5,
    "slave": 6, "master": 6, "__main__": 6, "demo": 6, "loadtest": 6, "testsrc": 6,
}
"""Each top-level package or module of `airclass` and its layer."""


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported}: {self.why}"


def modules(root: Path, package: str = "airclass") -> dict[str, Path]:
    """Dotted module name -> file, for every module under `root` (the package's folder)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: Iterable[str]) -> Iterator[str]:
    """The modules of the package that `name` imports, wherever in the file."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            # `from pkg import module` names a module; `from module import name` does not.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def layer_of(module: str) -> tuple[str, int]:
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise KeyError(f"{module}: its package {top!r} has no layer in tests/layering.py")
    return top, LAYERS[top]


def check(root: Path, package: str = "airclass") -> list[Violation]:
    """Every import that breaks the rules, and every cycle between files."""
    found = modules(root, package)
    graph = {name: sorted(set(imports(name, path, found))) for name, path in found.items()}
    violations: list[Violation] = []
    for importer, targets in graph.items():
        top, rank = layer_of(importer)
        for imported in targets:
            their_top, their_rank = layer_of(imported)
            if their_top == top or imported == package:
                continue
            if their_rank > rank:
                violations.append(Violation(importer, imported, f"{their_top} is above {top}"))
            elif their_rank == rank:
                violations.append(
                    Violation(importer, imported, f"{their_top} and {top} are one layer")
                )
    violations += [Violation(cycle[0], cycle[1], "cycle " + " → ".join(cycle))
                   for cycle in cycles(graph)]
    return violations


def cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of files (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [[*group, group[0]] for group in groups]
