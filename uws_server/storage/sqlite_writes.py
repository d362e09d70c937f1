"""SQLite's job writes that bypass SQLAlchemy: group commit of inserts, one-statement
updates.

They are most of what the service writes (a creation; three or four phase changes per
job), and under concurrent requests their cost is the GIL: SQLAlchemy's statement
building, caching and transaction take a large share of it per write, and every sqlite3 call
gives the GIL up and waits to get it back. So on SQLite these go straight to one
connection of our own, in autocommit mode, under the Store's write lock (SQLite has one
writer at a time anyway). The values are stored exactly as SQLAlchemy's SQLite dialect
stores them (tests/test_storage.py and tests/test_sqlite_writes.py check it). PostgreSQL
keeps the ORM path: it has no single writer to queue behind.
"""

from __future__ import annotations

import json
import operator
import threading
from collections import deque
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event

from uws_server import db
from uws_server.models import Job, Phase
from uws_server.storage.rows import (
    ENTITY_COLUMN_NAMES,
    JOB_COLUMN_NAMES,
    JOB_ONLY_COLUMNS,
)

# Every statement text below is derived from the tables (uws_server.db): a new column
# needs no change here.
JOB_COLUMNS = JOB_COLUMN_NAMES
INSERT_JOB = (
    f"INSERT INTO {db.jobs.name} ({', '.join(JOB_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
)
# The entities table's columns, each an attribute of storage.EntityRow.
ENTITY_COLUMNS = ENTITY_COLUMN_NAMES
INSERT_ENTITY = (
    f"INSERT INTO {db.entities.name} ({', '.join(ENTITY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ENTITY_COLUMNS))})"
)
DELETE_ENTITIES_OF_KIND = f"DELETE FROM {db.entities.name} WHERE job_id = ? AND kind = ?"
# job_row's plan, from the table: the Job attributes read (every column but those a
# new job leaves empty), where the times, the phase and the parameters are among them,
# and where the empty columns go.
_READ = [c for c in JOB_COLUMNS if c not in JOB_ONLY_COLUMNS]
_GET_JOB = operator.attrgetter(*_READ)
_TIME_POSITIONS = tuple(
    i
    for i, c in enumerate(_READ)
    if db.jobs.c[c].type.python_type is datetime  # type: ignore[misc]
)
_PHASE_POSITION = _READ.index("phase")
_PARAMETERS_POSITION = _READ.index("parameters")
_EMPTY_POSITIONS = tuple(i for i, c in enumerate(JOB_COLUMNS) if c in JOB_ONLY_COLUMNS)


def _sqlite_value(value: object) -> object:
    """A value as SQLAlchemy's SQLite dialect stores it (times as ISO text)."""
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, Phase):
        return value.value
    return value


def parameters_json(parameters: dict[str, str]) -> str:
    """The parameters column's text: ``json.dumps`` (a hand-written encoder on json's
    undocumented ``json.encoder`` saved microseconds no user feels; issue 14)."""
    return json.dumps(parameters)


def job_row(job: Job) -> tuple[Any, ...]:
    """A new job's row for INSERT_JOB (the table's columns in order), its values as
    SQLAlchemy's SQLite dialect stores them (tests/test_sqlite_writes.py compares).

    The attributes are read in one ``attrgetter`` call and only the columns that need
    it converted (positions worked out from the table once): a creation's GIL time
    counts (docs/benchmarks.md), and a conversion tested on every value cost more than
    building the rest of the row.
    """
    row = list(_GET_JOB(job))
    for i in _TIME_POSITIONS:
        if row[i] is not None:
            row[i] = row[i].isoformat(" ", "microseconds")
    row[_PHASE_POSITION] = row[_PHASE_POSITION].value
    row[_PARAMETERS_POSITION] = parameters_json(row[_PARAMETERS_POSITION])
    for i in _EMPTY_POSITIONS:  # ascending: each insert leaves the later ones right
        row.insert(i, None)
    return tuple(row)


# Rows per multi-row INSERT: a row's values (one per column of jobs) times this stays
# far below SQLite's bound-variable limit (999 before 3.32); a larger burst is
# committed by the next caller in line.
MAX_GROUP = 32


