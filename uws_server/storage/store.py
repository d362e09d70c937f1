"""The Store: jobs and their phase changes, with the entity and user methods mixed in
(:mod:`.entities`, :mod:`.users`).

Every write of a job is a method named for what it records (``mark_queued``,
``mark_executing``, ``finish``, ``mark_aborted``...), and every phase change is
compare-and-set (``UPDATE ... WHERE phase IN (...)``), so two threads (a client's ABORT
and a worker's COMPLETED, say) can never both win.

Two write paths: SQLAlchemy Core, and on SQLite the job writes of
:mod:`.sqlite_writes` (group commit of creations, one-statement updates; the creation
benchmark needs them), whose statements are derived from the same table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from uws_server import db
from uws_server.models import ACTIVE_PHASES, Job, Phase, Result, User
from uws_server.storage.entities import EntityRow, EntityStore
from uws_server.storage.rows import JOB_COLUMN_NAMES, Compiled, job_from_row, job_values
from uws_server.storage.sqlite_writes import SQLiteWrites, job_row
from uws_server.storage.users import UserStore

log = logging.getLogger(__name__)

J = db.jobs
E = db.entities

# Seconds a job read is reused. Every write made through this Store drops the job's
# entry at once, so the bound only matters for writes from outside the process (an
# operator's sqlite3 session), as the user cache of uws_server.auth does.
JOB_CACHE_SECONDS = 1.0
JOB_CACHE_SIZE = 4096

# A job is read (GET job, every WAIT, every callback) with one statement, job LEFT JOIN
# results, compiled once per dialect and run on the DBAPI connection: SQLAlchemy's
# per-call execution machinery cost four times the query itself on GET job, and on
# SQLite every driver call hands the GIL over under concurrent requests
# (docs/benchmarks.md, "Core service").
_JOB_AND_RESULTS = select(
    J, E.c.entity_id, E.c.name, E.c.path, E.c.content_type, E.c.size, E.c.sha256
).select_from(J.outerjoin(E, and_(E.c.job_id == J.c.job_id, E.c.kind != "upload")))
_SELECT_JOB = _JOB_AND_RESULTS.where(J.c.job_id == bindparam("jid")).order_by(E.c.created, E.c.name)


def _jobs_of(rows: list[tuple]) -> list[Job]:  # type: ignore[type-arg]
    """Jobs from rows of _JOB_AND_RESULTS (one per result, or one), in row order."""
    n = len(JOB_COLUMN_NAMES)
    jobs: dict[object, tuple[tuple, list[Result]]] = {}  # type: ignore[type-arg]
    for row in rows:
        head, (eid, name, path, ctype, size, sha) = row[:n], row[n:]
        entry = jobs.setdefault(head[0], (head, []))
        if eid is not None:
            entry[1].append(
                Result(
                    name=name,
                    path=path or "",
                    content_type=ctype or "application/octet-stream",
                    size=size,
                    sha256=sha,
                    entity_id=eid,
                )
            )
    return [job_from_row(head, results) for head, results in jobs.values()]


# A job may be aborted in any of these phases.
ABORTABLE = (Phase.PENDING, *sorted(ACTIVE_PHASES))


@dataclass
class JobRef:
    """One row of a job list (the UWS ShortJobDescription)."""

    job_id: str
    phase: Phase
    run_id: str | None
    owner: str
    creation_time: datetime
    jobname: str = ""  # the job list it belongs to


@dataclass
class JobEnd:
    """What :meth:`Store.finish` records at a job's end."""

    phase: Phase  # COMPLETED, ERROR or ABORTED
    end_time: datetime
    start_time: datetime | None = None  # set when the job never reported its start
    error_summary: str | None = None
    context: str | None = None  # JSON: software versions, host...
    external_id: str | None = None
    results: list[EntityRow] | None = None  # None: the results stored are kept

    def values(self) -> dict[str, object]:
        values: dict[str, object] = {"phase": self.phase.value, "end_time": self.end_time}
        for name in ("start_time", "error_summary", "context", "external_id"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return values


def visible_owner(viewer: User) -> str | None:
    """The ownership rule (``can_read``) as a job list's filter: a user sees their own
    jobs; an administrator everyone's (None: no filter)."""
    return None if viewer.is_admin else viewer.name


class Store(EntityStore, UserStore):
    """Jobs, entities and users over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time; serialising writers in-process avoids
        # SQLITE_BUSY on lock upgrades. PostgreSQL needs no such lock.
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        self._select_job = Compiled(engine, _SELECT_JOB)
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

    def ping(self) -> None:
        """One trivial statement on a pooled connection; raises when the database
        cannot answer (VOSI availability reports that as "not available")."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # ------------------------------------------------------------ creating
    def insert_job(self, job: Job, new_id: Callable[[], str], tries: int = 5) -> Job:
        """Insert a new job; on an id collision draw a new id (never overwrite)."""
        for _ in range(tries):
            if self.sqlite_writes is not None:
                if self.sqlite_writes.insert(job_row(job)):
                    return job
            else:
                try:
                    with self._write() as conn:
                        conn.execute(insert(J).values(job_values(job)))
                    return job
                except IntegrityError:
                    pass
            log.warning("a new job's id %s was taken: drawing another", job.job_id)
            job.job_id = new_id()
        raise RuntimeError("could not draw a unique job id")

    # ------------------------------------------------------------- reading
    def get_job(self, job_id: str) -> Job | None:
        """The job and its results; a shared object that callers must not modify.

        Reads are cached for JOB_CACHE_SECONDS: what a read costs under concurrent
        requests is the GIL handed over in each sqlite3 call. A read that overlapped a
        write is not cached (the generation check), so a cached job is never older
        than this process's last write to it.
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
        jobs = _jobs_of(rows)
        return jobs[0] if jobs else None

    def jobs_visible_to(
        self,
        viewer: User,
        jobnames: str | Sequence[str],
        phases: Iterable[Phase] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[JobRef]:
        """The job list(s) as ``viewer`` may see them (:func:`visible_owner`), newest
        first. ARCHIVED only when asked for by PHASE."""
        names = [jobnames] if isinstance(jobnames, str) else list(jobnames)
        return self._list(names, visible_owner(viewer), phases, after, last)

    def _list(
        self,
        names: list[str],
        owner: str | None,
        phases: Iterable[Phase] | None,
        after: datetime | None,
        last: int | None,
    ) -> list[JobRef]:
        if not names:
            return []
        cols = (J.c.job_id, J.c.phase, J.c.run_id, J.c.owner, J.c.creation_time, J.c.jobname)
        conds = [J.c.jobname == names[0]] if len(names) == 1 else [J.c.jobname.in_(names)]
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
                JobRef(r.job_id, Phase(r.phase), r.run_id, r.owner, r.creation_time, r.jobname)
                for r in conn.execute(stmt)
            ]

    def count_active(self, owner: str) -> int:
        """The owner's queued or running jobs (the per-user limit)."""
        active = [p.value for p in ACTIVE_PHASES]
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).where(J.c.owner == owner, J.c.phase.in_(active))
            ).scalar_one()

    def jobs_in_phases(self, phases: Iterable[Phase]) -> list[Job]:
        """Every job in one of ``phases``, with its results, oldest first, in one
        statement (recovery at start, the operator's page)."""
        stmt = _JOB_AND_RESULTS.where(J.c.phase.in_([p.value for p in phases])).order_by(
            J.c.creation_time, J.c.job_id, E.c.created, E.c.name
        )
        with self.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(stmt)]
        return _jobs_of(rows)

    def expired_job_ids(self, now: datetime) -> list[str]:
        return self._ids_where(J.c.destruction_time <= now)

    def _ids_where(self, cond) -> list[str]:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            return [r.job_id for r in conn.execute(select(J.c.job_id).where(cond))]

    def candidate_jobs(
        self, viewer: User, jobname: str | None, owner: str | None, limit: int
    ) -> list[str]:
        """Ids of jobs ``viewer`` may see, of one job list and owner when given (the
        provenance search's first cut), at most ``limit``."""
        stmt = select(J.c.job_id)
        if jobname:
            stmt = stmt.where(J.c.jobname == jobname)
        if owner:
            stmt = stmt.where(J.c.owner == owner)
        visible = visible_owner(viewer)
        if visible is not None:
            stmt = stmt.where(J.c.owner == visible)
        with self.engine.connect() as conn:
            return [r.job_id for r in conn.execute(stmt.limit(limit))]

    # ------------------------------------------------------ phase changes
    def _set(self, job_id: str, phases: Sequence[Phase] | None, **values: object) -> bool:
        """Compare-and-set of job columns (every caller below names what it records):
        only while the job's phase is one of ``phases`` (None: any); a new version."""
        allowed = None if phases is None else [p.value for p in phases]
        if self.sqlite_writes is not None:
            try:
                return self.sqlite_writes.update_job(job_id, allowed, values)
            finally:
                self._changed(job_id)
        where = [J.c.job_id == job_id]
        if allowed is not None:
            where.append(J.c.phase.in_(allowed))
        with self._write(job_id) as conn:
            res = conn.execute(update(J).where(*where).values(version=J.c.version + 1, **values))
        return res.rowcount == 1

    def mark_queued(
        self, job_id: str, manager: str, callback_token_hash: str | None = None
    ) -> bool:
        """PENDING → QUEUED, handed to ``manager``; False when it left PENDING."""
        return self._set(
            job_id,
            (Phase.PENDING,),
            phase=Phase.QUEUED.value,
            manager=manager,
            callback_token_hash=callback_token_hash,
        )

    def mark_executing(
        self, job_id: str, expected: Phase, start_time: datetime, external_id: str | None = None
    ) -> bool:
        """``expected`` → EXECUTING, started at ``start_time``."""
        values: dict[str, object] = {"phase": Phase.EXECUTING.value, "start_time": start_time}
        if external_id:
            values["external_id"] = external_id
        return self._set(job_id, (expected,), **values)

    def mark_phase(
        self, job_id: str, expected: Phase, phase: Phase, external_id: str | None = None
    ) -> bool:
        """``expected`` → a phase that is neither EXECUTING nor final (QUEUED again,
        HELD, SUSPENDED), as the job's manager reports it."""
        if phase is Phase.EXECUTING or phase.is_final:
            raise ValueError(f"use mark_executing, finish or mark_aborted for {phase.value}")
        values: dict[str, object] = {"phase": phase.value}
        if external_id:
            values["external_id"] = external_id
        return self._set(job_id, (expected,), **values)

    def finish(self, job_id: str, expected: Phase, end: JobEnd) -> bool:
        """A job's end: its final phase, times, error, context and results (when
        given) in one transaction, only while it is still ``expected``; False, with
        nothing written, when the phase moved on (a late completion never attaches
        results to an aborted job)."""
        if not end.phase.is_final:
            raise ValueError(f"{end.phase.value} is not a final phase")
        done = self._replace(job_id, "result", end.results, [expected.value], end.values())
        return done

    def mark_aborted(self, job_id: str, end_time: datetime, message: str) -> bool:
        """Any phase before the end → ABORTED; False when the job had already ended."""
        return self._set(
            job_id, ABORTABLE, phase=Phase.ABORTED.value, end_time=end_time, error_summary=message
        )

    def mark_archived(self, job_id: str) -> bool:
        """A finished job → ARCHIVED (its files removed, its record kept)."""
        return self._set(
            job_id,
            (Phase.COMPLETED, Phase.ERROR, Phase.ABORTED),
            phase=Phase.ARCHIVED.value,
        )

    def set_external_id(self, job_id: str, external_id: str) -> bool:
        """The manager's id of a running job (pid, Slurm job id), whatever its phase."""
        return self._set(job_id, None, external_id=external_id)

    def set_execution_duration(self, job_id: str, seconds: int) -> bool:
        """A PENDING job's executionDuration; False when it left PENDING."""
        return self._set(job_id, (Phase.PENDING,), execution_duration=seconds)

    def set_parameters(self, job_id: str, parameters: dict[str, str]) -> bool:
        """A PENDING job's parameters (all of them); False when it left PENDING."""
        return self._set(job_id, (Phase.PENDING,), parameters=json.dumps(parameters))

    def set_destruction(self, job_id: str, when: datetime, pending_only: bool = True) -> bool:
        """A job's destruction time: while PENDING (a client's change; False when it
        left PENDING), or in any phase (``pending_only=False``: an operator's)."""
        return self._set(job_id, (Phase.PENDING,) if pending_only else None, destruction_time=when)

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
