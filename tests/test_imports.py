"""No import circles: no module imports another that (directly or through others)
imports it back (issue 11).

The graph is built from the source with ast, every import statement of a module
counted, also those inside functions (a lazy import still ties the two layers
together). `from qgpt.device import errors` is an edge to the submodule
qgpt.device.errors, `from qgpt.device import Board` one to the package qgpt.device.
The firmware's modules import each other by their bare names (`import kernels`),
as the board's flat filesystem has them.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def qgpt_modules():
    """{dotted name: path} of every module and package under qgpt/."""
    modules = {}
    for path in sorted((ROOT / "qgpt").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(path, package):
    """(module, names) of every import in the file: ("a.b", []) for `import a.b`,
    ("a.b", ["c", "d"]) for `from a.b import c, d`; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [alias.name for alias in node.names]


def qgpt_graph():
    """{module: set of qgpt modules it imports}."""
    modules = qgpt_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for module, names in _imported_names(path, package):
            for sub in names:  # `from pkg import submodule`
                if f"{module}.{sub}" in modules:
                    edges.add(f"{module}.{sub}")
            if module in modules and (not names or any(
                    f"{module}.{sub}" not in modules for sub in names)):
                edges.add(module)
        edges.discard(name)
        graph[name] = edges
    return graph


def firmware_graph():
    """{firmware module: set of firmware modules it imports}, by bare names."""
    paths = {p.stem: p for p in sorted((ROOT / "firmware").glob("*.py"))}
    graph = {}
    for name, path in paths.items():
        edges = set()
        for module, names in _imported_names(path, ""):
            top = module.split(".")[0]
            if top in paths:
                edges.add(top)
            edges.update(n for n in names if not module and n in paths)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph):
    """Every circle, once, as a list of modules that starts and ends with the same one
    (its smallest name first): Tarjan's strongly connected components, then one
    shortest circle through each component's first module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        start = min(component)
        paths, seen = [[start]], {start}  # breadth first: the shortest circle back
        while paths:
            path = paths.pop(0)
            for w in sorted(graph[path[-1]] & component):
                if w == start:
                    cycles.append(path + [start])
                    paths = []
                    break
                if w not in seen:
                    seen.add(w)
                    paths.append(path + [w])
    return sorted(cycles)


def _describe(cycles):
    return "; ".join(" -> ".join(c) for c in cycles)


def test_find_cycles_names_each_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_lazy_and_submodule_imports():
    graph = qgpt_graph()
    assert "qgpt.device" in graph["qgpt.cli"]  # a lazy import, inside build_parser
    assert "qgpt.argtypes" in graph["qgpt.cli"]
    assert "qgpt.device.errors" in graph["qgpt.device.session"]
    assert "qgpt.checkpoint" in graph["qgpt.device.pull"]  # from qgpt import checkpoint


def test_qgpt_has_no_import_cycles():
    cycles = find_cycles(qgpt_graph())
    assert not cycles, f"import circles in qgpt/: {_describe(cycles)}"


def test_firmware_has_no_import_cycles():
    cycles = find_cycles(firmware_graph())
    assert not cycles, f"import circles in firmware/: {_describe(cycles)}"
