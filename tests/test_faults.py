"""Faults a job must survive on Slurm (and the local pool): each ends in its true phase.

Real Slurm, real processes, real signals: the server is stopped while jobs run and
started again, processes are killed with SIGKILL, jobs are cancelled behind the
service's back, and Slurm is asked about ids it never knew or that are not ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Client, LiveServer, make_settings
from tests.test_slurm import (
    RecordingSink,
    _need_slurm,  # noqa: F401 - autouse fixture: Slurm must be up
    cluster_timing,
    job_dir,
    kill_leftovers,
    processes_in_tree,
    slurm_id,
    slurm_settings,
    slurm_state,
    wait_started,
)
from tests.timing import MACHINE, wait_for
from uws_server.managers.base import JobSpec
from uws_server.managers.slurm import SlurmManager
from uws_server.managers.slurm_cli import FINAL_STATES, parse_squeue
from uws_server.models import Job, Phase
from uws_server.worker_events import JobStatus, read_status, write_status


def started(live: LiveServer, job: str) -> Path:
    """The job's directory once its script runs (a job Slurm can start at once)."""
    jdir = job_dir(live, job)
    bound = cluster_timing().job_bound()
    assert wait_for(lambda: (jdir / "started.txt").exists(), bound), "the job never started"
    return jdir


def pid_with(jdir: Path, needle: str) -> int:
    """The pid of a process of the job whose command line contains ``needle``."""
    for pid in processes_in_tree(jdir):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline:
            return pid
    raise AssertionError(f"no process running {needle!r} in {jdir}")


@pytest.fixture
def slurm_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(slurm_settings(tmp_path))
    server.add_user("alice")
    yield server
    server.stop()
    kill_leftovers(server.settings.jobs_dir)


# --- the server goes away while jobs run ------------------------------------------------


def test_restart_while_jobs_run_on_slurm_and_on_the_local_pool(tmp_path: Path) -> None:
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    s_settings = slurm_settings(slurm_dir)
    l_settings = make_settings(local_dir, local_slots=1)
    s_live, l_live = LiveServer(s_settings), LiveServer(l_settings)
    s_client, l_client = s_live.add_user("carol"), l_live.add_user("carol")
    try:
        # on Slurm: one that ends while the server is down, one that outlives the
        # restart, and one still PENDING in Slurm (--begin=now+10) across the restart:
        # the waits for the others to start and the stop take a few seconds of those 10
        short = s_client.create("sleep_job", {"seconds": "1", "PHASE": "RUN"})
        long = s_client.create("sleep_job", {"seconds": "12", "PHASE": "RUN"})
        pending = s_client.create("late_job", {"text": "begun late", "PHASE": "RUN"})
        # on the local pool: one running, one waiting for the only slot
        running = l_client.create("sleep_job", {"seconds": "3", "PHASE": "RUN"})
        queued = l_client.create("echo_job", {"text": "after restart", "PHASE": "RUN"})
        started(s_live, short)
        started(s_live, long)
        assert l_client.phase(queued) == "QUEUED"
        assert slurm_state(slurm_id(s_live, pending)) == "PENDING"
    finally:
        s_live.stop()
        l_live.stop()
    # short ends meanwhile (1 s): its runner cannot call back, its status file tells
    assert wait_for(lambda: read_status(job_dir(s_live, short)) is not None, 1 + MACHINE)
    # long (12 s) outlives the restart: it started before the stop, a few seconds ago
    assert slurm_state(slurm_id(s_live, long)) == "RUNNING"
    # the same addresses again: the runners' callbacks reach the new servers
    s_live = LiveServer(slurm_settings(slurm_dir, port=s_settings.port))
    l_live = LiveServer(make_settings(local_dir, local_slots=1, port=l_settings.port))
    try:
        s2, l2 = Client(s_live.base, s_client.token), Client(l_live.base, l_client.token)
        # Each wait below follows the previous one: what it waits for is the rest of a
        # script's sleep (at most the 12 s of long), then the runner on the machine.
        assert s2.wait_final(short, timeout=MACHINE) == "COMPLETED"  # from its status file
        assert s2.get(short + "/results/output").text == "done\n"
        assert s2.wait_final(long, timeout=12 + MACHINE) == "COMPLETED"
        assert s2.get(long + "/results/output").text == "done\n"
        wait_started(slurm_id(s_live, pending))  # its begin time, then Slurm's next pass
        assert s2.wait_final(pending, timeout=MACHINE) == "COMPLETED"
        assert s2.get(pending + "/results/output").text == "begun late\n"
        assert l2.wait_final(running, timeout=3 + MACHINE) == "COMPLETED"
        assert l2.get(running + "/results/output").text == "done\n"
        assert l2.wait_final(queued, timeout=MACHINE) == "COMPLETED"
        assert l2.get(queued + "/results/output").text.startswith("after restart")
    finally:
        s_live.stop()
        l_live.stop()
        kill_leftovers(s_settings.jobs_dir)


