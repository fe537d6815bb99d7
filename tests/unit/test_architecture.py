"""The layering rules of docs/CONTRIBUTING.md, checked on the source (read with ast, nothing imported): no import
cycle between packages, no private name used across modules, no file of 1,000 lines or more. The analyser itself
is tested first, on small synthetic trees, so the checks on the real tree cannot pass vacuously."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

from tests.architecture import Analysis, analyse, long_files

PACKAGE = Path(__file__).resolve().parents[2] / "omnirelay"
MAX_LINES = 1000


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path under the package -> source) as package ``pkg`` under ``root``."""
    pkg = root / "pkg"
    for rel, source in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    for d in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return pkg


# The analyser on synthetic trees.


def test_a_module_level_cycle_is_found_with_one_example_per_edge(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a/x.py": "from pkg.b.y import thing\n",
            "b/y.py": "import os\n\nfrom pkg.a import x\nthing = 1\n",
            "c.py": "from pkg.a.x import thing\n",  # into the cycle, not part of it
        },
    )
    a = analyse(pkg)
    assert a.cycles() == [["a", "b", "a"]]
    assert a.package_edges()[("a", "b")].path == "pkg/a/x.py"
    assert str(a.package_edges()[("b", "a")]) == "pkg/b/y.py:3"
    assert "a -> b -> a" in a.describe_cycles() and "pkg/b/y.py:3" in a.describe_cycles()


def test_relative_imports_resolve(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a/x.py": "from ..b import y\n",
            "a/__init__.py": "from . import x\n",
            "b/y.py": "from ..a.x import z\nz = 1\n",
        },
    )
    a = analyse(pkg)
    assert a.cycles() == [["a", "b", "a"]]
    assert {(e.source, e.target) for e in a.edges} >= {("pkg.a.x", "pkg.b.y"), ("pkg.a", "pkg.a.x")}


def test_a_type_checking_import_is_not_an_edge(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a.py": "from pkg import b\n",
            "b.py": """\
                import typing
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg import a
                if typing.TYPE_CHECKING:
                    import pkg.a
                """,
        },
    )
    assert analyse(pkg).cycles() == []


def test_the_else_branch_of_type_checking_runs(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a.py": "from pkg import b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from pkg import a\n",
        },
    )
    assert analyse(pkg).cycles() == [["a", "b", "a"]]


def test_a_lazy_import_inside_a_function_counts(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a.py": "from pkg import b\n",
            "b.py": "def f() -> None:\n    from pkg.a import g\n    g()\n",
        },
    )
    a = analyse(pkg)
    assert a.cycles() == [["a", "b", "a"]]
    assert str(a.package_edges()[("b", "a")]) == "pkg/b.py:2"


def test_module_path_strings_count_but_docstrings_do_not(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "reg.py": 'import importlib\nENGINES = {"think": "pkg.eng.think:Engine"}\n'
            'm = importlib.import_module("pkg.other")\n',
            "eng/think.py": "from pkg import reg\n",
            "other.py": '"""pkg.eng"""\n\nfrom pkg import reg\n',
        },
    )
    a = analyse(pkg)
    assert a.cycles() == [["eng", "reg", "eng"], ["other", "reg", "other"]]
    assert ("other", "eng") not in a.package_edges()


def test_a_logger_name_that_only_looks_like_a_module_path_is_no_import(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "__init__.py": "from pkg import prot\n",
            "prot.py": 'import logging\nlog = logging.getLogger("pkg.prot.anthropic")\nREG = "pkg.other"\n',
            "other.py": "",
        },
    )
    a = analyse(pkg)
    assert ("prot", "pkg") not in a.package_edges() and a.module_cycles() == []
    assert ("prot", "other") in a.package_edges()  # an exact module name still counts


