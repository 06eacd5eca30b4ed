"""The import graph of ``src/dabc``: no cycles, one-way layers, nothing imports the root.

The layers are documented in the docstring of ``src/dabc/__init__.py`` and written down once
more in :data:`LAYERS`. The checker reads every ``import``/``from ... import`` statement of
every module with :mod:`ast`, at any depth: module level, inside functions, under ``try:`` and
under ``if TYPE_CHECKING:``. Imports under ``TYPE_CHECKING`` count as edges for the layering
*and* for the cycle check: they never run, so they cannot deadlock an import, but a type-only
back-reference still makes two modules that can only be understood together (the cure is a
protocol in the lower module, which is what ``samplers.base.Work`` is). An import inside a
function is exactly the kind of hidden cycle this test is here to find, so it counts too.

An edge goes to the module named: ``from .base import X`` to ``<pkg>.base``, ``from . import
_core`` to ``<pkg>._core``, ``from ..samplers import Sampler`` to the package ``samplers``
(its ``__init__``). The parent packages that Python imports on the way are not edges: within
a subpackage the parent is always already loading, and across subpackages the layering check
already covers them. Dynamic imports (``importlib.import_module``) are not seen; dabc has none.

:func:`test_checker_reports_a_cycle_and_an_upward_import` runs the checker on a small package
written to ``tmp_path`` to show that it does fail.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dabc"

# bottom first; a module may import its own subpackage and anything in a lower layer. The
# entry "dabc" is the package root (dabc/__init__.py), which nothing may import.
LAYERS: list[set[str]] = [
    {"errors", "_version"},
    {"_compat"},
    {"samplers", "storage", "learn", "stan"},
    {"engine"},
    {"cluster", "viz"},
    {"dabc"},
    {"cli"},
    {"__main__"},
]


class Edge(NamedTuple):
    source: str  # importing module, e.g. "dabc.engine.smc"
    target: str  # imported module, e.g. "dabc.samplers.base"
    where: str  # "engine/smc.py:16"


def module_names(pkg_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package at ``pkg_dir``."""
    out = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = [pkg_dir.name, *path.relative_to(pkg_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(pkg_dir: Path) -> tuple[set[str], list[Edge]]:
    """All modules of the package and every import of one of them by another."""
    modules = module_names(pkg_dir)
    root = pkg_dir.name

    def known(name: str) -> str:  # the longest prefix of ``name`` that is a module
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    edges = []
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        where = str(path.relative_to(pkg_dir))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for t in targets:
                edge = Edge(mod, known(t), f"{where}:{node.lineno}")
                if (t == root or t.startswith(root + ".")) and edge not in edges:
                    edges.append(edge)
    return set(modules), edges


def component(module: str) -> str:
    """``"dabc"`` for the root, else the first name below it (``"engine"``, ``"_version"``)."""
    parts = module.split(".")
    return parts[0] if len(parts) == 1 else parts[1]


def layer_violations(modules: set[str], edges: list[Edge], layers: list[set[str]],
                     root: str) -> list[str]:
    """Imports of the root, imports against the layers, and components no layer lists."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    out = [f"{c}: not in any layer; add it to LAYERS and to the docstring of {root}/__init__.py"
           for c in sorted({component(m) for m in modules} - set(rank))]
    for e in edges:
        src, dst = component(e.source), component(e.target)
        if e.target == root:
            out.append(f"{e.where}: {e.source} imports the package root {root}; import the "
                       f"module that defines the name instead")
        elif src != dst and src in rank and dst in rank and rank[dst] >= rank[src]:
            kind = "a sibling in its layer" if rank[dst] == rank[src] else "a higher layer"
            out.append(f"{e.where}: {e.source} imports {e.target}, {kind} ({src} -> {dst})")
    return out


def _reachable(graph: dict[str, dict[str, str]], start: str) -> set[str]:
    """Modules reachable from ``start`` by one import or more (``start`` itself only through
    a cycle)."""
    seen: set[str] = set()
    stack = list(graph.get(start, {}))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, {}))
    return seen


def _shortest_path(graph: dict[str, dict[str, str]], start: str, goal: str) -> list[str]:
    """A shortest import path ``start -> ... -> goal`` (breadth-first); ``goal`` reachable."""
    prev = {start: start}
    frontier = [start]
    while True:
        nxt = []
        for node in frontier:
            for succ in sorted(graph.get(node, {})):
                if succ == goal:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), goal]
                if succ not in prev:
                    prev[succ] = node
                    nxt.append(succ)
        frontier = nxt


def cycles(edges: list[Edge]) -> list[str]:
    """One line per group of modules that import each other in a circle (a strongly connected
    group): a shortest cycle ``a -> b -> a`` with the lines of its imports, and the whole
    group when it is larger than that cycle."""
    graph: dict[str, dict[str, str]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e.where)
    reach = {node: _reachable(graph, node) for node in graph}
    out, done = [], set()
    for start in sorted(graph):
        if start in done or start not in reach[start]:
            continue
        group = sorted(m for m in reach[start] if start in reach.get(m, ()))
        done.update(group)
        path = _shortest_path(graph, start, start)
        line = " -> ".join(path) + "  (" + ", ".join(
            graph[a][b] for a, b in zip(path, path[1:], strict=False)) + ")"
        if len(group) > len(path) - 1:
            line += f"; the {len(group)} modules of this group: " + ", ".join(group)
        out.append(line)
    return out


# --- the checker on a synthetic package: it must report what it is here to find -------------


def _write(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_reports_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {
        "__init__.py": "from .high import b\n",
        "errors.py": "",
        "low/__init__.py": "",
        "low/a.py": "from ..high.b import thing\n",  # upward
        "high/__init__.py": "",
        "high/b.py": "from . import c\nthing = 1\n",
        "high/c.py": ("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from .d import D\n"),
        "high/d.py": "def f():\n    from .b import thing\n",  # cycle b -> c -> d -> b
        "high/e.py": "from .. import errors\nfrom .. import b\n",  # the root's name b
        "high/f.py": "import pkg.low.a\nimport pkg.high.ghost\n",
        "side/__init__.py": "",
    })
    modules, edges = import_graph(pkg)
    assert "pkg.high.d" in modules and "pkg" in modules
    layers = [{"errors"}, {"low"}, {"high"}, {"pkg"}]
    problems = layer_violations(modules, edges, layers, "pkg")
    assert sorted(problems) == [
        "high/e.py:2: pkg.high.e imports the package root pkg; import the module that "
        "defines the name instead",
        "low/a.py:1: pkg.low.a imports pkg.high.b, a higher layer (low -> high)",
        "side: not in any layer; add it to LAYERS and to the docstring of pkg/__init__.py",
    ]
    # "import pkg.high.ghost" goes to the longest existing module, the package pkg.high
    assert Edge("pkg.high.f", "pkg.high", "high/f.py:2") in edges
    assert cycles(edges) == [
        "pkg.high.b -> pkg.high.c -> pkg.high.d -> pkg.high.b  "
        "(high/b.py:1, high/c.py:3, high/d.py:2)"]


def test_checker_passes_a_clean_package(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {"__init__.py": "from .high import b\n", "errors.py": "",
                 "high/__init__.py": "from .b import x\n",
                 "high/b.py": "from ..errors import E\nfrom . import c\nx = 1\n",
                 "high/c.py": "import pkg.errors\n"})
    modules, edges = import_graph(pkg)
    assert layer_violations(modules, edges, [{"errors"}, {"high"}, {"pkg"}], "pkg") == []
    assert cycles(edges) == []


# --- dabc itself ------------------------------------------------------------------------------


def test_no_import_cycles():
    _, edges = import_graph(SRC)
    found = cycles(edges)
    assert not found, "import cycles in src/dabc:\n" + "\n".join(found)


@pytest.mark.parametrize("sub", sorted(p.name for p in SRC.iterdir()
                                       if (p / "__init__.py").is_file()))
def test_no_cycle_within_subpackage(sub):
    _, edges = import_graph(SRC)
    inside = [e for e in edges if component(e.source) == component(e.target) == sub]
    found = cycles(inside)
    assert not found, f"import cycles in dabc.{sub}:\n" + "\n".join(found)


def test_imports_follow_the_layers():
    modules, edges = import_graph(SRC)
    problems = layer_violations(modules, edges, LAYERS, "dabc")
    assert not problems, "imports against the layers of src/dabc/__init__.py:\n" + "\n".join(
        problems)


def test_layers_are_documented_in_the_package_docstring():
    doc = ast.get_docstring(ast.parse((SRC / "__init__.py").read_text()))
    for layer in LAYERS:
        for name in layer:
            assert name in doc, f"layer {name!r} is not named in dabc's package docstring"


def test_version_agrees_with_pyproject():
    import dabc
    from dabc._version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    assert dabc.__version__ == __version__
