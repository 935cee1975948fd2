"""The import drawing of wildix_ast: layers are folders, imports only run down (or stay in
their layer), and no module reaches itself through imports (no circle). Every import counts,
lazy ones inside functions and those under TYPE_CHECKING included: a circle hidden behind a
function call is still a circle to a reader.

Run as a script to print the drawing's counts: `python tests/unit/test_layers.py`."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "wildix_ast"

#: Lowest first. A module belongs to the longest prefix listed (`wildix_ast` itself: only
#: the package's `__init__`, so a new top-level module must be placed here); it may import
#: its own layer and the layers below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("wildix_ast.errors", "wildix_ast.templates", "wildix_ast.files", "wildix_ast.cache",
     "wildix_ast.conf",
     "wildix_ast.ami", "wildix_ast.asterisk_cli", "wildix_ast.testing.crash_points",
     "wildix_ast"),
    ("wildix_ast.model",),
    ("wildix_ast.sounds",),
    ("wildix_ast.store",),
    ("wildix_ast.mail",),
    ("wildix_ast.calls",),
    ("wildix_ast.asterisk",),
    ("wildix_ast.apply",),
    ("wildix_ast.services",),
    ("wildix_ast.lab",),
    # the deploy host is driven like a verb (its own `python -m`)
    ("wildix_ast.cli", "wildix_ast.__main__", "wildix_ast.testing"),
)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(found: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) pairs between the package's modules."""
    arrows: set[tuple[str, str]] = set()
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                # the module itself, or the longest module prefix of `package.attribute`
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    arrows.add((name, target))
    return arrows


def layer(module: str) -> int:
    best, level = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (module.startswith(prefix + ".")
                                          and prefix != "wildix_ast")
            if inside and len(prefix) > best:
                best, level = len(prefix), index
    return level


def upward(arrows: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in arrows if layer(b) > layer(a))


def circles(arrows: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in arrows:
        graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted({m for pair in arrows for m in pair}):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def rooms(found: dict[str, Path]) -> set[str]:
    """A room: a top-level module, or a folder of modules (sub-folders count on their own)."""
    return {name if path.name == "__init__.py" else name.rpartition(".")[0]
            for name, path in found.items()} - {"wildix_ast"} | {
        name for name, path in found.items()
        if name.count(".") == 1 and path.name != "__init__.py"}


def test_every_module_has_a_layer() -> None:
    assert not [m for m in modules() if layer(m) < 0]


def test_imports_only_run_down() -> None:
    assert upward(imports(modules())) == []


def test_no_circles() -> None:
    assert circles(imports(modules())) == []


def test_the_checks_see_what_they_must() -> None:
    """The walker sees lazy and TYPE_CHECKING imports (cli.main imports its groups lazily),
    and a made-up upward arrow and circle are found."""
    arrows = imports(modules())
    assert ("wildix_ast.cli.main", "wildix_ast.cli.lab") in arrows
    assert upward({("wildix_ast.model.site", "wildix_ast.cli.main")})
    assert circles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


if __name__ == "__main__":
    found = modules()
    arrows = imports(found)
    room_of = {m: max((r for r in rooms(found) if m == r or m.startswith(r + ".")),
                      key=len, default=m) for m in found}
    room_arrows = {(room_of[a], room_of[b]) for a, b in arrows if room_of[a] != room_of[b]}
    print(f"modules {len(found)}, rooms {len(rooms(found))}, arrows between rooms "
          f"{len(room_arrows)}, circles {len(circles(arrows))}, "
          f"imports running up {len(upward(arrows))}")
    for group in circles(arrows):
        print("circle:", " -> ".join(group))
    for a, b in upward(arrows):
        print(f"up: {a} -> {b}")
    sys.exit(0)