class _Insert:
    """One job row waiting for a group commit (see SQLiteWrites.insert)."""

    __slots__ = ("params", "done", "inserted", "error")

    def __init__(self, params: tuple[Any, ...]) -> None:
        self.params = params
        self.done = False
        self.inserted = False
        self.error: Exception | None = None

    def outcome(self) -> bool:
        """True: inserted; False: the id was taken; raises what failed the commit."""
        if self.error is not None:
            raise self.error
        return self.inserted


class SQLiteWrites:
    """The autocommit connection, the queue of inserts and the UPDATE texts."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self.lock = lock  # the Store's write lock: every SQLite writer takes it
        self._insert_sql = INSERT_JOB
        self._integrity_error = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        self._connection: Any = None  # taken from the pool on first use
        self.queue: deque[_Insert] = deque()  # job rows waiting for a group commit
        self._updates: dict[tuple[tuple[str, ...], int], str] = {}  # UPDATE texts
        self._group_sql: dict[int, str] = {}  # multi-row INSERT texts, by row count
        # engine.dispose() (shutdown, tests) closes our connection too, under the lock:
        # never while another thread is inside sqlite3 with it, never left to the
        # garbage collector of whichever thread happens to run it.
        event.listen(engine, "engine_disposed", self._on_dispose)

    def insert(self, params: tuple[Any, ...]) -> bool:
        """SQLite: insert one job row (see :func:`job_row`), committed together with
        the inserts queued meanwhile by other threads (group commit); False when the id
        is taken.

        Concurrent creations queue here behind the one writer. Whoever takes the write
        lock commits the queued rows in one transaction: a commit writes each changed
        page (the table and its five indexes) to the WAL once per transaction, and the
        WAL checkpoints come as many times less often. Each caller returns only once
        its own row is committed; a failed commit fails every row of its group.
        """
        slot = _Insert(params)
        self.queue.append(slot)
        with self.lock:
            # Committed meanwhile by another caller's group, or else by ours: the
            # queue holds this row until then (a burst takes several groups).
            while not slot.done:
                queue = self.queue
                self._commit([queue.popleft() for _ in range(min(len(queue), MAX_GROUP))])
        return slot.outcome()

    def _commit(self, batch: list[_Insert]) -> None:
        """Under the write lock: one transaction for the batch; every row of it is done
        afterwards, whatever failed (its caller then stops waiting)."""
        try:
            conn = self.connection()
            if len(batch) == 1 or not self._insert_together(conn, batch):
                self._insert_each(conn, batch)
        except Exception as exc:  # noqa: BLE001 - every caller of the group gets it
            for item in batch:
                item.error = exc
        except BaseException:  # the committing thread is being stopped: fail the others
            for item in batch:
                item.error = RuntimeError("the job insert was interrupted")
            raise
        finally:
            for item in batch:
                item.done = True

    def _insert_together(self, conn: Any, batch: list[_Insert]) -> bool:
        """The whole group as one multi-row INSERT in autocommit mode: one driver call
        (sqlite3 gives the GIL up six times in each, whatever the row count), where
        BEGIN, an INSERT per row and COMMIT took one call each (the largest single
        saving of a creation's CPU, docs/benchmarks.md). The statement is atomic: False,
        with nothing inserted, when any row clashed."""
        sql = self._group_sql.get(len(batch))
        if sql is None:
            head, _, row = self._insert_sql.partition(" VALUES ")
            sql = self._group_sql.setdefault(
                len(batch), f"{head} VALUES {', '.join([row] * len(batch))}"
            )
        try:
            conn.execute(sql, [value for item in batch for value in item.params])
        except self._integrity_error:
            return False  # a taken id: each row's own outcome is found row by row
        for item in batch:
            item.inserted = True
        return True

    def _insert_each(self, conn: Any, batch: list[_Insert]) -> None:
        """Row by row in one transaction (autocommit for one row), each row's clash on
        its own: a taken id fails only that row, whose caller redraws it."""
        sql = self._insert_sql
        if len(batch) > 1:
            conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                try:  # on a taken id SQLite undoes that statement only
                    conn.execute(sql, item.params)
                    item.inserted = True
                except self._integrity_error:
                    item.inserted = False
            if len(batch) > 1:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection, once no write is using it (the write lock); the next
        write takes a new one from the engine's pool.

        A sqlite3 connection must never be closed while another thread is inside one
        of its calls: the sqlite3 module clears the handle (``self->db = NULL``) and
        the thread then returning from ``sqlite3_step`` calls SQLite with it
        (``sqlite3_last_insert_rowid(NULL)``: a segmentation fault, SQLite here being
        built without API armour; see docs/security.md, class 12). Nor may two
        threads use it at once: they share its statement cache, and one's
        ``sqlite3_reset`` frees the row the other reads.
        Hence every use of it, and this close, holds the Store's write lock.
        """
        with self.lock:
            conn, self._connection = self._connection, None
            if conn is not None:
                conn.close()

    def _on_dispose(self, engine: Engine) -> None:
        self.close()

    def connection(self) -> Any:
        """SQLite's connection for single-statement writes, each its own transaction.

        Taken out of the pool (same pragmas) and switched to autocommit, so that an
        INSERT is one driver call instead of three. Used under the write lock only
        (see :meth:`close`).
        """
        if self._connection is None:
            fairy = self.engine.raw_connection()
            fairy.detach()  # ours for good: the pool neither resets nor reuses it
            conn = fairy.dbapi_connection
            conn.isolation_level = None  # type: ignore[union-attr]
            self._connection = conn
        return self._connection

    def update_job(self, job_id: str, phases: list[str] | None, values: dict[str, object]) -> bool:
        """One UPDATE of a job (and its version), as one autocommit statement;
        ``phases``: only while the job is in one of them (compare-and-set).

        Phase changes are most of what the service writes (three or four per job), and
        SQLAlchemy's statement building, caching and transaction hold the GIL a long
        time for each; the statement text is built once per set of columns instead.
        """
        sql, params = self._update(job_id, phases, values)
        with self.lock:
            return self.connection().execute(sql, params).rowcount == 1

    def _update(
        self, job_id: str, phases: list[str] | None, values: dict[str, object]
    ) -> tuple[str, list[object]]:
        """The UPDATE of :meth:`update_job` and its parameters."""
        columns = tuple(values)
        key = (columns, -1 if phases is None else len(phases))
        sql = self._updates.get(key)
        if sql is None:
            unknown = [c for c in columns if c not in db.jobs.c or c in ("job_id", "version")]
            if unknown:
                raise ValueError(f"cannot update job columns {unknown}")
            sets = "".join(f"{c} = ?, " for c in columns) + "version = version + 1"
            where = "job_id = ?"
            if phases is not None:
                where += f" AND phase IN ({', '.join('?' * len(phases))})"
            sql = self._updates.setdefault(key, f"UPDATE {db.jobs.name} SET {sets} WHERE {where}")
        params = [_sqlite_value(values[c]) for c in columns]
        params.append(job_id)
        params.extend(phases or ())
        return sql, params

    def replace_entities(
        self,
        job_id: str,
        kind: str,
        rows: list[Any] | None,
        phases: list[str] | None = None,
        values: dict[str, object] | None = None,
    ) -> bool:
        """One transaction: update the job (``values``, its version; only while its
        phase is one of ``phases`` when given), then replace its entities of ``kind``
        by ``rows`` (None: leave them). Nothing is written when the job is gone or its
        phase moved on: a late completion never attaches results to an aborted job.

        It is how a job's end is recorded (results and final phase, both or neither),
        as one BEGIN ... COMMIT of three statements instead of SQLAlchemy's two
        transactions; that runs in the worker's callback, which its runner (and the
        Slurm slot it holds) waits for.
        """
        sql, params = self._update(job_id, phases, values or {})
        inserts = [tuple(_sqlite_value(getattr(r, c)) for c in ENTITY_COLUMNS) for r in rows or ()]
        with self.lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(sql, params).rowcount != 1:
                    conn.execute("ROLLBACK")
                    return False
                if rows is not None:
                    conn.execute(DELETE_ENTITIES_OF_KIND, (job_id, kind))
                    if inserts:
                        conn.executemany(INSERT_ENTITY, inserts)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return True
