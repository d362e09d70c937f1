"""Storage on both back-ends: SQLite (WAL) and a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tests.conftest import insert_queued
from uws_server.common import new_job_id
from uws_server.db import make_engine
from uws_server.models import Job, Phase, User
from uws_server.storage import EntityRow, JobEnd, Store
from uws_server.storage import store as storage
from uws_server.storage.schema import create_schema

T0 = datetime(2026, 1, 1, 12, 0, 0)
ALICE, BOB, ROOT = User("alice", "ha"), User("bob", "hb"), User("root", "hr", is_admin=True)


def job(i: int, owner: str = "alice", phase: Phase = Phase.PENDING, jobname: str = "echo") -> Job:
    return Job(
        job_id=new_job_id(),
        jobname=jobname,
        owner=owner,
        phase=phase,
        creation_time=T0 + timedelta(seconds=i),
        destruction_time=T0 + timedelta(days=1, seconds=i),
        execution_duration=60,
        parameters={"text": f"value {i}", "quote": 'it\'s "quoted" & <tagged>'},
    )


@pytest.fixture
def store(database_url: str) -> Store:
    engine = make_engine(database_url)
    create_schema(engine)
    yield Store(engine)
    engine.dispose()


def test_round_trip(store: Store) -> None:
    j = store.insert_job(job(0), new_job_id)
    back = store.get_job(j.job_id)
    assert back is not None
    assert back.parameters == j.parameters
    assert back.phase == Phase.PENDING
    assert back.creation_time == j.creation_time
    assert store.get_job("missing") is None


def test_id_collision_draws_a_new_id(store: Store) -> None:
    first = store.insert_job(job(0), new_job_id)
    clash = job(1)
    clash.job_id = first.job_id
    stored = store.insert_job(clash, new_job_id)
    assert stored.job_id != first.job_id
    assert store.get_job(first.job_id).parameters["text"] == "value 0"  # not overwritten


def test_list_filters(store: Store) -> None:
    jobs = [
        store.insert_job(job(i, owner="alice" if i % 2 else "bob"), new_job_id) for i in range(10)
    ]
    assert store.finish(jobs[3].job_id, Phase.PENDING, JobEnd(Phase.COMPLETED, T0))
    assert store.mark_aborted(jobs[5].job_id, T0, "stop") and store.mark_archived(jobs[5].job_id)
    assert not store.mark_archived(jobs[7].job_id)  # only a finished job
    alice = store.jobs_visible_to(ALICE, "echo")
    assert [r.job_id for r in alice] == [jobs[i].job_id for i in (9, 7, 3, 1)]  # 5 archived
    assert [r.job_id for r in store.jobs_visible_to(ALICE, "echo", last=2)] == [
        jobs[9].job_id,
        jobs[7].job_id,
    ]
    assert [r.job_id for r in store.jobs_visible_to(ROOT, "echo", [Phase.ARCHIVED])] == [
        jobs[5].job_id
    ]
    after = store.jobs_visible_to(ROOT, ["echo", "other"], after=T0 + timedelta(seconds=7))
    assert [r.job_id for r in after] == [jobs[9].job_id, jobs[8].job_id]
    assert store.jobs_visible_to(ROOT, "other") == []
    assert store.jobs_visible_to(ROOT, []) == []
    assert {r.owner for r in store.jobs_visible_to(BOB, "echo")} == {"bob"}


def test_compare_and_set_phase(store: Store) -> None:
    j = store.insert_job(job(0), new_job_id)
    assert store.mark_queued(j.job_id, "local", "hash")
    assert not store.mark_executing(j.job_id, Phase.PENDING, T0)
    assert not store.mark_queued(j.job_id, "local")
    back = store.get_job(j.job_id)
    assert (back.phase, back.manager, back.callback_token_hash) == (Phase.QUEUED, "local", "hash")
    assert back.version == 1
    assert store.mark_executing(j.job_id, Phase.QUEUED, T0, "77")
    assert store.mark_phase(j.job_id, Phase.EXECUTING, Phase.SUSPENDED)
    back = store.get_job(j.job_id)
    assert (back.phase, back.start_time, back.external_id, back.version) == (
        Phase.SUSPENDED, T0, "77", 3,
    )  # fmt: skip
    with pytest.raises(ValueError):
        store.mark_phase(j.job_id, Phase.SUSPENDED, Phase.COMPLETED)
    assert store.mark_aborted(j.job_id, T0, "stopped")
    assert not store.mark_aborted(j.job_id, T0, "again")
    assert store.get_job(j.job_id).error_summary == "stopped"


def test_concurrent_phase_changes_have_one_winner(store: Store) -> None:
    j = store.insert_job(job(0, phase=Phase.EXECUTING), new_job_id)
    wins: list[Phase] = []

    def attempt(phase: Phase) -> None:
        done = (
            store.mark_aborted(j.job_id, T0, "x")
            if phase is Phase.ABORTED
            else store.finish(j.job_id, Phase.EXECUTING, JobEnd(phase, T0))
        )
        if done:
            wins.append(phase)

    threads = [
        threading.Thread(target=attempt, args=(p,)) for p in [Phase.COMPLETED, Phase.ABORTED] * 10
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_job(j.job_id).phase == wins[0]


def test_results_entities_and_delete(store: Store) -> None:
    first = store.insert_job(job(0), new_job_id)
    second = store.insert_job(job(1), new_job_id)
    row = EntityRow(
        "ent_a",
        first.job_id,
        "output",
        "/x/out.txt",
        None,
        "text/plain",
        3,
        "ab",
        "alice",
        "output",
        "result",
        T0,
    )
    assert store.finish(first.job_id, Phase.PENDING, JobEnd(Phase.COMPLETED, T0, results=[row]))
    assert [r.name for r in store.get_job(first.job_id).results] == ["output"]
    store.add_usages(second.job_id, [("ent_a", "input")])
    assert store.jobs_using(["ent_a"]) == [second.job_id]
    # deleting the producer keeps an entity a later job used (provenance still resolves)
    assert store.delete_job(first.job_id) == ["/x/out.txt"]
    kept = store.get_entity("ent_a")
    assert kept is not None and kept.job_id is None
    store.delete_job(second.job_id)
    assert store.usages_of_job(second.job_id) == []


def test_a_usage_recorded_twice_is_kept_once(store: Store) -> None:
    """The final hook and a reader's catch-up may both link a job's reported input:
    the second write is a no-op, not an integrity error (seen as a 500 on
    /provenance/json in a parallel suite run)."""
    j = store.insert_job(job(0), new_job_id)
    store.add_usages(j.job_id, [("ent_a", "calib"), ("ent_b", "input")])
    store.add_usages(j.job_id, [("ent_a", "calib"), ("ent_a", "input")])
    assert sorted(store.usages_of_job(j.job_id)) == [
        ("ent_a", "calib"),
        ("ent_a", "input"),
        ("ent_b", "input"),
    ]


def test_users(store: Store) -> None:
    store.add_user(User("alice", "h1", roles=("operator", "x")), T0)
    assert store.user_by_token_hash("h1").roles == ("operator", "x")
    assert store.user_by_name("nobody") is None
    assert store.set_disabled("alice", True) and store.set_roles("alice", ("a",))
    assert not store.set_disabled("nobody", True)
    assert store.user_by_name("alice").disabled
    assert [u.name for u in store.list_users()] == ["alice"]


def test_count_active_and_expired(store: Store) -> None:
    store.insert_job(job(0, phase=Phase.EXECUTING), new_job_id)
    store.insert_job(job(1, phase=Phase.QUEUED), new_job_id)
    store.insert_job(job(2, phase=Phase.COMPLETED), new_job_id)
    assert store.count_active("alice") == 2
    assert len(store.expired_job_ids(T0 + timedelta(days=1, seconds=1))) == 2


def test_list_query_uses_an_index(store: Store) -> None:
    """The job-list query must not scan the table (100,000 jobs stay fast)."""
    names = {ix["name"] for ix in inspect(store.engine).get_indexes("jobs")}
    assert {"ix_jobs_list_owner", "ix_jobs_list_all"} <= names
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE jobname='echo' "
                        "AND owner='alice' AND phase != 'ARCHIVED' "
                        "ORDER BY creation_time DESC LIMIT 100"
                    )
                )
            )
        assert "ix_jobs_list_owner" in plan and "TEMP B-TREE" not in plan


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_job_reads_cached_and_dropped_by_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached read never hides a write made through the store; a write from outside
    (another engine) shows within JOB_CACHE_SECONDS."""
    url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    store = Store(engine)
    j = store.insert_job(job(0), new_job_id)
    first = store.get_job(j.job_id)
    assert store.get_job(j.job_id) is first  # one read, shared
    assert store.mark_queued(j.job_id, "local")
    assert store.get_job(j.job_id).phase == Phase.QUEUED
    row = EntityRow(
        "ent_k", j.job_id, "out", "/x/o", None, "text/plain", 1, "ab", "alice", "out", "result", T0
    )
    assert store.finish(j.job_id, Phase.QUEUED, JobEnd(Phase.COMPLETED, T0, results=[row]))
    assert [r.name for r in store.get_job(j.job_id).results] == ["out"]
    store.delete_job(j.job_id)
    assert store.get_job(j.job_id) is None

    monkeypatch.setattr(storage, "JOB_CACHE_SECONDS", 0.2)
    k = store.insert_job(job(1), new_job_id)
    assert store.get_job(k.job_id).phase == Phase.PENDING
    outside = Store(make_engine(url))
    assert outside.mark_aborted(k.job_id, T0, "from outside")
    time.sleep(0.25)
    assert store.get_job(k.job_id).phase == Phase.ABORTED
    engine.dispose()
    outside.engine.dispose()


