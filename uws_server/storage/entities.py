"""Entities (files a job generated, uploads, fetched URLs, files a script reported
reading) and usages (which job used which entity, in which role): their rows, and the
provenance reads built on them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from uws_server import db
from uws_server.models import Job
from uws_server.storage.rows import ENTITY_COLUMN_NAMES, JOB_COLUMN_NAMES, job_from_row
from uws_server.storage.sqlite_writes import SQLiteWrites

J = db.jobs
E = db.entities
U = db.usages


@dataclass
class EntityRow:
    """One row of the entities table (its attributes are the table's columns)."""

    entity_id: str
    job_id: str | None
    name: str
    path: str | None
    location: str | None
    content_type: str | None
    size: int | None
    sha256: str | None
    owner: str
    role: str | None
    kind: str
    created: datetime


@dataclass
class JobRecordRows:
    """What a job's provenance record is made of, as stored: the job, its software
    context, the entities it used (with their roles) and those it generated."""

    job: Job
    context: str | None
    used: list[tuple[str, EntityRow]] = field(default_factory=list)  # (role, entity)
    generated: list[EntityRow] = field(default_factory=list)  # kind 'result', by creation


# Ids per IN list: far below SQLite's and PostgreSQL's bound-parameter limits.
_CHUNK = 500


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i : i + _CHUNK])


class EntityStore:
    """Entities and usages: the Store's methods for them (mixed into Store)."""

    engine: Engine
    _write: Callable[..., contextlib.AbstractContextManager[Connection]]
    sqlite_writes: SQLiteWrites | None
    _changed: Callable[..., None]

    def add_entities(self, rows: list[EntityRow]) -> None:
        """Record new entities (uploads, fetched inputs, files a script reported)."""
        if not rows:
            return
        with self._write(*{r.job_id for r in rows}) as conn:
            conn.execute(insert(E), [r.__dict__ for r in rows])

    def replace_provenance(self, job_id: str, rows: list[EntityRow]) -> None:
        """A job's provenance documents, replacing those written before."""
        self._replace(job_id, "provenance", rows, None, {})

    def _replace(
        self,
        job_id: str,
        kind: str,
        rows: list[EntityRow] | None,
        phases: list[str] | None,
        values: dict[str, object],
    ) -> bool:
        """One transaction: the job updated (``values``, a new version; only while its
        phase is one of ``phases`` when given) and its entities of ``kind`` replaced by
        ``rows`` (None: kept). False, with nothing written, when the phase moved on."""
        if self.sqlite_writes is not None:
            try:
                return self.sqlite_writes.replace_entities(job_id, kind, rows, phases, values)
            finally:
                self._changed(job_id)
        where = [J.c.job_id == job_id] + ([J.c.phase.in_(phases)] if phases is not None else [])
        with self._write(job_id) as conn:
            res = conn.execute(update(J).where(*where).values(version=J.c.version + 1, **values))
            if res.rowcount != 1:
                return False
            if rows is not None:
                conn.execute(delete(E).where(E.c.job_id == job_id, E.c.kind == kind))
                if rows:
                    conn.execute(insert(E), [r.__dict__ for r in rows])
        return True

    def get_entity(self, entity_id: str) -> EntityRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(E).where(E.c.entity_id == entity_id)).first()
        return EntityRow(**row._mapping) if row else None

    def entities_of_job(self, job_id: str) -> list[EntityRow]:
        with self.engine.connect() as conn:
            return [
                EntityRow(**r._mapping)
                for r in conn.execute(select(E).where(E.c.job_id == job_id).order_by(E.c.created))
            ]

    def entity_by_content(self, sha256: str, owner: str | None) -> EntityRow | None:
        """The stored entity with this content (``owner``'s only, unless None): the
        generated or uploaded one before a reported file, the oldest first."""
        stmt = select(E).where(E.c.sha256 == sha256)
        if owner is not None:
            stmt = stmt.where(E.c.owner == owner)
        with self.engine.connect() as conn:
            row = conn.execute(stmt.order_by(E.c.kind.desc(), E.c.created).limit(1)).first()
        return EntityRow(**row._mapping) if row else None

    def add_usages(self, job_id: str, pairs: list[tuple[str, str]]) -> None:
        """Record that ``job_id`` used each (entity_id, role); a usage already recorded
        is left as it is. Two writers may link the same reported input (the final hook
        and a reader asking for provenance before the hook ran, or two server
        processes): the second must not fail on the table's primary key."""
        if not pairs:
            return
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(U).on_conflict_do_nothing()
        with self._write() as conn:
            conn.execute(stmt, [{"job_id": job_id, "entity_id": e, "role": r} for e, r in pairs])

    def usages_of_job(self, job_id: str) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [
                (r.entity_id, r.role)
                for r in conn.execute(select(U.c.entity_id, U.c.role).where(U.c.job_id == job_id))
            ]

    def jobs_using(self, entity_ids: Iterable[str]) -> list[str]:
        """The jobs that used any of these entities (provenance, downstream)."""
        ids = list(entity_ids)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                found.update(
                    r.job_id
                    for r in conn.execute(select(U.c.job_id).where(U.c.entity_id.in_(chunk)))
                )
        return sorted(found)

    def jobs_generating(self, entity_ids: Iterable[str]) -> list[str]:
        """The jobs that generated any of these entities (provenance, upstream)."""
        ids = list(entity_ids)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                stmt = select(E.c.job_id).where(
                    E.c.entity_id.in_(chunk), E.c.kind == "result", E.c.job_id.is_not(None)
                )
                found.update(r.job_id for r in conn.execute(stmt))
        return sorted(found)

    def job_records(self, job_ids: Sequence[str]) -> dict[str, JobRecordRows]:
        """The provenance rows of many jobs in three statements per 500 jobs (the jobs,
        their usages joined to the entities used, the entities they generated), where
        reading each job on its own took six: a provenance search reads thousands."""
        out: dict[str, JobRecordRows] = {}
        n = len(JOB_COLUMN_NAMES)
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(job_ids))):
                for row in conn.execute(select(J).where(J.c.job_id.in_(chunk))):
                    job = job_from_row(tuple(row)[:n], [])
                    out[job.job_id] = JobRecordRows(job, row.context)
                if not out:
                    continue
                used = (
                    select(U.c.job_id.label("user_job"), U.c.role.label("usage_role"), E)
                    .select_from(U.join(E, E.c.entity_id == U.c.entity_id))
                    .where(U.c.job_id.in_(chunk))
                    .order_by(U.c.job_id, U.c.entity_id, U.c.role)
                )
                for row in conn.execute(used):
                    rec = out.get(row.user_job)
                    if rec is not None:
                        entity = EntityRow(**{c: row._mapping[E.c[c]] for c in ENTITY_COLUMN_NAMES})
                        rec.used.append((row.usage_role, entity))
                generated = (
                    select(E)
                    .where(E.c.job_id.in_(chunk), E.c.kind == "result")
                    .order_by(E.c.created, E.c.name)
                )
                for row in conn.execute(generated):
                    rec = out.get(row.job_id)
                    if rec is not None:
                        rec.generated.append(EntityRow(**row._mapping))
        return out

    def jobnames(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Each job's job list (the result URLs of entities name it)."""
        ids = sorted(set(job_ids))
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                stmt = select(J.c.job_id, J.c.jobname).where(J.c.job_id.in_(chunk))
                out.update((r.job_id, r.jobname) for r in conn.execute(stmt))
        return out
