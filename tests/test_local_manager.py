"""The local manager with real processes: slots, queue, limits, abort, kill, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.timing import MACHINE, wait_for
from uws_server import worker_events
from uws_server.jobdef import EntityDef
from uws_server.managers.base import JobSpec, write_spec
from uws_server.managers.local import IDENTITY_FILE, LOST_MESSAGE, LocalManager
from uws_server.models import Job, Phase, Result, WorkerEvent
from workers.procs import ProcessIdentity, process_state

ROOT = Path(__file__).resolve().parent.parent
TREE = """
sleep 300 & echo $! >> pids
bash -c 'sleep 300 & echo $! >> pids; wait' & echo $! >> pids
wait
"""


class Sink:
    """Records every event, and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, WorkerEvent]] = []
        self.cond = threading.Condition()

    def report(self, job_id: str, event: WorkerEvent) -> None:
        with self.cond:
            self.events.append((job_id, event))
            self.cond.notify_all()

    def phases(self, job_id: str) -> list[Phase]:
        with self.cond:
            return [e.phase for j, e in self.events if j == job_id]

    def wait_final(self, job_id: str, timeout: float = MACHINE) -> WorkerEvent:
        def final() -> WorkerEvent | None:
            return next((e for j, e in self.events if j == job_id and e.phase.is_final), None)

        with self.cond:
            assert self.cond.wait_for(lambda: final() is not None, timeout), self.events
            event = final()
            assert event is not None
            return event

    def wait_phase(self, job_id: str, phase: Phase, timeout: float = MACHINE) -> WorkerEvent:
        with self.cond:
            assert self.cond.wait_for(lambda: phase in self.phases(job_id), timeout)
            return next(e for j, e in self.events if j == job_id and e.phase is phase)


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "jobs"
    path.mkdir()
    return path


@pytest.fixture
def make_manager(jobs_dir: Path) -> Iterator[Callable[..., tuple[LocalManager, Sink]]]:
    made: list[LocalManager] = []

    def make(slots: int = 2) -> tuple[LocalManager, Sink]:
        sink = Sink()
        manager = LocalManager(
            sink, SimpleNamespace(local_slots=slots, jobs_dir=jobs_dir), kill_grace=0.5
        )
        manager.start()
        made.append(manager)
        return manager, sink

    yield make
    for manager in made:
        for job_id in manager.running_jobs():  # leave nothing behind, even on failure
            manager.abort(_job(job_id))
        manager.stop()


def make_spec(jobs_dir: Path, job_id: str, script: str, **kw: object) -> JobSpec:
    job_dir = jobs_dir / job_id
    job_dir.mkdir()
    params = dict(kw.pop("parameters", {}))  # type: ignore[call-overload]
    (job_dir / "parameters.json").write_text(json.dumps(params))
    (job_dir / "script.sh").write_text(script)
    generated = kw.pop("generated", [])
    spec = JobSpec(job_id, "test", job_dir, script, params, generated=generated, **kw)  # type: ignore[arg-type]
    write_spec(spec)
    return spec


def _job(job_id: str, phase: Phase = Phase.EXECUTING, **kw: object) -> Job:
    now = datetime.now(UTC)
    return Job(job_id, "test", "alice", phase, now, now + timedelta(days=1), 0, **kw)  # type: ignore[arg-type]


def dead(pid: int, within: float = MACHINE) -> bool:
    """True once ``pid`` is gone or a zombie."""
    return wait_for(lambda: process_state(pid) in (None, "Z", "X"), within, step=0.02)


def pids_of(job_dir: Path, count: int = 3) -> list[int]:
    """The pids the job's processes wrote, once ``count`` of them started."""
    pids: list[str] = []

    def started() -> bool:
        nonlocal pids
        path = job_dir / "pids"
        pids = path.read_text().split() if path.exists() else []
        return len(pids) >= count

    assert wait_for(started, MACHINE, step=0.02), "the job did not start its children"
    return [int(p) for p in pids]


def opus_script() -> str:
    ns = "{http://www.ivoa.net/xml/VOTable/v1.3}"
    root = ET.parse(ROOT / "job_definitions" / "test_activity_1_vot.xml").getroot()
    value = next(p.get("value") for p in root.iter(f"{ns}PARAM") if p.get("name") == "script")
    assert value is not None
    return value.replace("sleep 10", "sleep 0")


