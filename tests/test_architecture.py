"""The package's shape (docs/architecture.md): small modules, no import cycles, layers kept.

The import graph is read from the source with ``ast``: every ``import`` statement, at module
level or inside a function (not those under ``if TYPE_CHECKING:``), is an edge from the
importing module to the robens module it names (``from robens.a import b`` names
``robens.a.b`` when that is a module, else ``robens.a``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "robens"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "robens"]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module.split(".")[0] != "robens":
            return []
        out = []
        for a in node.names:
            sub = f"{node.module}.{a.name}"
            out.append(sub if sub in MODULES else node.module)
        return out
    return []


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = {t for node in _runtime_nodes(tree) for t in _targets(node)}
        graph[name] = {t for t in edges if t in MODULES and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_is_longer_than_500_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


def test_no_two_modules_import_each_other():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _guarded_robens_imports(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        catches = [h.type for h in node.handlers if h.type is not None]
        names = {n.id for c in catches for n in ast.walk(c) if isinstance(n, ast.Name)}
        if not names & {"ImportError", "ModuleNotFoundError"}:
            continue
        for stmt in node.body:
            if any(_targets(n) for n in ast.walk(stmt)):
                lines.append(node.lineno)
    return lines


def test_no_try_except_import_error_around_robens_modules():
    found = {n: _guarded_robens_imports(ast.parse(p.read_text())) for n, p in MODULES.items()}
    assert {n: v for n, v in found.items() if v} == {}


@pytest.mark.parametrize("forbidden", ["robens.objectives", "robens.models.heads"])
def test_attacks_import_nothing_from_objectives_or_model_heads(forbidden):
    graph = import_graph()
    bad = {
        name: sorted(t for t in targets if t == forbidden or t.startswith(forbidden + "."))
        for name, targets in graph.items() if name.startswith("robens.attacks")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_class_name_checks():
    hits = [
        f"{n}:{i}" for n, p in MODULES.items()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "__name__ ==" in line and "type(" in line
    ]
    assert hits == []
