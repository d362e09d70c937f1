"""Rows to objects, and statements compiled once: the plumbing under :mod:`uws_server.storage`.

Hot statements (insert a job, read a job and its results) are compiled once per dialect
and run on the DBAPI connection (see the storage module for why); a job row is turned
into a :class:`~uws_server.models.Job` here.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Engine

from uws_server import db
from uws_server.models import Job, Phase, Result

JOB_COLUMN_NAMES = [c.name for c in db.jobs.columns]
# Datetimes are bound as SQLAlchemy's SQLite DateTime storage format writes them,
# "YYYY-MM-DD HH:MM:SS.ffffff", so that Core and raw statements compare alike.


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


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def time_of(value: object) -> datetime | None:
    """A stored time (a datetime, or SQLite's ISO text) as a naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def job_from_row(row: tuple, results: list[Result]) -> Job:  # type: ignore[type-arg]
    d = dict(zip(JOB_COLUMN_NAMES, row, strict=True))
    return Job(
        job_id=d["job_id"],
        jobname=d["jobname"],
        owner=d["owner"],
        phase=Phase(d["phase"]),
        creation_time=time_of(d["creation_time"]),  # type: ignore[arg-type]
        destruction_time=time_of(d["destruction_time"]),  # type: ignore[arg-type]
        execution_duration=d["execution_duration"],
        parameters=json.loads(d["parameters"]),
        run_id=d["run_id"],
        quote=time_of(d["quote"]),
        start_time=time_of(d["start_time"]),
        end_time=time_of(d["end_time"]),
        error_summary=d["error_summary"],
        results=results,
        manager=d["manager"],
        external_id=d["external_id"],
        callback_token_hash=d["callback_token_hash"],
        version=d["version"],
    )
