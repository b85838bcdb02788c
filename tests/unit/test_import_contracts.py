"""The import rules of docs/architecture.md, checked on the source: no database, no import.

Every ``import`` in ``src/stocksync`` is read from the syntax tree, wherever it stands: at the
top of a module, inside a function (a late import), or under ``if TYPE_CHECKING``. A late
import that only dodges a circle is still a circle, and a type-only import is still a
dependency, so all of them count.

The rules:

- ``stocksync.domain`` imports nothing of stocksync but itself, and of the standard library
  only what does no I/O: no database, HTTP, job queue, process or socket;
- ``stocksync.storage`` imports nothing above it (engine, jobs, web, platforms, the wiring);
  its migrations included;
- ``stocksync.jobs`` imports nothing of the engine, web or platforms;
- ``stocksync.platforms`` imports nothing of storage, jobs, web or the engine;
- ``stocksync.engine`` imports nothing of web or the wiring, and of the platforms only
  ``platforms.shopify.versions`` (the API versions an install may use; pure);
- ``stocksync.sandbox`` (the emulated Shopify) imports nothing of stocksync outside itself;
- no import cycle among stocksync's modules outside the sandbox (``ALLOWED_CYCLES`` is empty;
  an entry there must say why its circle is needed).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# The wiring and entry points at the package's top: above every layer.
TOP = (
    "stocksync.bootstrap",
    "stocksync.cli",
    "stocksync.cli_common",
    "stocksync.cli_stores",
    "stocksync.demo",
    "stocksync.demo_shopify",
    "stocksync.doctor",
    "stocksync.startup",
    "stocksync.__main__",
)

# Standard-library modules that do I/O (files, processes, network, event loop, databases) or
# read the environment: the domain decides, it does not do.
IO_STDLIB = frozenset(
    {
        "asyncio",
        "concurrent",
        "ftplib",
        "glob",
        "http",
        "io",
        "logging",
        "multiprocessing",
        "os",
        "pathlib",
        "select",
        "selectors",
        "shutil",
        "signal",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "webbrowser",
    }
)

# module prefix -> prefixes it must not import (a prefix matches the module and its children).
FORBIDDEN: Mapping[str, tuple[str, ...]] = {
    "stocksync.storage": (
        "stocksync.engine",
        "stocksync.jobs",
        "stocksync.web",
        "stocksync.platforms",
        "stocksync.sandbox",
        *TOP,
    ),
    "stocksync.jobs": (
        "stocksync.engine",
        "stocksync.web",
        "stocksync.platforms",
        "stocksync.sandbox",
        *TOP,
    ),
    "stocksync.platforms": (
        "stocksync.storage",
        "stocksync.jobs",
        "stocksync.web",
        "stocksync.engine",
        "stocksync.sandbox",
        *TOP,
    ),
    "stocksync.engine": ("stocksync.web", "stocksync.sandbox", *TOP),
}

# Exceptions to FORBIDDEN, each with its reason.
PERMITTED: Mapping[str, tuple[str, ...]] = {
    # An install refuses an Admin API version without idempotent adjustments; the rule is
    # Shopify's and pure (no I/O), and every path that stores a version goes through the engine.
    "stocksync.engine": ("stocksync.platforms.shopify.versions",),
}

# Cycles allowed, as frozensets of module names, each with the reason it cannot be broken.
ALLOWED_CYCLES: Mapping[frozenset[str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a stocksync module, or a third-party / standard-library module name
    line: int
    late: bool  # inside a function, a class or an ``if`` (TYPE_CHECKING included)

    def __str__(self) -> str:
        where = "late import" if self.late else "import"
        return f"{self.importer}:{self.line} {where} of {self.imported}"


def module_names(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (a directory holding packages) by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _nearest(name: str, modules: Mapping[str, Path]) -> str:
    """The module ``name`` lives in (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, late: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = late or not isinstance(child, ast.Import | ast.ImportFrom)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, _nearest(alias.name, modules), child.lineno, late))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    target = f"{base}.{alias.name}"  # a submodule, or a name in ``base``
                    imported = target if target in modules else _nearest(base, modules)
                    found.append(Import(name, imported, child.lineno, late))
            else:
                visit(child, nested)

    visit(tree, False)
    return found


def all_imports(root: Path) -> list[Import]:
    modules = module_names(root)
    return [i for name, path in modules.items() for i in imports_of(name, path, modules)]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_violations(imports: Iterable[Import]) -> list[str]:
    out = []
    for i in imports:
        for layer, forbidden in FORBIDDEN.items():
            if not _under(i.importer, layer):
                continue
            if any(_under(i.imported, p) for p in PERMITTED.get(layer, ())):
                continue
            if any(_under(i.imported, p) for p in forbidden):
                out.append(f"{i} ({layer} must not import it)")
    return out


