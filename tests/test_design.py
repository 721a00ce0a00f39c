"""The layout stays as docs/design.md draws it: no import cycles between fcc's modules (lazy imports inside
functions included), and every module of the package listed in docs/design.md."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def modules() -> dict[str, Path]:
    return {".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): f
            for f in SRC.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fcc"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fcc"))
    return found & known


def test_no_import_cycles_between_modules() -> None:
    mods = modules()
    graph = {name: imports_of(path, set(mods)) - {name, "fcc"} for name, path in mods.items()}
    cycles: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.add(tuple(path[path.index(nxt):]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {sorted(cycles)}"


def test_the_design_lists_every_module() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    missing = [name for name, path in modules().items() if path.name != "__init__.py"
               and f"{path.name}" not in text]
    assert not missing, f"docs/design.md does not list {missing}"
