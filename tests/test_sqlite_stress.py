"""The Store's concurrent SQLite paths under stress (issue 11, class 12: interpreter
crashes while another thread was in sqlite3's C code).

Many threads create, update, read, finish and list jobs at once, through the group
commit, the one-statement updates, the job's end in one transaction and the pooled
reads, while the engine is disposed under them (as a service's shutdown and the tests'
LiveServer.stop do) and the writer's own connection is closed and reopened. The
interpreter must not crash (a crash kills this module's pytest run, which fails the
test command), every write must either be stored or fail with an exception, and what is
stored must read back whole. Bounded: about two seconds of hammering per test.
"""

from __future__ import annotations

import gc
import random
import sqlite3
import sqlite3.dbapi2
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_storage import job
from tests.timing import MACHINE
from uws_server.common import new_job_id, utcnow
from uws_server.db import make_engine
from uws_server.models import Phase, User
from uws_server.storage import EntityRow, JobEnd, Store
from uws_server.storage.schema import create_schema

SECONDS = 2.0
THREADS = 12
MIN_DONE = 20  # jobs finished during the churn, for it to have tested anything

ALICE = User("alice", "ha")


class _Overlaps:
    """Which thread is inside a call on which sqlite3 connection: a call entered while
    another thread is inside one on the same connection (close included) is recorded.
    That is the condition that crashes CPython's sqlite3 module (see
    uws_server.storage.sqlite_writes.SQLiteWrites.close)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: dict[int, dict[int, int]] = {}  # id(connection) -> {thread: depth}
        self.found: list[str] = []

    def enter(self, conn: object, what: str) -> None:
        me = threading.get_ident()
        with self.lock:
            threads = self.inside.setdefault(id(conn), {})
            if any(t != me and depth for t, depth in threads.items()):
                self.found.append(f"{what} while another thread was inside this connection")
            threads[me] = threads.get(me, 0) + 1

    def leave(self, conn: object) -> None:
        me = threading.get_ident()
        with self.lock:
            self.inside[id(conn)][me] -= 1


def _tracked(overlaps: _Overlaps) -> tuple[type, type]:
    """sqlite3 Connection and Cursor classes whose every call goes through ``overlaps``."""

    def wrap(base: type, name: str, label: str):  # type: ignore[no-untyped-def]
        method = getattr(base, name)

        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            conn = self if isinstance(self, sqlite3.Connection) else self.connection
            overlaps.enter(conn, label)
            try:
                return method(self, *args, **kwargs)
            finally:
                overlaps.leave(conn)

        return call

    cursor_calls = ("execute", "executemany", "fetchone", "fetchall", "fetchmany", "close")
    cursor_cls = type(
        "TrackedCursor",
        (sqlite3.Cursor,),
        {n: wrap(sqlite3.Cursor, n, f"cursor.{n}") for n in cursor_calls},
    )

    def cursor(self, factory=cursor_cls):  # type: ignore[no-untyped-def]
        return sqlite3.Connection.cursor(self, factory)

    conn_calls = ("commit", "rollback", "close")
    namespace = {n: wrap(sqlite3.Connection, n, f"connection.{n}") for n in conn_calls}
    namespace["cursor"] = cursor
    namespace["execute"] = lambda self, *a: self.cursor().execute(*a)
    namespace["executemany"] = lambda self, *a: self.cursor().executemany(*a)
    return type("TrackedConnection", (sqlite3.Connection,), namespace), cursor_cls


@pytest.fixture
def overlaps(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Overlaps]:
    """Every sqlite3 connection opened meanwhile (SQLAlchemy opens them through
    ``sqlite3.dbapi2.connect``) tracked; the test asserts on what was found."""
    found = _Overlaps()
    connection_cls, _ = _tracked(found)
    real = sqlite3.dbapi2.connect

    def connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("factory", connection_cls)
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite3.dbapi2, "connect", connect)
    yield found


def test_the_overlap_detector_detects() -> None:
    """The detector of the tests below can fail: an overlap is recorded (simulated
    with two threads' bookkeeping; really overlapping calls could crash the run)."""
    found = _Overlaps()
    conn = object()
    found.enter(conn, "first")
    t = threading.Thread(target=lambda: (found.enter(conn, "second"), found.leave(conn)))
    t.start()
    t.join()
    found.leave(conn)
    found.enter(conn, "third")  # the same thread again, after: no overlap
    assert found.found == ["second while another thread was inside this connection"]


def _result(job_id: str, i: int) -> EntityRow:
    return EntityRow(
        entity_id=f"ent_{job_id}_{i}",
        job_id=job_id,
        name=f"out{i}.txt",
        path=f"/nowhere/{job_id}/out{i}.txt",
        location=None,
        content_type="text/plain",
        size=i,
        sha256="0" * 64,
        owner="alice",
        role="output",
        kind="result",
        created=utcnow(),
    )


def _hammer(store: Store, stop: threading.Event, done: list[str], errors: list[str]) -> None:
    """One job's whole life, again and again: each step on the path the service uses."""
    rng = random.Random()
    n = 0
    while not stop.is_set():
        n += 1
        try:
            j = store.insert_job(job(n), new_job_id)
            assert store.get_job(j.job_id) is not None
            assert store.mark_queued(j.job_id, "local")
            store.set_external_id(j.job_id, str(n))
            assert store.mark_executing(j.job_id, Phase.QUEUED, utcnow())
            results = [_result(j.job_id, i) for i in range(rng.randint(0, 3))]
            end = JobEnd(Phase.COMPLETED, utcnow(), results=results)
            assert store.finish(j.job_id, Phase.EXECUTING, end)
            store.jobs_visible_to(ALICE, "echo", last=5)
            store._changed(j.job_id)  # read it from the database again, not the cache
            back = store.get_job(j.job_id)
            assert back is not None and back.phase == Phase.COMPLETED
            assert len(back.results) == len(results)
            done.append(j.job_id)
            if rng.random() < 0.05:
                gc.collect()  # collections (and what they free) in any thread
        except Exception as exc:  # noqa: BLE001 - collected, asserted on below
            errors.append(f"{type(exc).__name__}: {exc}")


def _run(store: Store, during: Callable[[], None]) -> tuple[list[str], list[str]]:
    stop = threading.Event()
    done: list[str] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_hammer, args=(store, stop, done, errors), daemon=True)
        for _ in range(THREADS)
    ]
    for t in threads:
        t.start()
    # SECONDS of churn, longer on a machine too busy to finish MIN_DONE jobs meanwhile
    # (the parallel suite's other workers on the same cores): up to MACHINE more
    deadline = time.monotonic() + SECONDS
    late = deadline + MACHINE
    while time.monotonic() < deadline or (len(done) <= MIN_DONE and time.monotonic() < late):
        during()
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return done, errors


