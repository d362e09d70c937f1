"""SQLite's group commit of job inserts (uws_server/storage/sqlite_writes.py): a group is one
multi-row INSERT, a clash falls back to row by row, a burst larger than a group is
committed in several groups, and every caller returns once its own row is stored."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from tests.conftest import insert_queued
from tests.test_storage import job
from uws_server import db
from uws_server.common import new_job_id
from uws_server.db import make_engine
from uws_server.models import Job
from uws_server.storage import Store, sqlite_writes
from uws_server.storage.schema import create_schema
from uws_server.storage.sqlite_writes import JOB_COLUMNS, parameters_json


def _store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    create_schema(engine)
    return Store(engine)


def _rows(store: Store) -> int:
    conn = store.sqlite_writes.connection()  # type: ignore[union-attr]
    return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def test_a_group_is_one_insert_statement(tmp_path: Path) -> None:
    """Queued rows go to SQLite in one multi-row INSERT, its own transaction (no
    BEGIN/COMMIT round trips), and each reads back as its caller stored it."""
    store = _store(tmp_path)
    statements: list[str] = []
    store.sqlite_writes.connection().set_trace_callback(statements.append)  # type: ignore[union-attr]
    jobs = [job(i) for i in range(5)]
    stored = insert_queued(store, jobs)
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0].count("'echo'") == 5, statements
    assert "BEGIN IMMEDIATE" not in statements
    assert sorted(j.job_id for j in stored) == sorted(j.job_id for j in jobs)
    for j in stored:
        back = store.get_job(j.job_id)
        assert back is not None and back.parameters == j.parameters
        assert back.creation_time == j.creation_time
    assert _rows(store) == 5
    store.engine.dispose()


def test_a_clash_in_a_group_falls_back_to_row_by_row(tmp_path: Path) -> None:
    """One taken id makes the multi-row INSERT fail whole (nothing half-inserted);
    the rows then go one by one and only the clashing one draws a new id."""
    store = _store(tmp_path)
    first = store.insert_job(job(0), new_job_id)
    statements: list[str] = []
    store.sqlite_writes.connection().set_trace_callback(statements.append)  # type: ignore[union-attr]
    jobs = [job(i) for i in range(1, 5)]
    clash_id = first.job_id
    jobs[2].job_id = clash_id
    stored = insert_queued(store, jobs)
    assert len(stored) == 4 and clash_id not in {j.job_id for j in stored}
    assert statements[0].startswith("INSERT") and statements[1] == "BEGIN IMMEDIATE"
    assert store.get_job(clash_id).parameters["text"] == "value 0"  # not overwritten
    assert _rows(store) == 5
    store.engine.dispose()


def test_a_burst_larger_than_a_group_takes_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No more than MAX_GROUP rows per statement; the rest wait for the next group,
    and no caller returns before its own row is stored (nor stores it twice)."""
    monkeypatch.setattr(sqlite_writes, "MAX_GROUP", 3)
    store = _store(tmp_path)
    statements: list[str] = []
    store.sqlite_writes.connection().set_trace_callback(statements.append)  # type: ignore[union-attr]
    jobs = [job(i) for i in range(8)]
    stored = insert_queued(store, jobs)
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("'echo'") for s in inserts] == [3, 3, 2]
    assert sorted(j.job_id for j in stored) == sorted(j.job_id for j in jobs)
    assert _rows(store) == 8
    assert not store.sqlite_writes.queue  # type: ignore[union-attr]
    store.engine.dispose()


def test_a_new_job_is_stored_as_sqlalchemy_stores_it(tmp_path: Path) -> None:
    """job_row() names every column of the table, and the row it inserts is, column
    for column, what SQLAlchemy's own INSERT of the same job stores."""
    assert set(JOB_COLUMNS) == {c.name for c in db.jobs.columns}
    store = _store(tmp_path)
    j = job(7)
    j.run_id, j.manager, j.callback_token_hash = "run 7", "local", "ab" * 32
    j.quote = j.creation_time + timedelta(seconds=5, microseconds=123)
    fast = store.insert_job(j, new_job_id)
    twin = job(7)
    with store.engine.begin() as conn:
        conn.execute(
            insert(db.jobs).values(
                job_id="twin", jobname=j.jobname, owner=j.owner, phase=j.phase.value,
                run_id=j.run_id, creation_time=j.creation_time,
                destruction_time=j.destruction_time, execution_duration=j.execution_duration,
                quote=j.quote, parameters=json.dumps(twin.parameters), manager=j.manager,
                callback_token_hash=j.callback_token_hash, version=0,
            )
        )  # fmt: skip
    conn = store.sqlite_writes.connection()  # type: ignore[union-attr]
    select_row = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE job_id = ?"
    ours = conn.execute(select_row, (fast.job_id,)).fetchone()
    theirs = conn.execute(select_row, ("twin",)).fetchone()
    assert ours[1:] == theirs[1:]
    assert store.get_job(fast.job_id) == fast
    store.engine.dispose()


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.text(max_size=12), st.integers(), st.none()),
        max_size=5,
    )
)
def test_parameters_json_is_json_dumps(parameters: dict) -> None:
    """The same text as json.dumps: escapes, non-ASCII, quotes, and the fallback for a
    value that is not a string."""
    assert parameters_json(parameters) == json.dumps(parameters)


def test_an_interrupted_group_commit_fails_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit cut short by a BaseException (the committing thread being stopped) still
    ends every row of its group: the other callers get an error instead of waiting, or
    taking the lock forever to look for a row that is no longer queued."""
    store = _store(tmp_path)
    writes = store.sqlite_writes
    assert writes is not None

    def interrupted(conn: object, batch: list) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(writes, "_insert_together", interrupted)
    outcomes: list[object] = []

    def insert(j: Job) -> None:
        try:
            outcomes.append(store.insert_job(j, new_job_id))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            outcomes.append(exc)

    with store._write_lock:
        threads = [threading.Thread(target=insert, args=(job(i),)) for i in range(3)]
        for t in threads:
            t.start()
        while len(writes.queue) < 3:
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["KeyboardInterrupt", "RuntimeError", "RuntimeError"], outcomes
    assert not writes.queue
    store.engine.dispose()
