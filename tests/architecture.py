"""A static import graph of a package tree, read with ``ast`` (nothing is imported), for the architecture test.

A *node* is the first component under the root package: ``omnirelay/core/types.py`` is ``core``,
``omnirelay/config.py`` is ``config``, ``omnirelay/__init__.py`` is the root package's own name. An edge counts
every import that runs at some point: module-level and function-level (lazy) imports, and string constants naming
a module of the tree (``importlib.import_module("omnirelay.x")``, registry entries such as
``"omnirelay.providers.openai"`` or ``"omnirelay.compound.think:ThinkEngine"``). Imports under
``if TYPE_CHECKING:`` never run and are left out; docstrings are not read as module names.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, order=True)
class Site:
    """Where something was found: the path relative to the tree's parent, and the line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, order=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the longest prefix of the imported name that is a module of the tree)
    site: Site


@dataclass
class Analysis:
    root: str  # the root package's name
    modules: dict[str, Path]  # dotted module name -> file
    edges: list[Edge] = field(default_factory=list)
    private_uses: list[tuple[Site, str]] = field(default_factory=list)  # (where, what) for each violation
    # ``obj._name`` where ``obj`` is not self/cls and ``_name`` is a private member of a class of another module
    # only (a heuristic: the type of ``obj`` is not known statically), as (where, what, defining modules).
    private_members: list[tuple[Site, str, tuple[str, ...]]] = field(default_factory=list)

    def node(self, module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    def package_edges(self) -> dict[tuple[str, str], Site]:
        """Edges between different nodes, each with its first example import."""
        out: dict[tuple[str, str], Site] = {}
        for e in sorted(self.edges, key=lambda e: e.site):
            key = (self.node(e.source), self.node(e.target))
            if key[0] != key[1] and key not in out:
                out[key] = e.site
        return out

    def module_edges(self) -> dict[tuple[str, str], Site]:
        """Edges between different modules of the same node, each with its first example import."""
        out: dict[tuple[str, str], Site] = {}
        for e in sorted(self.edges, key=lambda e: e.site):
            key = (e.source, e.target)
            if self.node(e.source) == self.node(e.target) and key not in out:
                out[key] = e.site
        return out

    def cycles(self) -> list[list[str]]:
        """Cycles between nodes, as paths whose last node is the first. Every edge inside a strongly connected
        component lies on at least one listed cycle (the shortest one through it), so removing all listed
        cycles removes every cycle."""
        return _cycles(self.package_edges())

    def module_cycles(self) -> list[list[str]]:
        """Cycles between the modules of one package (``state.store`` -> ``state.sqlite`` -> ``state.store``)."""
        return _cycles(self.module_edges())

    def describe_cycles(self) -> str:
        return _describe(self.cycles(), self.package_edges())

    def describe_module_cycles(self) -> str:
        return _describe(self.module_cycles(), self.module_edges())


def _describe(cycles: list[list[str]], edges: dict[tuple[str, str], Site]) -> str:
    lines = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle))
        for a, b in itertools.pairwise(cycle):
            lines.append(f"    {a} -> {b}: {edges[(a, b)]}")
    return "\n".join(lines)


