"""Every SQL statement of the service: jobs, results/entities, usages, users.

Phase changes are compare-and-set (``UPDATE ... WHERE phase IN (...)``), so two threads
(a client's ABORT and a worker's COMPLETED, say) can never both win.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, select, update

from uws_server import db
from uws_server.models import Job, Phase, Result, User
from uws_server.storage.entities import EntityRow
from uws_server.storage.rows import JOB_COLUMN_NAMES, Compiled, job_from_row
from uws_server.storage.sqlite_writes import SQLiteWrites, job_row

J = db.jobs
E = db.entities

# Seconds a job read is reused. Every write made through this Store drops the job's
# entry at once, so the bound only matters for writes from outside the process (an
# operator's sqlite3 session), as the user cache of uws_server.auth does.
JOB_CACHE_SECONDS = 1.0
JOB_CACHE_SIZE = 4096

# Hot statements (insert a job, read a job and its results) are compiled once per
# dialect and run on the DBAPI connection: SQLAlchemy's per-call execution machinery
# cost four times the query itself on GET job. Everything else uses Core.
#
# They are also shaped to make as few driver calls as possible: sqlite3 releases the
# GIL in every call that steps a statement, and under concurrent requests each release
# hands the GIL to another thread and waits to get it back. Measured over HTTP (wrk, 8
# connections, four no-op releases added to GET job: ~2,900 -> ~2,000 req/s), each
# release cost ~50 µs of throughput against ~5 µs of work: a job is therefore read
# with one statement (job LEFT JOIN results) and inserted in autocommit mode (one
# call, not BEGIN + INSERT + COMMIT).
_INSERT_JOB = insert(J)
_SELECT_JOB = (
    select(J, E.c.entity_id, E.c.name, E.c.path, E.c.content_type, E.c.size, E.c.sha256)
    .select_from(J.outerjoin(E, and_(E.c.job_id == J.c.job_id, E.c.kind != "upload")))
    .where(J.c.job_id == bindparam("jid"))
    .order_by(E.c.created, E.c.name)
)


@dataclass
class JobRef:
    """One row of a job list (the UWS ShortJobDescription)."""

    job_id: str
    phase: Phase
    run_id: str | None
    owner: str
    creation_time: datetime


class Store:
    """Jobs, entities and users over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time; serialising writers in-process avoids
        # SQLITE_BUSY on lock upgrades. PostgreSQL needs no such lock.
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        self._insert_job = Compiled(engine, _INSERT_JOB)
        self._select_job = Compiled(engine, _SELECT_JOB)
        self._integrity_error = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        # SQLite: job inserts and updates without SQLAlchemy, under the same lock.
        self.sqlite_writes = SQLiteWrites(engine, self._write_lock) if self._sqlite else None
        # Recent job reads: {job_id: (expiry, job)}; see get_job and _changed.
        self._jobs: dict[str, tuple[float, Job]] = {}
        self._jobs_lock = threading.Lock()
        self._generation = 0  # bumped by every write that can change a stored job

    def _changed(self, *job_ids: str | None) -> None:
        """After a write: forget those jobs' cached reads, and any read in flight."""
        with self._jobs_lock:
            self._generation += 1
            for job_id in job_ids:
                if job_id is not None:
                    self._jobs.pop(job_id, None)

    @contextlib.contextmanager
    def _write(self, *job_ids: str | None) -> Iterator[Connection]:
        """A write transaction, naming the jobs it may change: their cached reads are
        dropped once it has committed (or failed)."""
        try:
            if self._sqlite:
                with self._write_lock, self.engine.begin() as conn:
                    yield conn
            else:
                with self.engine.begin() as conn:
                    yield conn
        finally:
            if job_ids:
                self._changed(*job_ids)

    # ---------------------------------------------------------------- jobs
    def insert_job(self, job: Job, new_id: Callable[[], str], tries: int = 5) -> Job:
        """Insert a job; on an id collision draw a new id (never overwrite)."""
        for _ in range(tries):
            if self.sqlite_writes is not None:
                if self.sqlite_writes.insert(job_row(job)):
                    return job
                job.job_id = new_id()
                continue
            values = {
                "job_id": job.job_id,
                "jobname": job.jobname,
                "owner": job.owner,
                "phase": job.phase.value,
                "run_id": job.run_id,
                "creation_time": job.creation_time,
                "destruction_time": job.destruction_time,
                "execution_duration": job.execution_duration,
                "quote": job.quote,
                "start_time": None,
                "end_time": None,
                "error_summary": None,
                "parameters": json.dumps(job.parameters),
                "manager": job.manager,
                "external_id": None,
                "callback_token_hash": job.callback_token_hash,
                "context": None,
                "version": 0,
            }
            params = self._insert_job.params(values)
            conn = self.engine.raw_connection()
            try:
                cur = conn.cursor()
                cur.execute(self._insert_job.sql, params)
                cur.close()
                conn.commit()
                return job
            except self._integrity_error:
                conn.rollback()
                job.job_id = new_id()
            finally:
                conn.close()
        raise RuntimeError("could not draw a unique job id")

    def get_job(self, job_id: str) -> Job | None:
        """The job and its results; a shared object that callers must not modify.

        Reads are cached for JOB_CACHE_SECONDS: with the hot path down to a handful of
        microseconds of Python, what a read costs under concurrent requests is the GIL
        handed over in each sqlite3 call (GET job over HTTP: ~2,000 req/s with the two
        calls of a read, ~2,900 without). A read that overlapped a write is not cached
        (the generation check), so a cached job is never older than this process's
        last write to it.
        """
        hit = self._jobs.get(job_id)
        now = time.monotonic()
        if hit is not None and now < hit[0]:
            return hit[1]
        generation = self._generation
        job = self._read_job(job_id)
        if job is not None:
            with self._jobs_lock:
                if generation == self._generation:
                    if len(self._jobs) >= JOB_CACHE_SIZE:
                        self._jobs.clear()
                    self._jobs[job_id] = (now + JOB_CACHE_SECONDS, job)
        return job

    def _read_job(self, job_id: str) -> Job | None:
        """The job and its results, in one statement (one row per result, or one)."""
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(self._select_job.sql, self._select_job.params({"jid": job_id}))
            rows = cur.fetchall()
            cur.close()
            conn.commit()  # end the read transaction (PostgreSQL opens one)
        finally:
            conn.close()
        if not rows:
            return None
        n = len(JOB_COLUMN_NAMES)
        results = [
            Result(
                name=name,
                path=path or "",
                content_type=ctype or "application/octet-stream",
                size=size,
                sha256=sha,
                entity_id=eid,
            )
            for eid, name, path, ctype, size, sha in (row[n:] for row in rows)
            if eid is not None
        ]
        return job_from_row(rows[0][:n], results)

    def list_jobs(
        self,
        jobname: str,
        owner: str | None,
        phases: Iterable[Phase] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[JobRef]:
        """The job list, newest first. ARCHIVED only when asked for by PHASE."""
        cols = (J.c.job_id, J.c.phase, J.c.run_id, J.c.owner, J.c.creation_time)
        conds = [J.c.jobname == jobname]
        if owner is not None:
            conds.append(J.c.owner == owner)
        phase_list = [p.value for p in phases] if phases else None
        if phase_list:
            conds.append(J.c.phase.in_(phase_list))
        else:
            conds.append(J.c.phase != Phase.ARCHIVED.value)
        if after is not None:
            conds.append(J.c.creation_time > after)
        stmt = select(*cols).where(and_(*conds)).order_by(J.c.creation_time.desc())
        if last is not None:
            stmt = stmt.limit(last)
        with self.engine.connect() as conn:
            return [
                JobRef(r.job_id, Phase(r.phase), r.run_id, r.owner, r.creation_time)
                for r in conn.execute(stmt)
            ]

    def update_job(self, job_id: str, **values: object) -> bool:
        """Change fields of a job regardless of phase (the service checked)."""
        if self.sqlite_writes is not None:
            return self._update_fast(job_id, None, values)
        values["version"] = J.c.version + 1
        with self._write(job_id) as conn:
            res = conn.execute(update(J).where(J.c.job_id == job_id).values(**values))
        return res.rowcount == 1

    def update_if_phase(self, job_id: str, phases: Iterable[Phase], **values: object) -> bool:
        """Compare-and-set: change the job only while its phase is one of ``phases``."""
        if "phase" in values and isinstance(values["phase"], Phase):
            values["phase"] = values["phase"].value  # type: ignore[union-attr]
        allowed = [p.value for p in phases]
        if self.sqlite_writes is not None:
            return self._update_fast(job_id, allowed, values)
        values["version"] = J.c.version + 1
        with self._write(job_id) as conn:
            res = conn.execute(
                update(J).where(J.c.job_id == job_id, J.c.phase.in_(allowed)).values(**values)
            )
        return res.rowcount == 1

    def _update_fast(
        self, job_id: str, phases: list[str] | None, values: dict[str, object]
    ) -> bool:
        assert self.sqlite_writes is not None
        try:
            return self.sqlite_writes.update_job(job_id, phases, values)
        finally:
            self._changed(job_id)

    def delete_job(self, job_id: str) -> list[str]:
        """Delete a job and its usages; returns the paths of its entities' files.

        Entities a later job used are kept (with their job id cleared) so that the
        later job's provenance still resolves.
        """
        with self._write(job_id) as conn:
            paths = [
                r.path for r in conn.execute(select(E.c.path).where(E.c.job_id == job_id)) if r.path
            ]
            conn.execute(delete(db.usages).where(db.usages.c.job_id == job_id))
            used_elsewhere = select(db.usages.c.entity_id)
            conn.execute(
                delete(E).where(E.c.job_id == job_id, E.c.entity_id.not_in(used_elsewhere))
            )
            conn.execute(update(E).where(E.c.job_id == job_id).values(job_id=None))
            conn.execute(delete(J).where(J.c.job_id == job_id))
        return paths

    def count_active(self, owner: str) -> int:
        active = [p.value for p in (Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED)]
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).where(J.c.owner == owner, J.c.phase.in_(active))
            ).scalar_one()

    def jobs_in_phases(self, phases: Iterable[Phase]) -> list[Job]:
        ids = self._ids_where(J.c.phase.in_([p.value for p in phases]))
        return [j for j in (self.get_job(i) for i in ids) if j is not None]

    def expired_job_ids(self, now: datetime) -> list[str]:
        return self._ids_where(J.c.destruction_time <= now)

    def _ids_where(self, cond) -> list[str]:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            return [r.job_id for r in conn.execute(select(J.c.job_id).where(cond))]

    def count_jobs(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(J)).scalar_one()

    # ------------------------------------------------------------ entities
    def add_entities(self, rows: list[EntityRow]) -> None:
        if not rows:
            return
        with self._write(*{r.job_id for r in rows}) as conn:
            conn.execute(insert(E), [r.__dict__ for r in rows])

    def replace_kind(self, job_id: str, kind: str, rows: list[EntityRow]) -> None:
        """Record a job's entities of one kind (results, provenance), replacing earlier ones."""
        self._replace(job_id, kind, rows, None, {})

    def replace_results(self, job_id: str, rows: list[EntityRow]) -> None:
        self.replace_kind(job_id, "result", rows)

    def finish_job(
        self,
        job_id: str,
        phases: Iterable[Phase],
        results: list[EntityRow] | None,
        **values: object,
    ) -> bool:
        """Compare-and-set of a job's end: ``values`` (its final phase...) while its phase
        is one of ``phases``, and its results replaced by ``results`` (None: kept), in
        one transaction; False, with nothing written, when the phase moved on."""
        if isinstance(values.get("phase"), Phase):
            values["phase"] = values["phase"].value  # type: ignore[union-attr]
        return self._replace(job_id, "result", results, [p.value for p in phases], values)

    def _replace(
        self,
        job_id: str,
        kind: str,
        rows: list[EntityRow] | None,
        phases: list[str] | None,
        values: dict[str, object],
    ) -> bool:
        if self.sqlite_writes is not None:
            try:
                return self.sqlite_writes.replace_entities(job_id, kind, rows, phases, values)
            finally:
                self._changed(job_id)
        # The job's document changes: a new version (caches and WAIT rely on it).
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

    def add_usages(self, job_id: str, pairs: list[tuple[str, str]]) -> None:
        """Record that ``job_id`` used each (entity_id, role)."""
        if not pairs:
            return
        with self._write() as conn:
            conn.execute(
                insert(db.usages),
                [{"job_id": job_id, "entity_id": e, "role": r} for e, r in pairs],
            )

    def usages_of_job(self, job_id: str) -> list[tuple[str, str]]:
        u = db.usages
        with self.engine.connect() as conn:
            return [
                (r.entity_id, r.role)
                for r in conn.execute(select(u.c.entity_id, u.c.role).where(u.c.job_id == job_id))
            ]

    def jobs_using(self, entity_ids: Iterable[str]) -> list[str]:
        u = db.usages
        ids = list(entity_ids)
        if not ids:
            return []
        with self.engine.connect() as conn:
            return sorted(
                {r.job_id for r in conn.execute(select(u.c.job_id).where(u.c.entity_id.in_(ids)))}
            )

    # --------------------------------------------------------------- users
    def add_user(self, user: User, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                insert(db.users).values(
                    name=user.name,
                    token_hash=user.token_hash,
                    is_admin=user.is_admin,
                    roles=",".join(user.roles),
                    disabled=user.disabled,
                    max_active_jobs=user.max_active_jobs,
                    created=now,
                )
            )

    def _user(self, cond) -> User | None:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            row = conn.execute(select(db.users).where(cond)).first()
        if row is None:
            return None
        return User(
            name=row.name,
            token_hash=row.token_hash,
            is_admin=row.is_admin,
            roles=tuple(r for r in row.roles.split(",") if r),
            disabled=row.disabled,
            max_active_jobs=row.max_active_jobs,
        )

    def user_by_token_hash(self, token_hash: str) -> User | None:
        return self._user(db.users.c.token_hash == token_hash)

    def user_by_name(self, name: str) -> User | None:
        return self._user(db.users.c.name == name)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            names = [r.name for r in conn.execute(select(db.users.c.name).order_by("name"))]
        return [u for u in (self.user_by_name(n) for n in names) if u is not None]

    def update_user(self, name: str, **values: object) -> bool:
        if "roles" in values and not isinstance(values["roles"], str):
            values["roles"] = ",".join(values["roles"])  # type: ignore[arg-type]
        with self._write() as conn:
            res = conn.execute(update(db.users).where(db.users.c.name == name).values(**values))
        return res.rowcount == 1