# --- running ---------------------------------------------------------------------------


def test_opus_job_completes_with_literal_values(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    value = "$(touch pwned); rm -rf ..; `touch pwned2` \"'"
    spec = make_spec(
        jobs_dir,
        "opus",
        opus_script(),
        parameters={"text": value},
        generated=[EntityDef("output", default="output.txt", content_type="text/plain")],
    )
    manager.submit(spec)
    final = sink.wait_final("opus")
    content = (value + "\n").encode()
    assert final.phase is Phase.COMPLETED, final.error
    assert final.results == [
        Result("output", "output.txt", "text/plain", len(content), sha256(content).hexdigest())
    ]
    assert (spec.job_dir / "output.txt").read_bytes() == content
    assert not (spec.job_dir / "pwned").exists() and not (spec.job_dir / "pwned2").exists()
    assert sink.phases("opus") == [Phase.EXECUTING, Phase.COMPLETED]
    executing = sink.wait_phase("opus", Phase.EXECUTING)
    assert executing.external_id is not None and int(executing.external_id) > 1
    assert final.context["host"] and final.context["python"]
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.COMPLETED and status.exit_code == 0


def test_failures_are_errors(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    manager.submit(make_spec(jobs_dir, "fails", "echo 'no such file: x' >&2; exit 2"))
    missing = make_spec(
        jobs_dir, "missing", "true", generated=[EntityDef("out", default="out.txt")]
    )
    manager.submit(missing)
    gone = JobSpec("gone", "test", jobs_dir / "no-such-dir", "true", {})
    manager.submit(gone)
    assert sink.wait_final("fails").error == "script exited with code 2: no such file: x"
    final = sink.wait_final("missing")
    assert final.phase is Phase.ERROR and final.error == "result out: out.txt was not produced"
    final = sink.wait_final("gone")
    assert final.phase is Phase.ERROR and (final.error or "").startswith("cannot start the job")
    assert manager.running_jobs() == []


def test_planted_symlinks_are_not_followed(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    precious = jobs_dir / "precious.txt"
    precious.write_text("keep me")
    spec = make_spec(jobs_dir, "planted", "echo hi")
    os.symlink(precious, spec.job_dir / "stdout.log")
    manager.submit(spec)
    final = sink.wait_final("planted")
    assert final.phase is Phase.ERROR and (final.error or "").startswith("cannot start the job")
    assert precious.read_text() == "keep me"


def test_queue_beyond_slots_is_fifo(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager(slots=1)
    ids = ["q1", "q2", "q3"]
    for job_id in ids:
        manager.submit(make_spec(jobs_dir, job_id, "sleep 0.2; date +%s.%N > t"))
    assert sink.phases("q1") == [Phase.EXECUTING]
    assert sink.phases("q2") == [Phase.QUEUED] and sink.phases("q3") == [Phase.QUEUED]
    assert manager.queued_jobs() == ["q2", "q3"]
    for job_id in ids:
        assert sink.wait_final(job_id).phase is Phase.COMPLETED
    starts = [sink.wait_phase(j, Phase.EXECUTING).start_time for j in ids]
    ends = [sink.wait_final(j).end_time for j in ids]
    assert starts == sorted(starts)  # type: ignore[type-var]
    for prev_end, next_start in zip(ends, starts[1:], strict=False):
        assert prev_end is not None and next_start is not None and prev_end <= next_start
    assert [j for j, e in sink.events if e.phase is Phase.EXECUTING] == ids


def test_execution_duration_kills_the_tree(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    spec = make_spec(jobs_dir, "slow", TREE, execution_duration=1)
    started = time.monotonic()
    manager.submit(spec)
    pids = pids_of(spec.job_dir)
    final = sink.wait_final("slow", timeout=1 + manager.kill_grace + MACHINE)
    assert final.phase is Phase.ERROR
    assert final.error == "execution duration of 1 s exceeded"
    # not before its limit; and long before the tree's own 300 s: the limit stopped it
    # (how promptly is a speed figure, for bench/, not for a timed test)
    assert time.monotonic() - started >= 1.0
    pgid = int(sink.wait_phase("slow", Phase.EXECUTING).external_id or 0)
    assert all(dead(p) for p in [*pids, pgid])


def test_abort_kills_the_tree(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    spec = make_spec(jobs_dir, "tree", TREE)
    manager.submit(spec)
    pids = pids_of(spec.job_dir)
    assert all(process_state(p) not in (None, "Z") for p in pids)
    manager.abort(_job("tree"))
    final = sink.wait_final("tree")
    assert final.phase is Phase.ABORTED
    assert all(dead(p) for p in pids)
    assert manager.running_jobs() == []


def test_abort_escalates_to_sigkill(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    script = "trap '' TERM\n" + TREE.replace("bash -c '", 'bash -c \'trap "" TERM; ')
    spec = make_spec(jobs_dir, "stubborn", script)
    manager.submit(spec)
    pids = pids_of(spec.job_dir)
    manager.abort(_job("stubborn"))
    # SIGKILL at the latest kill_grace after the SIGTERM they ignore (at once when the
    # wrapper ends); the tree sleeps 300 s, so without it this wait fails
    final = sink.wait_final("stubborn", timeout=manager.kill_grace + MACHINE)
    assert final.phase is Phase.ABORTED
    assert all(dead(p) for p in pids)


def test_abort_of_a_queued_job(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager(slots=1)
    manager.submit(make_spec(jobs_dir, "first", "sleep 0.3"))
    manager.submit(make_spec(jobs_dir, "second", "touch ran"))
    manager.abort(_job("second", Phase.QUEUED))
    assert sink.wait_final("second").phase is Phase.ABORTED
    assert sink.wait_final("first").phase is Phase.COMPLETED
    time.sleep(0.1)
    assert sink.phases("second") == [Phase.QUEUED, Phase.ABORTED]
    assert not (jobs_dir / "second" / "ran").exists()
    manager.abort(_job("second"))  # gone: must not raise


def test_a_queued_job_submitted_again_is_queued_once(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    """The queue's id set follows the queue: a duplicate while queued is ignored, and
    a job that left the queue (aborted, or started) can be submitted again."""
    manager, sink = make_manager(slots=1)
    manager.submit(make_spec(jobs_dir, "first", "sleep 0.5"))
    again = make_spec(jobs_dir, "again", "echo run >> runs.txt")
    manager.submit(again)
    manager.submit(again)
    assert manager.queued_jobs() == ["again"]
    manager.abort(_job("again", Phase.QUEUED))
    assert manager.queued_jobs() == [] and sink.wait_final("again").phase is Phase.ABORTED
    manager.submit(again)  # out of the queue: accepted again
    assert manager.queued_jobs() == ["again"]
    assert sink.wait_final("first").phase is Phase.COMPLETED
    assert wait_for((jobs_dir / "again" / ".uws" / "exit_status").exists, MACHINE, step=0.02)
    assert (jobs_dir / "again" / "runs.txt").read_text() == "run\n"
    assert manager.queued_jobs() == [] and manager.running_jobs() in ([], ["again"])


def test_sigkill_from_outside_is_an_error(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    manager, sink = make_manager()
    spec = make_spec(jobs_dir, "killed", TREE)
    manager.submit(spec)
    pids = pids_of(spec.job_dir)
    os.kill(int(sink.wait_phase("killed", Phase.EXECUTING).external_id or 0), signal.SIGKILL)
    final = sink.wait_final("killed")
    assert final.phase is Phase.ERROR
    assert final.error == "killed by signal 9 (SIGKILL)"
    assert all(dead(p) for p in pids)  # what the job left behind is cleaned up too


# --- restart -----------------------------------------------------------------------------


def test_recover_adopts_a_running_job(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    old, old_sink = make_manager()
    gen = [EntityDef("output", default="out.txt")]
    spec = make_spec(jobs_dir, "survivor", "sleep 0.8; echo done > out.txt", generated=gen)
    old.submit(spec)
    executing = old_sink.wait_phase("survivor", Phase.EXECUTING)
    old.stop()  # the "server" goes away; the job keeps running
    assert process_state(int(executing.external_id or 0)) not in (None, "Z")
    new, sink = make_manager()
    job = _job("survivor", external_id=executing.external_id, start_time=executing.start_time)
    new.recover([job], {"survivor": spec})
    assert new.running_jobs() == ["survivor"]
    final = sink.wait_final("survivor")
    assert final.phase is Phase.COMPLETED, final.error
    assert [r.path for r in final.results] == ["out.txt"]
    assert old_sink.phases("survivor") == [Phase.EXECUTING]  # the old server saw no end


def test_recover_adopted_job_still_obeys_abort(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    old, old_sink = make_manager()
    spec = make_spec(jobs_dir, "adopted", TREE)
    old.submit(spec)
    pids = pids_of(spec.job_dir)
    executing = old_sink.wait_phase("adopted", Phase.EXECUTING)
    old.stop()
    new, sink = make_manager()
    job = _job("adopted", external_id=executing.external_id, start_time=executing.start_time)
    new.recover([job], {"adopted": spec})
    new.abort(job)
    assert sink.wait_final("adopted").phase is Phase.ABORTED
    assert all(dead(p) for p in pids)


def test_recover_job_that_ended_while_server_was_down(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    old, old_sink = make_manager()
    spec = make_spec(jobs_dir, "ended", "sleep 0.2; echo 'oops' >&2; exit 4")
    old.submit(spec)
    executing = old_sink.wait_phase("ended", Phase.EXECUTING)
    old.stop()
    assert dead(int(executing.external_id or 0))
    assert (spec.job_dir / ".uws" / "exit_status").read_text() == "4\n"
    assert worker_events.read_status(spec.job_dir) is None  # nobody collected it
    new, sink = make_manager()
    new.recover([_job("ended", external_id=executing.external_id)], {"ended": spec})
    final = sink.wait_final("ended")
    assert final.phase is Phase.ERROR and final.error == "script exited with code 4: oops"
    assert worker_events.read_status(spec.job_dir) is not None


def test_recover_lost_job_and_pid_reuse(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    # A dead process, and a live pid that is not the job's (wrong start time).
    gone = subprocess.Popen(["sleep", "0"])
    gone_identity = ProcessIdentity.of(gone.pid)
    gone.wait()
    dead_spec = make_spec(jobs_dir, "lost", "true")
    reused_spec = make_spec(jobs_dir, "reused", "true")
    for spec, identity in (
        (dead_spec, gone_identity),
        (reused_spec, ProcessIdentity(os.getpid(), 1, "")),
    ):
        (spec.job_dir / ".uws").mkdir()
        (spec.job_dir / IDENTITY_FILE).write_text(json.dumps(identity.to_json()))
    manager, sink = make_manager()
    jobs = [
        _job("lost", external_id=str(gone.pid)),
        _job("reused", external_id=str(os.getpid())),
    ]
    manager.recover(jobs, {"lost": dead_spec, "reused": reused_spec})
    for job_id in ("lost", "reused"):
        final = sink.wait_final(job_id)
        assert final.phase is Phase.ERROR and final.error == LOST_MESSAGE
        status = worker_events.read_status(jobs_dir / job_id)
        assert status is not None and status.error == LOST_MESSAGE
    assert manager.running_jobs() == []  # the test process itself was not adopted


def test_recover_reports_a_written_status_and_requeues(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    done = make_spec(jobs_dir, "done", "true")
    worker_events.write_status(done.job_dir, worker_events.JobStatus(Phase.COMPLETED, exit_code=0))
    waiting = make_spec(jobs_dir, "waiting", "echo ran > ran.txt")
    manager, sink = make_manager(slots=1)
    manager.recover(
        [_job("done"), _job("waiting", Phase.QUEUED), _job("other", manager="slurm")],
        {"done": done, "waiting": waiting},
    )
    assert sink.wait_final("done").phase is Phase.COMPLETED
    assert sink.wait_final("waiting").phase is Phase.COMPLETED
    assert (waiting.job_dir / "ran.txt").read_text() == "ran\n"
    assert sink.phases("other") == []


def test_recover_queued_job_that_had_already_started(jobs_dir: Path, make_manager) -> None:  # type: ignore[no-untyped-def]
    """A crash between the launch and the EXECUTING record: adopt it, never run it twice."""
    old, _ = make_manager()
    spec = make_spec(jobs_dir, "twice", "echo run >> runs.txt; sleep 0.5")
    old.submit(spec)
    old.stop()
    new, sink = make_manager()
    new.recover([_job("twice", Phase.QUEUED)], {"twice": spec})
    assert sink.wait_final("twice").phase is Phase.COMPLETED
    assert Phase.EXECUTING not in sink.phases("twice")  # adopted, not started again
    assert (spec.job_dir / "runs.txt").read_text() == "run\n"
