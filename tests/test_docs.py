"""The documentation tested against the code (issue 14, part 6's docs test).

Every setting the service reads is documented in ``settings.yml`` with its default, and
every key there is a setting; every module of ``uws_server/``, ``workers/``,
``uws_client/`` and the CTA job steps (``scripts/cta/``, the package ``cta``) is listed in
``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from uws_server.common import PROJECT_ROOT
from uws_server.config import Settings

ARCHITECTURE = PROJECT_ROOT / "docs" / "architecture.md"
PACKAGES = ("uws_server", "workers", "uws_client", "scripts/cta")


def documented_settings(text: str) -> dict[str, object]:
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict)
    return data


def test_every_setting_is_in_settings_yml_and_nothing_else() -> None:
    documented = documented_settings((PROJECT_ROOT / "settings.yml").read_text())
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert sorted(fields - set(documented)) == [], "settings missing from settings.yml"
    assert sorted(set(documented) - fields) == [], "keys of settings.yml that are no setting"


def _default(field: dataclasses.Field) -> object:  # type: ignore[type-arg]
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING
    return field.default_factory()


@pytest.mark.parametrize("field", dataclasses.fields(Settings), ids=lambda f: f.name)
def test_settings_yml_shows_each_default(field: dataclasses.Field) -> None:  # type: ignore[type-arg]
    """settings.yml is the shipped configuration and its documentation: the value shown
    is the code's default (paths as written, relative to the file)."""
    documented = documented_settings((PROJECT_ROOT / "settings.yml").read_text())
    default = _default(field)
    shown = documented.get(field.name)
    if isinstance(default, Path):
        assert Path(str(shown)) == default, field.name
    else:
        assert shown == default, field.name


def test_every_setting_has_a_comment_near_it() -> None:
    """A key alone is not documentation: each is commented on its line or in the block
    of lines just above it (a comment, then keys of the same group)."""
    lines = (PROJECT_ROOT / "settings.yml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        match = re.match(r"([a-z_]+):", line)
        if not match or "#" in line:
            continue
        j = i - 1
        while j >= 0 and re.match(r"[a-z_]+:", lines[j]):
            j -= 1
        if j < 0 or not lines[j].lstrip().startswith("#"):
            uncommented.append(match.group(1))
    assert uncommented == []


def modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            rel = path.relative_to(PROJECT_ROOT)
            if "versions" in rel.parts:  # Alembic revisions: data, not modules to describe
                continue
            found.append(rel)
    return found


def listed(rel: Path, doc: str) -> bool:
    """``pkg/sub/name.py`` in full, or ``name.py`` in a line that names ``pkg/sub/``
    (a row grouping a package's modules); a package's ``__init__.py`` by the package."""
    if rel.as_posix() in doc:
        return True
    parent = rel.parent.as_posix() + "/"
    for line in doc.splitlines():
        if parent in line and (rel.name == "__init__.py" or f"`{rel.name}`" in line):
            return True
    return False


def test_every_module_is_listed_in_the_architecture() -> None:
    doc = ARCHITECTURE.read_text()
    assert len(modules()) > 50
    assert {"scripts/cta/job.py", "workers/jobside.py"} <= {m.as_posix() for m in modules()}
    assert [m.as_posix() for m in modules() if not listed(m, doc)] == []


def test_the_module_check_can_fail() -> None:
    doc = "| `uws_server/web/` | pages: `routes.py`, `session.py` |\n| `workers/node.py` | x |"
    assert listed(Path("uws_server/web/session.py"), doc)
    assert listed(Path("uws_server/web/__init__.py"), doc)
    assert listed(Path("workers/node.py"), doc)
    assert not listed(Path("uws_server/web/admin.py"), doc)
    assert not listed(Path("workers/jobdir.py"), doc)


# A measured figure: a number with a time unit or a rate, or "N x faster" (issue 14.3:
# figures belong in docs/benchmarks.md, with the command that measured them).
FIGURE = re.compile(
    r"\b\d[\d.,]*\s?(?:ms|µs|μs|ns|req/s)\b|\b\d+(?:\.\d+)?\s?x (?:faster|slower|cheaper)"
    r"|\b\d+ times (?:faster|slower|cheaper)"
)


def figures(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if FIGURE.search(line)]


def test_no_benchmark_figure_in_the_code() -> None:
    """Docstrings and comments of the service and the job side say why; the numbers
    that justify them are in docs/benchmarks.md (its table of figures moved out of the
    code), where they are measured again rather than left to rot. (The CTA steps' physical
    constants, "a 4 ns pulse", are no benchmark figures: scripts/cta is not scanned.)"""
    service = [m for m in modules() if m.parts[0] in ("uws_server", "workers", "uws_client")]
    found = [
        f"{m.as_posix()}:{n}" for m in service for n in figures((PROJECT_ROOT / m).read_text())
    ]
    assert found == []
    sample = "x = 1\n# a creation costs 10 µs\n# 4x faster than strftime\n# 2,300 req/s\n"
    assert figures(sample) == [2, 3, 4]  # the check can fail