def _cycles(edges: dict[tuple[str, str], Site]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    found: dict[tuple[str, ...], list[str]] = {}
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        for a in sorted(component):
            for b in sorted(graph[a] & component):
                back = _shortest_path(graph, b, a, component)
                key = _canonical([a, *back][:-1])
                found.setdefault(key, [*key, key[0]])
    return sorted(found.values())


def _canonical(ring: list[str]) -> tuple[str, ...]:
    start = ring.index(min(ring))
    return tuple(ring[start:] + ring[:start])


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    prev: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while (p := prev[path[-1]]) is not None:
                path.append(p)
            return path[::-1]
        for nxt in sorted(graph[node] & within):
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{goal} not reachable from {start} inside its component")


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (recursive: the graphs here have a few dozen nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ModuleVisitor(ast.NodeVisitor):
    def __init__(self, analysis: Analysis, module: str, is_package: bool, path: str) -> None:
        self.a = analysis
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.path = path
        self.bound: dict[str, str] = {}  # local name -> the tree's module it is bound to (any scope)
        self.attributes: list[ast.Attribute] = []
        self.members: set[str] = set()  # private names this module's classes define (methods, attributes)
        self.module_pattern = re.compile(rf"^{re.escape(analysis.root)}(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?$")

    def site(self, node: ast.stmt | ast.expr) -> Site:
        return Site(self.path, node.lineno)

    def resolve(self, name: str) -> str | None:
        """The longest prefix of a dotted name that is a module of the tree."""
        parts = name.split(".")
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in self.a.modules:
                return candidate
        return None

    def add_edge(self, name: str, node: ast.stmt | ast.expr) -> None:
        target = self.resolve(name)
        if target is not None and target != self.module:
            self.a.edges.append(Edge(self.module, target, self.site(node)))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:  # the else branch does run
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add_edge(alias.name, node)
            if any(_is_private(part) for part in alias.name.split(".")[1:]) and self.resolve(alias.name):
                self.a.private_uses.append((self.site(node), f"import {alias.name}"))
            target = self.resolve(alias.name)
            if target is not None:
                if alias.asname:
                    self.bound[alias.asname] = target
                else:
                    top = alias.name.split(".")[0]
                    if top in self.a.modules:
                        self.bound[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        resolved_source = self.resolve(source)
        for alias in node.names:
            full = f"{source}.{alias.name}"
            if full in self.a.modules:
                self.add_edge(full, node)
                self.bound[alias.asname or alias.name] = full
            else:
                self.add_edge(source, node)
            if resolved_source is not None and resolved_source != self.module and _is_private(alias.name):
                self.a.private_uses.append((self.site(node), f"from {source} import {alias.name}"))

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring or a bare string: prose, not a module reference
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # Only a string naming a module of the tree exactly (a registry entry, ``import_module``'s argument):
        # a logger name such as "omnirelay.protocols.anthropic" merely looks like one.
        if isinstance(node.value, str) and self.module_pattern.match(node.value):
            name = node.value.partition(":")[0]
            if name in self.a.modules:
                self.add_edge(name, node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attributes.append(node)
        if _is_private(node.attr) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            self.members.add(node.attr)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [stmt.name]
            elif isinstance(stmt, ast.Assign):
                names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                names = [stmt.target.id]
            else:
                names = []
            self.members.update(n for n in names if _is_private(n))
        self.generic_visit(node)

    def check_attributes(self) -> None:
        """``module._name`` where ``module`` (or a dotted chain of modules) names another module of the tree."""
        for node in self.attributes:
            if not _is_private(node.attr):
                continue
            dotted = _dotted(node.value)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head not in self.bound:
                continue
            module = ".".join(filter(None, [self.bound[head], rest]))
            if module in self.a.modules and module != self.module:
                self.a.private_uses.append((self.site(node), f"{dotted}.{node.attr}"))

    def check_members(self, members: dict[str, set[str]]) -> None:
        """``obj._name`` on an object of another module's class (see Analysis.private_members)."""
        for node in self.attributes:
            value = node.value
            if not _is_private(node.attr) or node.attr in self.members:
                continue
            if isinstance(value, ast.Name) and (value.id in ("self", "cls") or value.id in self.bound):
                continue  # own members, or module attributes (check_attributes)
            owners = tuple(sorted(m for m, names in members.items() if m != self.module and node.attr in names))
            if owners:
                dotted = _dotted(value) or "<expr>"
                self.a.private_members.append((self.site(node), f"{dotted}.{node.attr}", owners))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _module_files(package_dir: Path) -> Iterator[tuple[str, Path, bool]]:
    root = package_dir.name
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        parts = [root, *rel.parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        yield ".".join(parts), path, is_package


def analyse(package_dir: Path) -> Analysis:
    """Parse every module under ``package_dir`` (the directory of the root package)."""
    files = list(_module_files(package_dir))
    analysis = Analysis(root=package_dir.name, modules={name: path for name, path, _ in files})
    visitors = []
    for name, path, is_package in files:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        rel = path.relative_to(package_dir.parent).as_posix()
        visitor = _ModuleVisitor(analysis, name, is_package, rel)
        visitor.visit(tree)
        visitor.check_attributes()
        visitors.append(visitor)
    members = {v.module: v.members for v in visitors}
    for visitor in visitors:
        visitor.check_members(members)
    analysis.private_uses.sort()
    analysis.private_members.sort()
    return analysis


def long_files(package_dir: Path, limit: int) -> list[tuple[str, int]]:
    """Files under ``package_dir`` (any kind, caches excepted) with ``limit`` lines or more."""
    out = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            count = path.read_bytes().count(b"\n")
            if count >= limit:
                out.append((path.relative_to(package_dir.parent).as_posix(), count))
    return out
