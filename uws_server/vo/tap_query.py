"""Running one ADQL query for one user: read-only, time-limited, size-limited.

:func:`uws_server.vo.adql.parse` decides what the query may name; this module runs the
result with the database's own guards as a second line:

- **SQLite**: a connection opened read-only (``mode=ro``, ``PRAGMA query_only``) with
  an authorizer that allows reading only the ``obscore`` table (through the visibility
  expression) and calling only the ADQL functions, and a progress handler that stops
  the query at its deadline;
- **PostgreSQL**: a ``READ ONLY`` transaction with ``SET LOCAL statement_timeout``,
  rolled back afterwards, and a cursor declared on the server so that at most
  MAXREC + 1 rows ever leave it (on TAP's own connections, kept between queries).

Any failure the query causes (a geometry it does not support, a type error, the time
limit) is an :class:`~uws_server.vo.adql.ADQLError`: a 400, never a 500.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import queue
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine

from uws_server.models import User
from uws_server.vo import adql_sqlite
from uws_server.vo.adql import FUNCTIONS, ADQLError, Translated, parse
from uws_server.vo.tap_schema import PUBLISHED, TABLES_BY_NAME, CTEBuilder, Field

log = logging.getLogger("uws_server.tap")

# SQLite authorizer action codes (sqlite3.h) this executor allows.
_SQLITE_READ, _SQLITE_SELECT, _SQLITE_FUNCTION = 20, 21, 31
_SQLITE_FUNCS = FUNCTIONS | {"like", "glob", "ifnull"}


@dataclass
class QueryResult:
    fields: list[Field]
    rows: list[tuple[object, ...]]
    overflow: bool
    sql: str = ""


def _infer(name: str, values: list[object]) -> Field:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return Field(name, "boolean")
    if isinstance(sample, int):
        return Field(name, "long")
    if isinstance(sample, (float, decimal.Decimal)):
        return Field(name, "double")
    if isinstance(sample, (dt.datetime, dt.date)):
        return Field(name, "char", "*", xtype="timestamp")
    return Field(name, "char", "*")


def result_fields(
    names: list[str], translated: Translated, rows: list[tuple[object, ...]]
) -> list[Field]:
    """FIELD metadata of a result: the published column's when the output shows one,
    else inferred from the values."""
    fields = []
    for i, name in enumerate(names):
        found: Field | None = None
        target = translated.display.get(name)
        candidates = [target] if target else [(t, name.lower()) for t in translated.tables]
        for table, column in candidates:
            for f in TABLES_BY_NAME[table].fields:
                if f.name == column:
                    found = f
                    break
            if found:
                break
        if found is None:
            fields.append(_infer(name, [r[i] for r in rows]))
        else:
            fields.append(found if found.name == name else _renamed(found, name))
    return fields


def _renamed(f: Field, name: str) -> Field:
    return Field(
        name, f.datatype, f.arraysize, f.xtype, f.unit, f.ucd, f.utype, f.description,
        f.principal, f.indexed, f.std,
    )  # fmt: skip


class QueryExecutor:
    """Runs ADQL for users against the service's database (one per service)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
        self.ctes = CTEBuilder(engine)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._pg_pool: queue.LifoQueue = queue.LifoQueue()  # psycopg connections

    # ------------------------------------------------------------------ public
    def run(
        self,
        adql: str,
        user: User | None,
        maxrec: int,
        timeout: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> QueryResult:
        """Parse, check and run ``adql``; at most ``maxrec`` rows (``overflow`` says
        whether there were more). Raises ADQLError for anything the query did wrong."""
        translated = parse(adql, self.dialect, PUBLISHED)
        sql = self.ctes.with_clause(translated.tables, user) + translated.sql
        deadline = time.monotonic() + timeout
        if self.dialect == "sqlite":
            names, rows = self._run_sqlite(sql, maxrec + 1, deadline, timeout, cancelled)
        else:
            names, rows = self._run_postgresql(sql, maxrec + 1, timeout)
        overflow = len(rows) > maxrec
        rows = rows[:maxrec]
        return QueryResult(result_fields(names, translated, rows), rows, overflow, sql)

    def available(self) -> tuple[bool, str]:
        """Whether queries can run (and geometry, on PostgreSQL), with a note."""
        try:
            if self.dialect == "sqlite":
                conn = self._sqlite_conn()
                try:
                    conn.execute("SELECT 1").fetchall()
                finally:
                    self._pool.put(conn)
                return True, "ADQL on SQLite (geometry by registered functions)"
            with self.engine.connect() as conn:
                ext = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_extension WHERE extname = 'pg_sphere'"
                ).first()
            if ext is None:
                return (
                    False,
                    "pgSphere is not installed in the database (CREATE EXTENSION pg_sphere)",
                )
            return True, "ADQL on PostgreSQL with pgSphere"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return False, f"database unavailable: {type(exc).__name__}"

    # ------------------------------------------------------------------ SQLite
    def _sqlite_conn(self) -> sqlite3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        database = self.engine.url.database or ""
        if not database or database == ":memory:":
            raise ADQLError("TAP needs a file database (SQLite in memory is not supported)")
        uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA query_only = 1")
        adql_sqlite.register(conn)
        return conn

    @staticmethod
    def _authorize(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if action == _SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == _SQLITE_READ:
            # the physical table only ever appears inside the visibility expression; the
            # other names are the common table expressions of the published tables
            ok = arg1 == "obscore" or arg1 in PUBLISHED
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == _SQLITE_FUNCTION:
            ok = (arg2 or "").lower() in _SQLITE_FUNCS
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY

    def _run_sqlite(
        self,
        sql: str,
        limit: int,
        deadline: float,
        timeout: float,
        cancelled: Callable[[], bool] | None,
    ) -> tuple[list[str], list[tuple[object, ...]]]:
        conn = self._sqlite_conn()
        ok = False

        def stop() -> int:
            return int(time.monotonic() > deadline or (cancelled is not None and cancelled()))

        try:
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(stop, 2000)
            cur = conn.execute(sql)
            names = [d[0] for d in cur.description or ()]
            rows = cur.fetchmany(limit)
            cur.close()
            ok = True
            return names, rows
        except sqlite3.Error as exc:
            text = str(exc)
            if "interrupted" in text:
                if cancelled is not None and cancelled():
                    raise ADQLError("the query was aborted") from None
                raise ADQLError(f"the query ran over its time limit of {timeout:g} s") from None
            if "not authorized" in text or "prohibited" in text:
                raise ADQLError(
                    "the query reads or calls something this service does not publish"
                ) from None
            if "user-defined function raised exception" in text:
                raise ADQLError(
                    "a geometry function could not evaluate its arguments on SQLite "
                    "(supported: POINT, CIRCLE, BOX, POLYGON in CONTAINS, INTERSECTS, "
                    "DISTANCE, AREA)"
                ) from None
            raise ADQLError(f"the query failed: {text}") from None
        finally:
            conn.set_progress_handler(None, 0)
            conn.set_authorizer(None)
            if ok:
                self._pool.put(conn)
            else:
                conn.close()

    # -------------------------------------------------------------- PostgreSQL
    def _pg_conn(self):  # noqa: ANN202 - psycopg.Connection
        """A connection of TAP's own (autocommit: each query opens its READ ONLY
        transaction itself), reused: no pool checkout ping or reset per query."""
        try:
            return self._pg_pool.get_nowait()
        except queue.Empty:
            pass
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)

    def _run_postgresql(
        self, sql: str, limit: int, timeout: float
    ) -> tuple[list[str], list[tuple[object, ...]]]:
        """Four round trips: BEGIN READ ONLY with the statement timeout, DECLARE the
        cursor, FETCH at most ``limit`` rows, ROLLBACK."""
        conn = self._pg_conn()
        ok = False
        try:
            with conn.cursor() as cur:
                ms = max(1, int(timeout * 1000))
                cur.execute(f"BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}")
                try:
                    cur.execute(f"DECLARE tap_query NO SCROLL CURSOR FOR {sql}")
                    cur.execute(f"FETCH FORWARD {int(limit)} FROM tap_query")
                    names = [d.name for d in cur.description or ()]
                    rows = cur.fetchall()
                finally:
                    cur.execute("ROLLBACK")
            ok = True
            return names, rows
        except Exception as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if sqlstate is None:
                raise
            ok = not conn.closed
            diag = getattr(exc, "diag", None)
            text = (getattr(diag, "message_primary", None) or str(exc)).strip()
            if sqlstate == "57014":  # query_canceled: the statement timeout
                raise ADQLError(f"the query ran over its time limit of {timeout:g} s") from None
            raise ADQLError(f"the query failed: {text}") from None
        finally:
            if ok:
                self._pg_pool.put(conn)
            else:
                conn.close()