def _sqlite_store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    create_schema(engine)
    return Store(engine)


def test_concurrent_inserts_are_committed_together(tmp_path: Path) -> None:
    """Creations queued behind the writer go in one transaction (group commit), ids
    that clash are redrawn within the group, and every row is there afterwards."""
    store = _sqlite_store(tmp_path)
    first = store.insert_job(job(0), new_job_id)
    statements: list[str] = []
    store.sqlite_writes.connection().set_trace_callback(statements.append)
    jobs = [job(i) for i in range(1, 9)]
    for j in jobs[::2]:
        j.job_id = first.job_id  # half of them clash with the stored job
    stored = insert_queued(store, jobs)  # the writer busy: every insert queues meanwhile
    assert len(stored) == len(jobs)
    ids = {j.job_id for j in stored}
    assert len(ids) == len(jobs) and first.job_id not in ids
    for j in stored:
        assert store.get_job(j.job_id).parameters == j.parameters
    assert store.get_job(first.job_id).parameters["text"] == "value 0"
    first_group = statements[statements.index("BEGIN IMMEDIATE") : statements.index("COMMIT")]
    assert sum(s.startswith("INSERT") for s in first_group) == len(jobs)  # one transaction
    assert store.sqlite_writes.queue == type(store.sqlite_writes.queue)()
    store.engine.dispose()


