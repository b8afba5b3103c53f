"""The project's layering (issue 20), read from the source with ``ast`` (nothing is imported):
no import cycle among project modules (imports inside functions count too), helpers.py (the
lesson) imports only numpy and the standard library, no private name crosses a module boundary,
and no module is too long to read (helpers.py <= 500 lines, every other module <= 600)."""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbook", "benchmarks", "tools")
LIMITS = {"helpers": 500}
DEFAULT_LIMIT = 600


def project_modules() -> dict:
    """{dotted name: path} of helpers.py and every .py file in workbook/, benchmarks/, tools/."""
    mods = {"helpers": ROOT / "helpers.py"}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).glob("*.py")):
            mods[pkg if p.stem == "__init__" else f"{pkg}.{p.stem}"] = p
    return mods


MODULES = project_modules()


def _resolve(node: ast.AST, me: str) -> list:
    """[(module imported, names imported from it)] for one import statement of module ``me``
    (relative imports resolved: in workbook/x.py or workbook/__init__.py, '.' is workbook)."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names]
    mod = node.module or ""
    if node.level:
        package = me.split(".") if me in PACKAGES else me.split(".")[:-1]
        base = package[:len(package) - (node.level - 1)]
        mod = ".".join(base + ([mod] if mod else []))
    return [(mod, [a.name for a in node.names])]


def imports_of(name: str) -> list:
    """[(project module imported, [names], line)] and [(top-level external module, line)] of
    every import in the module, at any depth (functions and methods included)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    project, external = [], []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for mod, names in _resolve(node, name):
            if mod in MODULES or mod.split(".")[0] in PACKAGES + ("helpers",):
                # "from workbook import engine" imports the module workbook.engine
                subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
                rest = [n for n in names if f"{mod}.{n}" not in MODULES]
                for s in subs:
                    project.append((s, [], node.lineno))
                if rest or not names:
                    project.append((mod, rest, node.lineno))
            else:
                external.append((mod.split(".")[0], node.lineno))
    return project, external


def import_graph() -> dict:
    return {m: sorted({t for t, _, _ in imports_of(m)[0] if t != m and t in MODULES})
            for m in MODULES}


def find_cycle(graph: dict):
    """One cycle as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in graph.get(m, []):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_walk_sees_the_project():
    assert {"helpers", "workbook.engine", "workbook.runs", "workbook.recipes"} <= set(MODULES)
    project, _ = imports_of("workbook.engine")
    targets = {t for t, _, _ in project}
    assert {"helpers", "workbook.fastsgd", "workbook.layout", "workbook.checks"} <= targets, targets
    g = import_graph()
    assert "helpers" in g["workbook.engine"] and g["helpers"] == []
    rel = ast.parse("from . import config\nfrom .files import atomic_write, _x\n").body
    assert _resolve(rel[0], "workbook.images") == [("workbook", ["config"])]
    assert _resolve(rel[1], "workbook.images") == [("workbook.files", ["atomic_write", "_x"])]
    assert _resolve(rel[1], "workbook") == [("workbook.files", ["atomic_write", "_x"])]


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_helpers_imports_only_numpy_and_the_standard_library():
    project, external = imports_of("helpers")
    assert not project, f"helpers.py imports project modules: {project}"
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    bad = [(m, line) for m, line in external if m not in allowed]
    assert not bad, f"helpers.py imports {bad} (module, line): only numpy and the standard library"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_a_module_boundary(name):
    project, _ = imports_of(name)
    bad = [(t, n, line) for t, names, line in project if t != name
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, f"{name} imports private names {bad} (module, name, line)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_length(name):
    n = len(MODULES[name].read_text().splitlines())
    limit = LIMITS.get(name, DEFAULT_LIMIT)
    assert n <= limit, f"{MODULES[name].relative_to(ROOT)} has {n} lines (limit {limit})"
