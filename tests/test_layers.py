"""The layers of docs/architecture.md, checked on the source: every import (read statically with `ast`,
including the ones inside functions) runs downward, no module imports an entry point, and no modules import
each other (no import circle)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer -> the layers it may import besides itself (docs/architecture.md holds the same table)
LAYERS: dict[str, frozenset[str]] = {
    "util": frozenset(),
    "model": frozenset({"util"}),
    "dataset": frozenset({"util"}),
    "inference_core": frozenset({"util", "model"}),
    "training": frozenset({"util", "model", "dataset"}),
    "evaluation": frozenset({"util", "model", "dataset", "inference_core"}),
    "downloads": frozenset({"util", "model"}),
    "annotator": frozenset({"util", "model", "inference_core"}),
}
SCRIPTS = "scripts"  # a folder of entry points (a package only so that tests can import them)
NOT_CODE = {"tests", "docs"}


def entry_points(root: Path = ROOT) -> set[str]:
    """Dotted names of the commands: the root *.py files and scripts/*.py."""
    names = {p.stem for p in root.glob("*.py")}
    return names | {f"{SCRIPTS}.{p.stem}" for p in (root / SCRIPTS).glob("*.py") if p.stem != "__init__"}


def imported_modules(source: str, package: str) -> list[str]:
    """Every module `source` imports, as absolute dotted names (`from a import b` gives `a` and `a.b`;
    relative imports are resolved against `package`)."""
    names = []
    for base, imported in import_statements(source, package):
        names += [base, *imported] if imported is not None else [base]
    return [n for n in names if n and n != "__future__"]


def import_statements(source: str, package: str) -> list[tuple[str, list[str] | None]]:
    """Every import statement of `source` (also inside functions) as (module, None) for `import module`
    and (module, [module.name, ...]) for `from module import name, ...` (relative ones resolved against
    `package`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((base, [f"{base}.{alias.name}" for alias in node.names]))
    return found


def violations(module: str, imports: list[str], entries: set[str]) -> list[str]:
    """The imports of `module` (a dotted name) that break the layer rule."""
    top = module.split(".")[0]
    is_entry = module in entries
    bad = []
    for name in imports:
        target = name.split(".")[0]
        if name in entries or target == SCRIPTS or (target in entries and name.count(".") == 0):
            if name != module:
                bad.append(f"{module} imports the entry point {name}")
        elif target in LAYERS and not is_entry and target != top and target not in LAYERS[top]:
            bad.append(f"{module} ({top}) imports {name} ({target}), which is not below it")
    return bad


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project outside tests: dotted name -> file."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in NOT_CODE or rel.parts[0].startswith("."):
            continue
        parts = rel.with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_every_import_runs_downward_and_no_module_imports_an_entry_point():
    entries = entry_points()
    found = []
    for module, path in source_modules().items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found += violations(module, imported_modules(path.read_text(), package), entries)
    assert not found, "\n".join(found)



def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (every import, including the ones inside functions): each
    imported name as the longest dotted prefix that is a project module (`from a import b` is `a.b` when
    that is a module, else `a`)."""
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for base, imported in import_statements(path.read_text(), package):
            for name in imported or [base]:
                parts = name.split(".")
                prefixes = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
                target = next((p for p in prefixes if p in modules), None)
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`, one per strongly connected component of more than one module (Tarjan),
    each as a path a -> b -> ... -> a through that component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

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
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle from the component's first module back to it, inside the component (breadth first)."""
    start = min(component)
    previous: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt not in previous:
                previous[nxt] = node
                todo.append(nxt)
    raise AssertionError(f"no circle in {sorted(component)}")


def test_no_import_circle():
    cycles = import_cycles(import_graph(source_modules()))
    assert not cycles, "import circles (import downward instead):\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}}, [["d", "e", "d"], ["a", "b", "c", "a"]]),
])
def test_import_cycles_names_each_circle(graph, expected):
    assert import_cycles(graph) == expected


def test_import_graph_reads_lazy_imports_as_modules(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "one.py").write_text("def f():\n    from pkg.two import g\n")
    (tmp_path / "pkg" / "two.py").write_text("from pkg import one\n")
    modules = source_modules(tmp_path)
    assert import_graph(modules) == {"pkg": set(), "pkg.one": {"pkg.two"}, "pkg.two": {"pkg.one"}}
    assert import_cycles(import_graph(modules)) == [["pkg.one", "pkg.two", "pkg.one"]]


# what the commands build their parsers from: they parse before importing torch (tests/test_help.py runs them)
TORCH_FREE = ("util.defaults", "util.cli", "util.launch", "inference_core.options", "evaluation.flags")


def module_imports(module: str, modules: dict[str, Path]) -> set[str]:
    """Every module `module` imports, directly or through the project's modules at their top level (the
    imports inside functions run only when called), with the packages each one's import runs."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for n in {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - seen:  # `a.b` runs `a/__init__`
            seen.add(n)
            if n in modules:
                tree = ast.parse(modules[n].read_text())
                top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
                package = n if modules[n].name == "__init__.py" else n.rpartition(".")[0]
                todo += imported_modules(ast.unparse(ast.Module(body=top, type_ignores=[])), package)
    return seen


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_flag_modules_import_no_torch(module):
    heavy = {n for n in module_imports(module, source_modules()) if n.split(".")[0] in ("torch", "torchvision")}
    assert not heavy, f"{module} imports {sorted(heavy)}: keep it torch-free (the commands' --help imports it)"


def test_module_imports_follows_the_project_and_its_packages():
    found = module_imports("evaluation.run_video", source_modules())
    assert {"torch", "model", "inference_core.core", "util.frames"} <= found  # model/__init__ imports torch


def test_every_package_is_a_layer_of_the_table():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_CODE - {SCRIPTS}
    assert packages == set(LAYERS), "add the new package to LAYERS and docs/architecture.md"
    for module in source_modules():
        top = module.split(".")[0]
        assert module in entry_points() | {SCRIPTS} or top in LAYERS, f"{module}: neither an entry point nor in a layer"


@pytest.mark.parametrize("module, imports, expected", [
    ("util.io", ["util.atomic", "numpy"], []),
    ("util.io", ["model.network"], ["util.io (util) imports model.network (model), which is not below it"]),
    ("model.network", ["training.losses"], ["model.network (model) imports training.losses (training), "
                                            "which is not below it"]),
    ("evaluation.run_video", ["inference_core.core", "model.checkpoint", "util.io"], []),
    ("training.losses", ["evaluation.metrics"], ["training.losses (training) imports evaluation.metrics "
                                                 "(evaluation), which is not below it"]),
    ("evaluation.datasets", ["eval_davis"], ["evaluation.datasets imports the entry point eval_davis"]),
    ("eval_davis_2016", ["eval_davis"], ["eval_davis_2016 imports the entry point eval_davis"]),
    ("scripts.demo", ["scripts.make_sample_video"], ["scripts.demo imports the entry point scripts.make_sample_video"]),
    ("eval_davis", ["evaluation.datasets", "training.config", "util.io"], []),  # commands import any layer
])
def test_violations_names_each_import_against_the_rule(module, imports, expected):
    entries = {"eval_davis", "eval_davis_2016", "scripts.demo", "scripts.make_sample_video"}
    assert violations(module, imports, entries) == expected


def test_imported_modules_reads_lazy_relative_and_from_imports():
    source = "import os\nfrom util.io import DataError\ndef f():\n    from . import core\n    import model.network\n"
    assert imported_modules(source, "inference_core") == [
        "os", "util.io", "util.io.DataError", "inference_core", "inference_core.core", "model.network"]


def _markdown_rows(text: str, header: str) -> list[list[str]]:
    lines = text[text.index(header):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_docs_architecture_table_is_the_one_checked_here():
    rows = _markdown_rows((ROOT / "docs" / "architecture.md").read_text(), "| layer | job | may import |")
    table = {row[0].strip("`"): frozenset(re.findall(r"`(\w+)`", row[2])) for row in rows}
    assert table == LAYERS


def test_readme_layout_names_every_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):].split("\n## ")[0]
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    missing = [f for f in sorted(folders) if f"`{f}/" not in layout]
    assert not missing, f"README.md's Layout table does not name {missing}"
