"""Rows to dataclasses and back, and hot statements compiled once: the plumbing under
:mod:`uws_server.storage`, all of it derived from the tables of :mod:`uws_server.db`.

A job row and a :class:`~uws_server.models.Job` share their names: every column of
``jobs`` is an attribute of ``Job`` (but ``context``, which only provenance reads), so
the mapping both ways is by column name and a new column needs no code here
(tests/test_storage.py checks the correspondence).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from uws_server import db
from uws_server.models import Job, Phase, Result

JOB_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in db.jobs.columns)
# Columns of ``jobs`` that are no attribute of Job (stored, read elsewhere).
JOB_ONLY_COLUMNS = frozenset({"context"})
_TIME_COLUMNS = frozenset(
    c.name
    for c in db.jobs.columns
    if c.type.python_type is datetime  # type: ignore[misc]
)
ENTITY_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in db.entities.columns)


class Compiled:
    """A statement compiled for one dialect, with its parameters in driver order."""

    def __init__(self, engine: Engine, stmt) -> None:  # type: ignore[no-untyped-def]
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup) if compiled.positional else None
        self.defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self.sqlite = engine.dialect.name == "sqlite"

    def params(self, values: dict[str, object]) -> tuple | dict:  # type: ignore[type-arg]
        if self.defaults:  # literals of the statement (kind != 'upload')
            values = {**self.defaults, **values}
        if self.sqlite:  # sqlite3 would use its deprecated datetime adapter
            values = {
                k: v.isoformat(" ", "microseconds") if isinstance(v, datetime) else v
                for k, v in values.items()
            }
        if self.order is not None:
            return tuple(map(values.__getitem__, self.order))
        return values


def time_of(value: object) -> datetime | None:
    """A stored time (a datetime, or SQLite's ISO text) as a naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def job_values(job: Job) -> dict[str, Any]:
    """A job's row, column by column of the table (times as datetimes, the phase as
    its name, the parameters as JSON; ``context`` empty: only a job's end sets it)."""
    values: dict[str, Any] = {}
    for name in JOB_COLUMN_NAMES:
        value = None if name in JOB_ONLY_COLUMNS else getattr(job, name)
        if name == "parameters":
            value = json.dumps(value)
        elif isinstance(value, Phase):
            value = value.value
        values[name] = value
    return values


def job_from_row(row: tuple[Any, ...], results: list[Result]) -> Job:
    """A job row (the table's columns, in order) and its results as a Job."""
    values: dict[str, Any] = {}
    for name, value in zip(JOB_COLUMN_NAMES, row, strict=True):
        if name in JOB_ONLY_COLUMNS:
            continue
        if name in _TIME_COLUMNS:
            value = time_of(value)
        values[name] = value
    values["phase"] = Phase(values["phase"])
    values["parameters"] = json.loads(values["parameters"])
    return Job(**values, results=results)