def test_a_failed_group_commit_fails_every_caller(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    store.engine.dispose()
    conn = store.sqlite_writes.connection()
    conn.execute("PRAGMA query_only=ON")  # every write now fails
    errors: list[BaseException] = []

    def insert(j: Job) -> None:
        try:
            store.insert_job(j, new_job_id)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    with store._write_lock:
        threads = [threading.Thread(target=insert, args=(job(i),)) for i in range(4)]
        for t in threads:
            t.start()
        while len(store.sqlite_writes.queue) < 4:
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert len(errors) == 4
    assert all("readonly" in str(e) or "query_only" in str(e) for e in errors), errors
    assert not conn.in_transaction  # rolled back, usable again
    conn.execute("PRAGMA query_only=OFF")
    assert store.insert_job(job(9), new_job_id).job_id


def test_updates_store_times_and_versions_like_the_orm(store: Store) -> None:
    """Phase changes take a fast path on SQLite: what they store must read back the same
    as what the ORM stores, and every change must bump the job's version."""
    j = store.insert_job(job(0), new_job_id)
    end = datetime(2026, 5, 4, 3, 2, 1, 123456)
    odd = 'it\'s <bad> & "odd"'
    assert store.finish(j.job_id, Phase.PENDING, JobEnd(Phase.ERROR, end, error_summary=odd))
    assert not store.finish(j.job_id, Phase.PENDING, JobEnd(Phase.COMPLETED, end))
    assert store.set_external_id(j.job_id, "4242")
    back = store.get_job(j.job_id)
    assert (back.phase, back.end_time, back.external_id) == (Phase.ERROR, end, "4242")
    assert back.error_summary == odd and back.version == 2
    listed = store.jobs_visible_to(ALICE, "echo", [Phase.ERROR])
    assert [r.job_id for r in listed] == [j.job_id]  # the phase filter sees it
    assert store.jobs_visible_to(ALICE, "echo", [Phase.PENDING]) == []
    # A pending job's settings, only while it is pending.
    k = store.insert_job(job(1), new_job_id)
    assert store.set_parameters(k.job_id, {"text": "new"})
    assert store.set_execution_duration(k.job_id, 5)
    assert store.set_destruction(k.job_id, end)
    back = store.get_job(k.job_id)
    assert (back.parameters, back.execution_duration, back.destruction_time) == (
        {"text": "new"}, 5, end,
    )  # fmt: skip
    assert not store.set_parameters(j.job_id, {"text": "late"})
    assert not store.set_destruction(j.job_id, end)
    assert store.set_destruction(j.job_id, end, pending_only=False)


def test_sqlite_updates_refuse_unknown_columns(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    j = store.insert_job(job(0), new_job_id)
    for bad in ({"nope": 1}, {"version": 7}, {"owner; DROP TABLE jobs; --": "x"}):
        with pytest.raises(ValueError, match="cannot update job columns"):
            store._set(j.job_id, None, **bad)
    assert store.get_job(j.job_id).version == 0
    store.engine.dispose()


def _result(job_id: str, name: str, entity_id: str) -> EntityRow:
    return EntityRow(
        entity_id, job_id, name, f"/x/{name}", None, "text/plain", 1, "ab", "alice", name,
        "result", T0,
    )  # fmt: skip


def test_a_job_ends_with_its_results_or_not_at_all(store: Store) -> None:
    """finish: the final phase and the results in one transaction, only while the
    phase is the expected one (a completion racing an ABORT attaches nothing)."""
    j = store.insert_job(job(0, phase=Phase.EXECUTING), new_job_id)
    version = store.get_job(j.job_id).version
    out = [_result(j.job_id, "out", "ent_f1")]
    end = JobEnd(Phase.COMPLETED, T0, context='{"host": "h"}', results=out)
    assert store.finish(j.job_id, Phase.EXECUTING, end)
    assert store.job_records([j.job_id])[j.job_id].context == '{"host": "h"}'
    with pytest.raises(ValueError):
        store.finish(j.job_id, Phase.COMPLETED, JobEnd(Phase.EXECUTING, T0))
    done = store.get_job(j.job_id)
    assert (done.phase, done.end_time, [r.name for r in done.results]) == (
        Phase.COMPLETED, T0, ["out"],
    )  # fmt: skip
    assert done.version == version + 1

    aborted = store.insert_job(job(1, phase=Phase.ABORTED), new_job_id)
    late = [_result(aborted.job_id, "late", "ent_f2")]
    assert not store.finish(
        aborted.job_id, Phase.EXECUTING, JobEnd(Phase.COMPLETED, T0, results=late)
    )
    back = store.get_job(aborted.job_id)
    assert back.phase == Phase.ABORTED and back.results == []
    assert store.get_entity("ent_f2") is None
    assert not store.finish("missing", Phase.EXECUTING, JobEnd(Phase.ERROR, T0, results=late))

    # No results reported: the phase changes, earlier results stay.
    again = store.insert_job(job(2, phase=Phase.EXECUTING), new_job_id)
    store.add_entities([_result(again.job_id, "early", "ent_f3")])
    assert store.finish(again.job_id, Phase.EXECUTING, JobEnd(Phase.ERROR, T0))
    back = store.get_job(again.job_id)
    assert back.phase == Phase.ERROR and [r.name for r in back.results] == ["early"]


def test_job_rows_follow_the_table() -> None:
    """The schema is declared once: every column of jobs is a Job attribute of the same
    name (but those only provenance reads), so the row mappings need no list of their own."""
    from dataclasses import fields

    from uws_server import db
    from uws_server.storage.rows import JOB_ONLY_COLUMNS, job_values

    attributes = {f.name for f in fields(Job)}
    columns = {c.name for c in db.jobs.columns}
    assert columns - JOB_ONLY_COLUMNS <= attributes
    assert set(job_values(job(0))) == columns


def test_provenance_rows_of_many_jobs_in_few_statements(store: Store) -> None:
    """job_records reads a set of jobs with a fixed number of statements (the search
    used to issue six per job), and gives each job its own used and generated rows."""
    from sqlalchemy import event

    jobs = [store.insert_job(job(i), new_job_id) for i in range(30)]
    for i, j in enumerate(jobs):
        out = [_result(j.job_id, f"out{i}", f"ent_r{i}")]
        assert store.finish(j.job_id, Phase.PENDING, JobEnd(Phase.COMPLETED, T0, results=out))
        if i:
            store.add_usages(j.job_id, [(f"ent_r{i - 1}", "input")])
    statements: list[str] = []
    listen = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(store.engine, "before_cursor_execute", listen)
    try:
        records = store.job_records([j.job_id for j in jobs] + ["missing"])
    finally:
        event.remove(store.engine, "before_cursor_execute", listen)
    assert len(statements) == 3
    assert set(records) == {j.job_id for j in jobs}
    second = records[jobs[1].job_id]
    assert [(role, e.entity_id) for role, e in second.used] == [("input", "ent_r0")]
    assert [e.entity_id for e in second.generated] == ["ent_r1"]
    assert records[jobs[0].job_id].used == []
    assert store.jobs_generating(["ent_r3", "nope"]) == [jobs[3].job_id]
    assert store.jobs_using(["ent_r3"]) == [jobs[4].job_id]
    assert store.candidate_jobs(BOB, "echo", None, 100) == []
    assert len(store.candidate_jobs(ROOT, "echo", "alice", 10)) == 10


def test_provenance_search_reads_as_many_statements_for_80_jobs_as_for_20(
    store: Store, tmp_path: Path
) -> None:
    """The provenance search (``ProvenanceService.search``) over its candidate jobs
    issues a fixed number of statements, not some per job (it was ~6 per job for up to
    5,000 jobs): chains of jobs whose inputs are another owner's results, on both
    databases."""
    from sqlalchemy import event

    from tests.conftest import make_settings
    from uws_server.errors import NotFound
    from uws_server.provenance_service import ProvenanceService

    def no_definition(name: str) -> None:
        raise NotFound(f"no definition {name}")

    prov = ProvenanceService(make_settings(tmp_path), store, no_definition)

    def chain(n: int, jobname: str) -> None:
        previous = None
        for i in range(n):
            owner = ("alice", "bob")[i % 2]
            j = store.insert_job(job(i, owner=owner, jobname=jobname), new_job_id)
            out = _result(j.job_id, f"out{i}", f"ent_{jobname}_{i}")
            out.owner = owner
            assert store.finish(j.job_id, Phase.PENDING, JobEnd(Phase.COMPLETED, T0, results=[out]))
            if previous is not None:
                store.add_usages(j.job_id, [(previous, "input")])
            previous = out.entity_id

    def statements_of_search(jobname: str, n: int) -> int:
        statements: list[str] = []
        listen = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(store.engine, "before_cursor_execute", listen)
        try:
            found = prov.search(ROOT, [("activity", jobname)])
        finally:
            event.remove(store.engine, "before_cursor_execute", listen)
        assert len(found) == n
        return len(statements)

    chain(20, "short")
    chain(80, "long")
    few, many = statements_of_search("short", 20), statements_of_search("long", 80)
    assert few == many <= 8, (few, many)


def test_jobs_in_phases_with_their_results(store: Store) -> None:
    """Recovery's read: every job of the phases asked for, each with its own results,
    oldest first, in one statement."""
    a, b, c = (store.insert_job(job(i), new_job_id) for i in range(3))
    assert store.mark_queued(a.job_id, "local") and store.mark_queued(c.job_id, "local")
    rows = [_result(c.job_id, "one", "ent_p1"), _result(c.job_id, "two", "ent_p2")]
    store.add_entities(rows)
    found = store.jobs_in_phases([Phase.QUEUED, Phase.EXECUTING])
    assert [j.job_id for j in found] == [a.job_id, c.job_id]
    assert [r.name for r in found[0].results] == []
    assert [r.name for r in found[1].results] == ["one", "two"]
    assert store.jobs_in_phases([Phase.HELD]) == []
    assert store.get_job(b.job_id).phase == Phase.PENDING
