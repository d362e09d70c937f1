"""The import rules of the guide, beyond what ``lint-imports`` (.importlinter) checks.

``lint-imports`` keeps the layers and the job side's independence; this finds any
import cycle between modules (an import-linter contract sees cycles only between the
siblings of one package, so a cycle through two subpackages could hide in their
aggregation), and checks that the worker runner really runs without the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("uws_server", "workers", "uws_client")


def import_cycles() -> list[list[str]]:
    """Every set of modules importing each other, directly or not (Tarjan's strongly
    connected components; imports only for annotations are not counted)."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_between_modules() -> None:
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    """The check above can fail: a two-module cycle in a throwaway package is found."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("from cyclepkg import a\n")
    (pkg / "c.py").write_text("from cyclepkg import a\n")
    code = (
        "import sys, grimp\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "g = grimp.build_graph('cyclepkg')\n"
        "print(g.find_shortest_chain('cyclepkg.a', 'cyclepkg.b'),"
        " g.find_shortest_chain('cyclepkg.b', 'cyclepkg.a'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "('cyclepkg.a', 'cyclepkg.b') ('cyclepkg.b', 'cyclepkg.a')" in out.stdout


def test_workers_run_without_the_service() -> None:
    """Every module of ``workers`` imports with ``uws_server`` unimportable (a worker
    node has the job side only), and none pulls it in."""
    names = sorted(p.stem for p in (ROOT / "workers").glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('uws_server', 'uws_client'):\n"
        "            raise ImportError('job side imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module('workers.' + name)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# Who may build SQL (issue 14.2): the storage package on the service's own tables; the
# engine set-up and the migrations; the catalogue and TAP (uws_server/vo/, which run
# user ADQL and the obscore table's statements by design: docs/architecture.md, "Storage
# layer"). One more, by name and why:
SQL_ALLOWED = ("uws_server.storage", "uws_server.migrations", "uws_server.vo", "uws_server.db")
SQL_EXCEPTIONS = {
    "uws_server.cli": "catches SQLAlchemyError around `db upgrade` and `user`; no statement",
}


def sql_modules() -> set[str]:
    graph = grimp.build_graph(
        *PACKAGES, include_external_packages=True, exclude_type_checking_imports=True
    )
    return {
        m
        for driver in ("sqlalchemy", "sqlite3", "psycopg")
        if driver in graph.modules
        for m in graph.find_modules_that_directly_import(driver)
    }


def test_sql_only_in_the_storage_layer_and_the_catalogue() -> None:
    """Nothing but the storage package (and the catalogue) imports SQLAlchemy or a
    database driver: handlers, service, lifecycle, provenance and web pages ask the
    store's intent-named methods."""
    outside = sorted(
        m
        for m in sql_modules()
        if not any(m == a or m.startswith(a + ".") for a in SQL_ALLOWED) and m not in SQL_EXCEPTIONS
    )
    assert outside == []
    # the exceptions are still true (an exception no longer needed is dropped)
    assert set(SQL_EXCEPTIONS) <= sql_modules()


def service_imports_of_the_job_steps(root: Path) -> list[str]:
    """``module: imported`` for every import of ``uws_server`` or ``uws_client`` in the
    Python files under ``root`` (read, not imported: the science stack need not load)."""
    import ast

    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("uws_server", "uws_client"):
                    found.append(f"{path.relative_to(root).as_posix()}: {name}")
    return found


def test_the_cta_job_steps_import_nothing_of_the_service(tmp_path: Path) -> None:
    """The CTA steps (the ``cta`` package under scripts/) run on a worker node as job
    scripts: they talk to the service only through ``workers.jobside`` and the files of
    the job directory, like every job (docs/architecture.md). The check can fail."""
    assert service_imports_of_the_job_steps(ROOT / "scripts" / "cta") == []
    (tmp_path / "step.py").write_text("import os\nfrom uws_server.common import utcnow\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.py").write_text("import uws_client.client as c\nfrom . import y\n")
    assert service_imports_of_the_job_steps(tmp_path) == [
        "step.py: uws_server.common",
        "sub/x.py: uws_client.client",
    ]


# CPython's underscore modules that are documented interfaces (docs.python.org/3/library/).
DOCUMENTED_UNDERSCORE_MODULES = {"__future__", "_thread"}


def test_no_private_cpython_module_is_imported() -> None:
    """Speed code stays on supported interfaces (issue 14.3): ``_json`` (the runner's
    old ``jsonio``), ``_socket``, ``_signal``, ``_sha2`` and the like broke the code on a
    minor CPython upgrade; nothing imports them any more."""
    graph = grimp.build_graph(
        *PACKAGES, include_external_packages=True, exclude_type_checking_imports=True
    )
    private = sorted(
        f"{importer} -> {module}"
        for module in graph.modules
        if module.startswith("_") and module not in DOCUMENTED_UNDERSCORE_MODULES
        for importer in graph.find_modules_that_directly_import(module)
    )
    assert private == []
    assert "__future__" in graph.modules  # the check sees underscore modules at all
