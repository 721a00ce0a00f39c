"""The layout stays as docs/design.md draws it: the package is a set of blocks (folders) whose imports run
one way (cli -> experiments -> engine -> methods -> evaluation -> data / models -> config -> util), no import
cycles between modules (lazy imports inside functions included), every block says in its ``__init__.py``
what it is for, and every module of the package is listed in docs/design.md."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fcc_lt"
DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"

# lowest first: a block may import the blocks before it (and itself), never one after it
BLOCKS = ["util", "config", "models", "data", "evaluation", "methods", "engine", "experiments", "cli"]
PEERS = {frozenset({"models", "data"})}  # same level: neither may import the other


def modules() -> dict[str, Path]:
    return {".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): f
            for f in SRC.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fcc_lt"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fcc_lt"))
    return found & known


def block_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in BLOCKS else None


def test_no_import_cycles_between_modules() -> None:
    mods = modules()
    graph = {name: imports_of(path, set(mods)) - {name, "fcc_lt"} for name, path in mods.items()}
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


def test_blocks_import_one_way() -> None:
    mods = modules()
    wrong = []
    for name, path in mods.items():
        here = block_of(name)
        if here is None:
            continue
        for target in imports_of(path, set(mods)):
            there = block_of(target)
            if there is None or there == here:
                continue
            if BLOCKS.index(there) > BLOCKS.index(here) or frozenset({here, there}) in PEERS:
                wrong.append(f"{name} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the block order:\n" + "\n".join(sorted(wrong))


def test_every_block_is_a_folder_that_says_what_it_is_for() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert sorted(set(folders) - {"configs"}) == sorted(BLOCKS)
    for block in BLOCKS:
        doc = ast.get_docstring(ast.parse((PACKAGE / block / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "Imports:" in doc, f"{block}/__init__.py: a docstring that says what the block may import"


def test_no_flat_modules_beside_the_blocks() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"], flat


def test_the_design_lists_every_module() -> None:
    """Each module's file name is in the row of the design's block table for its folder (or the nearest
    folder above it that has a row; the package's own modules in the row 'top')."""
    rows = {}
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        if line.startswith("| "):
            key = line.split("|")[1].strip().strip("`").rstrip("/")
            rows[key] = line
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(PACKAGE)
        while str(folder) not in rows and folder != Path("."):
            folder = folder.parent
        row = rows.get("top" if folder == Path(".") else str(folder), "")
        if f"`{path.name}`" not in row:
            missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"docs/design.md's block table does not list {missing}"
