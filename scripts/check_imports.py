"""Fail when the package's modules import each other in a cycle.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
Importing ``MetaPuppet.a.b`` also runs ``MetaPuppet/a/__init__.py``, so it counts as an
import of the package ``MetaPuppet.a`` too, except from inside ``MetaPuppet.a`` (a module's
own packages are loaded before it anyway) and for the root package (the public façade
that imports everything; nothing inside imports it).

    python scripts/check_imports.py            # exit 1 and the cycles, or a one-line OK
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "MetaPuppet"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, however and wherever it does."""
    name = module_name(path)
    here = name if is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        for target in targets:
            if not target.startswith(PACKAGE):
                continue
            # the module itself, or the deepest package of ours it names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            parts = target.split(".")
            # importing a.b.c runs the __init__ of every package on the way (not the root)
            for depth in range(2, len(parts) + 1):
                found.add(".".join(parts[:depth]))
    # a module's own packages are loaded before it, whatever it imports: no edge
    ancestors = {".".join(name.split(".")[:depth]) for depth in range(1, name.count(".") + 1)}
    return found - ancestors - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
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
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {module_name(f): imported(f, modules) for f in files if module_name(f) != PACKAGE}
    for deps in graph.values():
        deps.discard(PACKAGE)
    found = cycles(graph)
    if not found:
        edges = sum(len(d) for d in graph.values())
        print(f"no import cycle among {len(graph)} modules ({edges} imports)")
        return 0
    for component in found:
        print("import cycle among: " + ", ".join(component))
        for module in component:
            inside = sorted(graph[module] & set(component))
            print(f"  {module} -> {', '.join(inside)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
