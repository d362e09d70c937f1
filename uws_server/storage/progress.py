"""Jobs' latest progress, and the run times of finished jobs the expected end is
estimated from (issue 13).

One row per job in ``job_progress`` (the latest value only: the history of a job's
progress is of no use once it moved on), deleted with its job (ON DELETE CASCADE).
The table is declared here, on the service's one ``metadata``; its migration is
``0003_job_progress``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from uws_server import db
from uws_server.models import Phase

job_progress = Table(
    "job_progress",
    db.metadata,
    Column(
        "job_id",
        String(32),
        ForeignKey("jobs.job_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("fraction", Float, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("updated", DateTime, nullable=False),
)

P = job_progress
J = db.jobs


@dataclass(frozen=True)
class ProgressRow:
    """A job's latest reported progress (``fraction`` None: only a message)."""

    job_id: str
    fraction: float | None
    message: str
    updated: datetime


@dataclass(frozen=True)
class FinishedRun:
    """A completed job of a definition: its parameters and how long it ran (seconds)."""

    parameters: dict[str, str]
    seconds: float


class ProgressStore:
    """The statements about progress and run times, named for what they do."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_progress(self, row: ProgressRow) -> bool:
        """Keep ``row`` as the job's latest progress; False when the job is gone."""
        values = {"fraction": row.fraction, "message": row.message, "updated": row.updated}
        for _ in range(2):
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(update(P).where(P.c.job_id == row.job_id).values(values))
                    if done.rowcount:
                        return True
                    conn.execute(insert(P).values(job_id=row.job_id, **values))
                    return True
            except IntegrityError:
                # a concurrent first insert (try the update again), or the job was
                # deleted meanwhile (the foreign key): the second round tells
                continue
        return False

    def latest_progress(self, job_id: str) -> ProgressRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(P).where(P.c.job_id == job_id)).first()
        if row is None:
            return None
        return ProgressRow(row.job_id, row.fraction, row.message or "", row.updated)

    def completed_runs(self, jobname: str, limit: int = 200) -> list[FinishedRun]:
        """The last ``limit`` COMPLETED jobs of a definition with their run times (the
        history the expected end and the quote are estimated from)."""
        stmt = (
            select(J.c.parameters, J.c.start_time, J.c.end_time)
            .where(J.c.jobname == jobname, J.c.phase == Phase.COMPLETED.value)
            .where(J.c.start_time.is_not(None), J.c.end_time.is_not(None))
            .order_by(J.c.creation_time.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        runs = []
        for parameters, start, end in rows:
            try:
                params = json.loads(parameters or "{}")
            except ValueError:
                params = {}
            if not isinstance(params, dict):
                params = {}
            seconds = (end - start).total_seconds()
            if seconds >= 0:
                runs.append(FinishedRun({str(k): str(v) for k, v in params.items()}, seconds))
        return runs
