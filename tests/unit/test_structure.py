"""The package's shape: wings by stage, imports that run one way, small modules, notebooks
that only call.

Wings, lowest first (a wing may use the wings below it, never one beside or above it):
core < data < models < {cloud, edge, network} < collab < report < {run, assess} < cli.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workbench"
RANK = {
    "core": 0,
    "data": 1,
    "models": 2,
    "cloud": 3,
    "edge": 3,
    "network": 3,
    "collab": 4,
    "report": 5,
    "run": 6,
    "assess": 6,
    "cli": 7,
    "__main__": 8,
}
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, int, list[str]]]:
    """(imported workbench module, line, names taken from it) for every import, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "workbench" and not node.module.startswith("workbench."):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:  # `from workbench.edge import runtime`: the module itself
                    found.append((sub, node.lineno, []))
                else:
                    found.append((node.module, node.lineno, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [
                (a.name, node.lineno, []) for a in node.names if a.name.startswith("workbench")
            ]
    return found


def wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_wing():
    for module in MODULES:
        assert module == "workbench" or wing(module) in RANK, f"{module} is in no wing"


def test_imports_run_from_higher_wings_to_lower_ones():
    wrong = []
    for module, path in MODULES.items():
        here = wing(module)
        if here is None:  # the package root only selects the Keras flavour
            continue
        for target, line, _ in imports_of(path):
            there = wing(target)
            if there is None or there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{module}:{line} imports {target} ({here} -> {there})")
    assert not wrong, "imports against the wing order:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {
        m: {t for t, _, _ in imports_of(p) if t in MODULES and t != m} for m, p in MODULES.items()
    }
    graph["workbench"] = set()  # the root's lazy check_keras import is not a dependency
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_crosses_a_module():
    wrong = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for target, line, names in imports_of(path):
            wrong += [
                f"{module}:{line} imports {target}.{n}"
                for n in names
                if n.startswith("_") and not n.endswith("__")
            ]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("workbench")
            ):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not (node.attr.startswith("__") and node.attr.endswith("__"))
            ):
                wrong.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by job"


def test_every_wing_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring"


@pytest.mark.parametrize(  # the numbered notebooks and their solutions
    "notebook", sorted((ROOT / "notebooks").glob("**/[0-9][0-9]-*.ipynb"))
)
def test_notebooks_only_call(notebook):
    """Loops that build or measure belong in the package, with a test."""
    cells = json.loads(notebook.read_text())["cells"]
    loops = [
        f"cell {i}: {line.strip()}"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if line.lstrip().startswith(("for ", "while ", "async for "))
    ]
    assert not loops, f"{notebook.name} loops in its cells:\n" + "\n".join(loops)