def domain_violations(imports: Iterable[Import]) -> list[str]:
    out = []
    for i in imports:
        if not _under(i.importer, "stocksync.domain"):
            continue
        top = i.imported.split(".")[0]
        if top == "__future__" or _under(i.imported, "stocksync.domain"):
            continue
        if top == "stocksync":
            out.append(f"{i} (the domain imports nothing of stocksync but itself)")
        elif top not in sys.stdlib_module_names:
            out.append(f"{i} (the domain imports no library: it decides, it does no I/O)")
        elif top in IO_STDLIB:
            out.append(f"{i} (the domain does no I/O)")
    return out


def sandbox_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i} (the sandbox imports nothing of stocksync outside itself)"
        for i in imports
        if _under(i.importer, "stocksync.sandbox")
        and _under(i.imported, "stocksync")
        and not _under(i.imported, "stocksync.sandbox")
    ]


def cycles(imports: Iterable[Import], *, outside: str = "stocksync.sandbox") -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm,
    iterative), among stocksync's modules not under ``outside``."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.importer == i.imported or not _under(i.imported, "stocksync"):
            continue
        if _under(i.importer, outside) or _under(i.imported, outside):
            continue
        graph.setdefault(i.importer, set()).add(i.imported)
        graph.setdefault(i.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def _describe(component: list[str], imports: Iterable[Import]) -> str:
    members = set(component)
    edges = sorted({str(i) for i in imports if i.importer in members and i.imported in members})
    return " <-> ".join(component) + ":\n    " + "\n    ".join(edges)


# --- the contracts, on stocksync's source --------------------------------------------------


@pytest.fixture(scope="module")
def source_imports() -> list[Import]:
    return all_imports(SRC)


def test_the_domain_imports_no_io_and_nothing_of_stocksync(source_imports: list[Import]) -> None:
    assert domain_violations(source_imports) == []


def test_each_layer_imports_nothing_above_it(source_imports: list[Import]) -> None:
    assert layer_violations(source_imports) == []


def test_the_sandbox_imports_nothing_of_stocksync(source_imports: list[Import]) -> None:
    assert sandbox_violations(source_imports) == []


def test_no_import_cycle_outside_the_sandbox(source_imports: list[Import]) -> None:
    found = [c for c in cycles(source_imports) if frozenset(c) not in ALLOWED_CYCLES]
    assert not found, "import cycles:\n" + "\n".join(_describe(c, source_imports) for c in found)


def test_every_allowed_cycle_still_exists(source_imports: list[Import]) -> None:
    """An exception outlives its need unnoticed otherwise."""
    present = {frozenset(c) for c in cycles(source_imports)}
    assert [sorted(c) for c in ALLOWED_CYCLES if c not in present] == []


# --- the checker itself, on a small tree ---------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_late_import_closing_a_circle_is_a_cycle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "stocksync/__init__.py": "",
            "stocksync/a.py": "from stocksync import b\n",
            "stocksync/b.py": "def f():\n    from stocksync.a import x\n",
            "stocksync/c.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from stocksync.d import y\n",
            "stocksync/d.py": "from . import c\n",
            "stocksync/e.py": "import stocksync.a\n",
        },
    )
    imports = all_imports(root)
    assert cycles(imports) == [["stocksync.a", "stocksync.b"], ["stocksync.c", "stocksync.d"]]
    assert Import("stocksync.b", "stocksync.a", 2, True) in imports


def test_a_layer_rule_sees_every_kind_of_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "stocksync/__init__.py": "",
            "stocksync/storage/__init__.py": "",
            "stocksync/storage/m/v1.py": "def up():\n    from stocksync.jobs.pg import sql\n",
            "stocksync/jobs/__init__.py": "",
            "stocksync/jobs/pg.py": "from ..storage import m\n",
            "stocksync/domain/__init__.py": "",
            "stocksync/domain/rules.py": "import sqlalchemy\nimport asyncio\nimport dataclasses\n",
            "stocksync/sandbox/__init__.py": "from stocksync.domain import rules\n",
        },
    )
    imports = all_imports(root)
    assert layer_violations(imports) == [
        "stocksync.storage.m.v1:2 late import of stocksync.jobs.pg "
        "(stocksync.storage must not import it)"
    ]
    assert [v.split(" (")[0] for v in domain_violations(imports)] == [
        "stocksync.domain.rules:1 import of sqlalchemy",
        "stocksync.domain.rules:2 import of asyncio",
    ]
    assert len(sandbox_violations(imports)) == 1