# --- processes killed, jobs cancelled behind the service's back ------------------------


def test_script_killed_with_sigkill_is_an_error_saying_so(slurm_server: LiveServer) -> None:
    alice = slurm_server.client("alice")
    job = alice.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    jdir = started(slurm_server, job)
    os.kill(pid_with(jdir, "bash script.sh"), signal.SIGKILL)
    assert alice.wait_final(job, timeout=MACHINE) == "ERROR"  # the runner reports it
    error = alice.get(job + "/error").text
    assert "killed by signal 9 (SIGKILL)" in error, error
    # the runner killed the rest before its final callback; Slurm would after KillWait
    assert wait_for(lambda: not processes_in_tree(jdir), cluster_timing().end_bound())


def test_runner_killed_with_sigkill_is_an_error_saying_so(slurm_server: LiveServer) -> None:
    alice = slurm_server.client("alice")
    job = alice.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    jdir = started(slurm_server, job)
    os.kill(pid_with(jdir, "workers.node"), signal.SIGKILL)
    bound = cluster_timing().report_bound(slurm_server.settings.slurm_poll_interval)
    assert alice.wait_final(job, timeout=bound) == "ERROR"  # only Slurm saw it
    error = alice.get(job + "/error").text
    assert "runner was killed by signal 9 (SIGKILL)" in error, error
    assert f"Slurm job {slurm_id(slurm_server, job)} FAILED" in error
    # persisted the first time it was seen: Slurm will forget the job after MinJobAge
    assert read_status(jdir).error == error


def test_scancel_behind_the_services_back_never_leaves_it_executing(
    slurm_server: LiveServer,
) -> None:
    alice = slurm_server.client("alice")
    job = alice.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    started(slurm_server, job)
    assert wait_for(lambda: alice.phase(job) == "EXECUTING", MACHINE)  # callback or poll
    subprocess.run(["scancel", slurm_id(slurm_server, job)], check=True)
    bound = cluster_timing().report_bound(slurm_server.settings.slurm_poll_interval)
    assert alice.wait_final(job, timeout=bound) in ("ABORTED", "ERROR")
    assert "cancel" in alice.get(job + "/error").text


def test_job_cancelled_while_pending_is_aborted(slurm_server: LiveServer) -> None:
    alice = slurm_server.client("alice")
    job = alice.create("pending_job", {"PHASE": "RUN"})
    sid = slurm_id(slurm_server, job)
    assert slurm_state(sid) == "PENDING"
    subprocess.run(["scancel", sid], check=True)  # the runner never starts
    bound = cluster_timing().report_bound(slurm_server.settings.slurm_poll_interval)
    assert alice.wait_final(job, timeout=bound) == "ABORTED"
    assert "cancelled in Slurm" in alice.get(job + "/error").text


# --- ids Slurm forgot, ids that are not ours ------------------------------------------


def _job(job_id: str, external_id: str | None, phase: Phase = Phase.EXECUTING) -> Job:
    now = datetime.now(UTC).replace(tzinfo=None)
    return Job(
        job_id=job_id,
        jobname="sleep_job",
        owner="alice",
        phase=phase,
        creation_time=now,
        destruction_time=now + timedelta(days=1),
        execution_duration=60,
        manager="slurm",
        external_id=external_id,
    )