def test_jobs_hammered_while_the_engine_is_disposed(tmp_path: Path, overlaps: _Overlaps) -> None:
    """engine.dispose() under writers and readers, over and over: the pooled
    connections are closed and replaced, the writer's closed (between two writes,
    under its lock) and reopened; every job finished is stored whole."""
    engine = make_engine(f"sqlite:///{tmp_path / 'stress.sqlite'}")
    create_schema(engine)
    store = Store(engine)

    def dispose() -> None:
        time.sleep(0.05)
        engine.dispose()

    done, errors = _run(store, dispose)
    assert errors == [] and len(done) > MIN_DONE, (len(done), errors[:5])
    assert overlaps.inside, "no connection was tracked"
    assert overlaps.found == []  # no connection used, or closed, by two threads at once
    # everything reported done is stored, with its results
    store._jobs.clear()
    for job_id in random.sample(done, min(50, len(done))):
        back = store.get_job(job_id)
        assert back is not None and back.phase == Phase.COMPLETED
    engine.dispose()


def test_the_writer_is_never_closed_under_a_write(tmp_path: Path) -> None:
    """close() waits for the write in progress (it takes the write lock), and the
    next write takes a fresh connection."""
    engine = make_engine(f"sqlite:///{tmp_path / 'close.sqlite'}")
    create_schema(engine)
    store = Store(engine)
    writes = store.sqlite_writes
    assert writes is not None
    first = store.insert_job(job(1), new_job_id)
    conn = writes.connection()
    closed = threading.Event()
    with store._write_lock:  # a write in progress
        closer = threading.Thread(target=lambda: (writes.close(), closed.set()))
        closer.start()
        assert not closed.wait(0.3), "closed while a write held the connection"
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    closer.join(10)
    assert closed.is_set()
    second = store.insert_job(job(2), new_job_id)  # a new connection
    assert writes.connection() is not conn
    assert store.get_job(second.job_id) is not None and store.get_job(first.job_id) is not None
    engine.dispose()
    assert writes._connection is None  # dispose closed the writer too


def test_stores_dropped_with_writes_in_flight(tmp_path: Path, overlaps: _Overlaps) -> None:
    """Service after service (as a test module runs them), each dropped right after its
    shutdown: the garbage collector frees their connections while the next one works."""
    for round_ in range(3):
        engine = make_engine(f"sqlite:///{tmp_path / f'r{round_}.sqlite'}")
        create_schema(engine)
        store = Store(engine)

        stop = threading.Event()
        done: list[str] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=_hammer, args=(store, stop, done, errors), daemon=True)
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(SECONDS / 4)
        engine.dispose()  # LiveServer.stop: the engine first...
        stop.set()
        for t in threads:
            t.join(30)
        assert errors == [] and done, errors[:5]
        del store, engine, threads  # ...then the whole service is garbage
        gc.collect()
    assert store_rows(tmp_path / "r2.sqlite") > 0
    assert overlaps.found == []


def store_rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