def test_a_three_package_cycle_and_a_separate_one_are_both_listed(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a.py": "import pkg.b\n",
            "b.py": "import pkg.c\n",
            "c.py": "import pkg.a\n",
            "d.py": "import pkg.e\n",
            "e.py": "import pkg.d\n",
        },
    )
    assert analyse(pkg).cycles() == [["a", "b", "c", "a"], ["d", "e", "d"]]


def test_private_imports_and_module_attributes_are_found(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "a.py": "_hidden = 1\n__version__ = '1'\n\n\ndef _f() -> None: ...\n",
            "b.py": """\
                from pkg.a import __version__, _hidden
                from . import a as alias
                import pkg.a
                from os import _exit
                alias._f()
                pkg.a._hidden
                alias.__name__
                """,
        },
    )
    uses = [(str(site), what) for site, what in analyse(pkg).private_uses]
    assert uses == [
        ("pkg/b.py:1", "from pkg.a import _hidden"),
        ("pkg/b.py:5", "alias._f"),
        ("pkg/b.py:6", "pkg.a._hidden"),
    ]


def test_a_module_may_use_its_own_private_names(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {"a.py": "from pkg.a import _x\n_x = 1\n", "b/__init__.py": "from . import _impl\nfrom ._impl import y\n"},
    )
    (pkg / "b" / "_impl.py").write_text("y = 1\n")
    assert analyse(pkg).private_uses == []


def test_a_private_member_of_another_modules_class_is_found(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "relay.py": """\
                class Relay:
                    _cache: dict[str, int] = {}
                    def _plan(self) -> None:
                        self._state = 1
                """,
            "caller.py": """\
                class Caller:
                    def _own(self) -> None: ...
                def go(relay: object, other: "Caller") -> None:
                    relay._plan()
                    relay._state
                    other._own()
                    relay._replace()
                """,
        },
    )
    found = [(str(site), what) for site, what, _owners in analyse(pkg).private_members]
    assert found == [("pkg/caller.py:4", "relay._plan"), ("pkg/caller.py:5", "relay._state")]


def test_a_cycle_between_modules_of_one_package_is_found_apart(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "state/store.py": "def open_store() -> None:\n    from pkg.state import sqlite\n",
            "state/sqlite.py": "from pkg.state.store import open_store\n",
            "state/keys.py": "from pkg.state import store\n",
        },
    )
    a = analyse(pkg)
    assert a.cycles() == []
    assert a.module_cycles() == [["pkg.state.sqlite", "pkg.state.store", "pkg.state.sqlite"]]
    assert "pkg/state/store.py:2" in a.describe_module_cycles()


def test_long_files_are_listed(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {"short.py": "x = 1\n" * 999, "long.py": "x = 1\n" * 1000})
    assert long_files(pkg, MAX_LINES) == [("pkg/long.py", 1000)]


# The rules on omnirelay itself.


@functools.cache
def _omnirelay() -> Analysis:
    return analyse(PACKAGE)


def test_the_analyser_sees_the_real_tree() -> None:
    a = _omnirelay()
    assert len(a.modules) > 50
    # An import every layering has: the providers translate into core types.
    assert ("providers", "core") in a.package_edges()


def test_no_import_cycle_between_packages() -> None:
    assert _omnirelay().cycles() == [], "import cycles between packages:\n" + _omnirelay().describe_cycles()


def test_no_import_cycle_between_modules_of_one_package() -> None:
    assert _omnirelay().module_cycles() == [], "import cycles inside a package:\n" + (
        _omnirelay().describe_module_cycles()
    )


def test_no_private_name_imported_from_another_module() -> None:
    uses = _omnirelay().private_uses
    assert uses == [], "private names used across modules:\n" + "\n".join(f"{site}: {what}" for site, what in uses)


def test_no_private_member_of_another_modules_class() -> None:
    found = _omnirelay().private_members
    assert found == [], "private members of another module's class:\n" + "\n".join(
        f"{site}: {what} (defined in {', '.join(owners)})" for site, what, owners in found
    )


def test_every_file_is_under_1000_lines() -> None:
    assert long_files(PACKAGE, MAX_LINES) == []