def _spec(root: Path, job_id: str, duration: int = 60) -> JobSpec:
    jdir = root / job_id
    (jdir / ".uws").mkdir(parents=True)
    return JobSpec(job_id, "sleep_job", jdir, "sleep 30\n", {}, execution_duration=duration)


def test_forgotten_and_foreign_slurm_ids_end_in_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, manager="slurm")
    sink = RecordingSink()
    manager = SlurmManager(sink, settings)
    foreign = subprocess.run(
        ["sbatch", "--parsable", "--job-name=not-uws", f"--chdir={tmp_path}", "--wrap=sleep 60"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        jobs = [_job("forgotten", "999999999"), _job("foreign", foreign), _job("finished", "9")]
        specs = {j.job_id: _spec(settings.jobs_dir, j.job_id) for j in jobs}
        # the runner of "finished" left its status before Slurm forgot the job
        write_status(specs["finished"].job_dir, JobStatus(Phase.COMPLETED, exit_code=0))
        manager.recover(jobs, specs)
        manager.abort(jobs[1])  # scancel restricted to our name: the foreign job lives on
        manager.poll_once()
        assert sink.last("forgotten").phase is Phase.ERROR
        assert "Slurm no longer knows job 999999999" in sink.last("forgotten").error
        assert sink.last("foreign").phase is Phase.ERROR
        assert "is not this job's (it is named 'not-uws')" in sink.last("foreign").error
        assert sink.last("finished").phase is Phase.COMPLETED
        assert manager.active_jobs() == {}
        assert wait_for(lambda: slurm_state(foreign) == "RUNNING", cluster_timing().start_bound())
        # the outcome is persisted: a second restart finds it without asking Slurm
        assert read_status(specs["forgotten"].job_dir).phase is Phase.ERROR
    finally:
        subprocess.run(["scancel", foreign], check=False)


def test_slurm_time_limit_is_an_error_naming_the_limit(tmp_path: Path) -> None:
    """Slurm's own TIMEOUT (a minute at least, too slow to wait for here): the runner got
    SIGTERM and wrote ABORTED, squeue says TIMEOUT (its real output) -> ERROR."""
    settings = make_settings(tmp_path, manager="slurm")
    sink = RecordingSink()
    manager = SlurmManager(sink, settings)
    spec = _spec(settings.jobs_dir, "slow", duration=90)
    received = "job cancelled: the runner received SIGTERM"
    write_status(spec.job_dir, JobStatus(Phase.ABORTED, signal=None, error=received))
    squeue_said = "43|TIMEOUT|TimeLimit|36608|uws-slow|2026-11-25T09:00:41|\n"
    seen = parse_squeue(squeue_said)["43"]
    assert seen.exit_code == 143 and seen.is_final
    manager.cli.query = lambda ids: parse_squeue(squeue_said)  # type: ignore[method-assign]
    manager.recover([_job("slow", "43")], {"slow": spec})
    manager.poll_once()
    event = sink.last("slow")
    assert event.phase is Phase.ERROR
    assert "execution duration of 90 s exceeded" in event.error
    assert "time limit of 2 min" in event.error and received in event.error
    assert json.loads((spec.job_dir / ".uws" / "status.json").read_text())["phase"] == "ERROR"


def test_abort_right_after_submit_cancels_in_slurm(slurm_server: LiveServer) -> None:
    alice = slurm_server.client("alice")
    job = alice.create("sleep_job", {"seconds": "60"})
    assert alice.post(job + "/phase", data={"PHASE": "RUN"}).status_code == 303
    assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    sid = slurm_id(slurm_server, job)
    bound = cluster_timing().end_bound()  # scancel: SIGTERM, SIGKILL KillWait later
    assert wait_for(lambda: slurm_state(sid) in FINAL_STATES, bound), slurm_state(sid)
    assert alice.phase(job) == "ABORTED"
