"""The Slurm manager against the real single-node Slurm, through the HTTP API.

Every job here is really submitted with sbatch, run by ``workers.runner`` on the Slurm
node and reported back by HTTP callbacks and by the batched squeue poll. The Slurm
daemons come from ``scripts/slurm_start.sh``; with ``UWS_REQUIRE_SERVICES=1`` a missing
Slurm fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Client, LiveServer, make_settings, need
from uws_server.config import Settings
from uws_server.jdl.votable import write_votable
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef
from uws_server.managers.slurm import RECORD_FILE, SlurmManager
from uws_server.managers.slurm_cli import FINAL_STATES

OUTPUT = [EntityDef("output", default="output.txt", content_type="text/plain")]
# Extra definitions for these tests, next to tests/data/jdl and OPUS's test_activity_*.
DEFINITIONS = [
    JobDefinition("id_job", script='echo "$UWS_JOB_ID" > $output\n', generated=OUTPUT),
    JobDefinition(
        "env_job",
        script=(
            "env > env.txt\n"
            "tr '\\0' '\\n' < /proc/$PPID/environ > parent_env.txt\n"
            "echo ok > $output\n"
        ),
        generated=OUTPUT,
    ),
    JobDefinition(
        "pending_job",
        script="echo $text > $output\n",
        parameters=[ParameterDef("text", default="late")],
        generated=OUTPUT,
        sbatch_options=["--begin=now+5", "--comment=uws test"],
    ),
    JobDefinition(
        "misplaced_job",
        script="true\n",
        sbatch_options=["--partition=nosuchpartition"],
    ),
]


def slurm_ready() -> bool:
    if not all(shutil.which(t) for t in ("sbatch", "squeue", "scancel", "scontrol")):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    return "is UP" in ping.stdout


@pytest.fixture(autouse=True)
def _need_slurm() -> None:
    need(slurm_ready(), "Slurm is not running (bash scripts/slurm_start.sh)")


def slurm_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """``make_settings`` with the Slurm manager and this module's job definitions."""
    values: dict[str, Any] = {"manager": "slurm", "slurm_poll_interval": 0.5}
    values.update(overrides)
    settings = make_settings(tmp_path, **values)
    for defn in DEFINITIONS:
        defn.execution_duration = defn.execution_duration or 60
        defn.contact_name, defn.contact_email = "tests", "tests@example.org"
        path = settings.job_definitions_dir / f"{defn.name}_vot.xml"
        path.write_bytes(write_votable(defn))
    return settings


@pytest.fixture
def slurm_live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(slurm_settings(tmp_path))
    server.add_user("alice")
    yield server
    server.stop()
    kill_leftovers(server.settings.jobs_dir)


def kill_leftovers(jobs_dir: Path) -> None:
    """Cancel whatever a test left running in Slurm under these jobs' names."""
    names = [f"uws-{d.name}" for d in jobs_dir.iterdir()] if jobs_dir.is_dir() else []
    if names:  # scancel --name takes a single name; squeue -n takes a list
        listed = subprocess.run(
            ["squeue", "-h", "-t", "PENDING,RUNNING", "-n", ",".join(names), "-o", "%i"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if listed:
            subprocess.run(["scancel", *listed], check=False)
    for pid in processes_in_tree(jobs_dir):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def processes_in_tree(root: Path) -> list[int]:
    """Pids whose working directory lies under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(root.resolve()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def job_dir(live: LiveServer, job: str) -> Path:
    return live.settings.jobs_dir / job.rsplit("/", 1)[1]


def slurm_id(live: LiveServer, job: str) -> str:
    return json.loads((job_dir(live, job) / RECORD_FILE).read_text())["slurm_id"]


def slurm_state(sid: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", sid, "-o", "%T"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.split()[0] if out else ""


def scontrol(sid: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", sid], capture_output=True, text=True, check=False
    ).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def wait_for(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def manager_of(live: LiveServer) -> SlurmManager:
    manager = live.service.lifecycle.manager
    assert isinstance(manager, SlurmManager)
    return manager


def capture_tokens(live: LiveServer) -> dict[str, str]:
    """Record each job's callback token as the manager hands it to sbatch."""
    manager = manager_of(live)
    tokens: dict[str, str] = {}
    original = manager.sbatch_environment

    def spy(spec: Any) -> dict[str, str]:
        tokens[spec.job_id] = spec.callback_token
        return original(spec)

    manager.sbatch_environment = spy  # type: ignore[method-assign]
    return tokens


# --- a job's life on Slurm ------------------------------------------------------------


def test_job_completes_with_results_and_slurm_sees_our_options(
    slurm_live: LiveServer,
) -> None:
    alice = slurm_live.client("alice")
    job = alice.create("pending_job", {"text": "from slurm", "PHASE": "RUN"})
    sid = slurm_id(slurm_live, job)
    info = scontrol(sid)
    # --begin from the definition keeps it PENDING in Slurm: QUEUED in UWS
    assert info["JobState"] == "PENDING" and alice.phase(job) == "QUEUED"
    jdir = job_dir(slurm_live, job)
    assert info["JobName"] == f"uws-{jdir.name}"
    assert Path(info["WorkDir"]) == jdir
    assert Path(info["StdOut"]) == jdir / ".uws" / "slurm.out"
    assert info["TimeLimit"] == "00:01:00"  # executionDuration 60 s -> 1 min
    comment = subprocess.run(
        ["squeue", "-h", "-j", sid, "-o", "%k"], capture_output=True, text=True
    )
    assert comment.stdout.strip() == "uws test"  # "--comment=uws test" is one argument
    assert alice.wait_final(job, timeout=40) == "COMPLETED"
    assert alice.get(job + "/results/output").text == "from slurm\n"
    status = json.loads((jdir / ".uws" / "status.json").read_text())
    assert status["results"][0]["sha256"] and status["results"][0]["size"] == 11
    assert slurm_live.service.store.get_job(jdir.name).external_id == sid


def test_a_job_slurm_refuses_is_an_error_with_sbatchs_reason(slurm_live: LiveServer) -> None:
    alice = slurm_live.client("alice")
    job = alice.create("misplaced_job", {"PHASE": "RUN"})
    assert alice.phase(job) == "ERROR"
    error = alice.get(job + "/error").text
    assert "could not submit" in error and "invalid partition" in error.lower(), error


def test_opus_test_activity_1_unchanged(slurm_live: LiveServer) -> None:
    alice = slurm_live.client("alice")
    job = alice.create("test_activity_1", {"text": "Hello $(whoami) ; OPUS", "PHASE": "RUN"})
    assert wait_for(lambda: alice.phase(job) == "EXECUTING", 15)
    assert alice.wait_final(job, timeout=60) == "COMPLETED"
    assert alice.get(job + "/results/output").text.strip() == "Hello $(whoami) ; OPUS"


def test_callbacks_alone_finish_a_job(tmp_path: Path) -> None:
    """With no poll for an hour, the runner's HTTP callbacks carry the job to its end."""
    live = LiveServer(slurm_settings(tmp_path, slurm_poll_interval=3600))
    try:
        c = live.add_user("carol")
        job = c.create("id_job", {"PHASE": "RUN"})
        assert c.wait_final(job, timeout=30) == "COMPLETED"
        assert c.get(job + "/results/output").text.strip() == job.rsplit("/", 1)[1]
    finally:
        live.stop()
        kill_leftovers(live.settings.jobs_dir)


def test_polling_alone_finishes_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Callbacks to nowhere: squeue plus the status file still give the true outcome."""
    monkeypatch.setenv("UWS_CALLBACK_RETRY", "2")  # the runner gives up quickly
    live = LiveServer(slurm_settings(tmp_path, callback_url="http://127.0.0.1:9"))
    try:
        c = live.add_user("carol")
        job = c.create("id_job", {"PHASE": "RUN"})
        fail = c.create("fail_job", {"PHASE": "RUN"})
        assert c.wait_final(job, timeout=30) == "COMPLETED"
        assert c.get(job + "/results/output").text.strip() == job.rsplit("/", 1)[1]
        assert c.wait_final(fail, timeout=30) == "ERROR"
        assert "something went wrong" in c.get(fail + "/error").text
    finally:
        live.stop()
        kill_leftovers(live.settings.jobs_dir)


def test_the_token_never_reaches_the_job(slurm_live: LiveServer) -> None:
    tokens = capture_tokens(slurm_live)
    alice = slurm_live.client("alice")
    job = alice.create("env_job", {"PHASE": "RUN"})
    assert alice.wait_final(job, timeout=30) == "COMPLETED"  # callbacks used the token
    token = tokens[job.rsplit("/", 1)[1]]
    assert len(token) > 20
    jdir = job_dir(slurm_live, job)
    assert "PATH=" in (jdir / "env.txt").read_text()
    runner_env = (jdir / "parent_env.txt").read_text()  # the runner's /proc/PID/environ
    assert "SLURM_JOB_ID=" in runner_env  # it really is the runner's environment
    for path in jdir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert (
        token
        not in subprocess.run(
            ["scontrol", "show", "job", "-d", slurm_id(slurm_live, job)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )


def test_execution_duration_exceeded_is_an_error_naming_the_limit(
    slurm_live: LiveServer,
) -> None:
    alice = slurm_live.client("alice")
    job = alice.create("sleep_job", {"seconds": "30", "EXECUTIONDURATION": "2", "PHASE": "RUN"})
    sid = slurm_id(slurm_live, job)
    assert scontrol(sid)["TimeLimit"] == "00:01:00"  # 2 s rounded up to Slurm's minute
    started = time.monotonic()
    assert alice.wait_final(job, timeout=30) == "ERROR"
    assert time.monotonic() - started < 15  # the runner enforced the exact seconds
    assert "execution duration of 2 s exceeded" in alice.get(job + "/error").text


def test_abort_cancels_the_slurm_job(slurm_live: LiveServer) -> None:
    alice = slurm_live.client("alice")
    job = alice.create("sleep_job", {"seconds": "120", "PHASE": "RUN"})
    jdir = job_dir(slurm_live, job)
    assert wait_for(lambda: (jdir / "started.txt").exists(), 20)
    sid = slurm_id(slurm_live, job)
    assert slurm_state(sid) == "RUNNING"
    assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    assert alice.phase(job) == "ABORTED"
    assert wait_for(lambda: slurm_state(sid) in FINAL_STATES, 15), slurm_state(sid)
    assert slurm_state(sid) == "CANCELLED"
    assert wait_for(lambda: not processes_in_tree(jdir), 15)
    time.sleep(1.5)  # the runner's own ABORTED callback and later polls change nothing
    assert alice.phase(job) == "ABORTED"
    assert sid not in manager_of(slurm_live).active_jobs().values()


def test_burst_of_200_jobs_none_lost_or_duplicated(slurm_live: LiveServer) -> None:
    manager = manager_of(slurm_live)
    calls: list[int] = []
    query = manager.cli.query

    def counting_query(ids: Any) -> Any:
        ids = list(ids)
        calls.append(len(ids))
        return query(ids)

    manager.cli.query = counting_query  # type: ignore[method-assign]
    alice = slurm_live.client("alice")
    with ThreadPoolExecutor(max_workers=16) as pool:
        jobs = list(pool.map(lambda _: alice.create("id_job", {"PHASE": "RUN"}), range(200)))
    assert len(set(jobs)) == 200
    with ThreadPoolExecutor(max_workers=16) as pool:
        phases = list(pool.map(lambda j: Client(alice.base, alice.token).wait_final(j, 90), jobs))
    assert phases == ["COMPLETED"] * 200
    for job in jobs:
        assert alice.get(job + "/results/output").text.strip() == job.rsplit("/", 1)[1]
    sids = [slurm_id(slurm_live, job) for job in jobs]
    assert len(set(sids)) == 200
    # Slurm holds exactly one job per UWS job: no double submission
    names = [f"uws-{job.rsplit('/', 1)[1]}" for job in jobs]
    listed = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", ",".join(names), "-o", "%j"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(listed) == sorted(names)
    # one squeue per poll for every active job, not one per job
    assert max(calls) > 20 and len(calls) < 200


# --- forged callbacks -----------------------------------------------------------------


def test_forged_callbacks_are_refused(slurm_live: LiveServer) -> None:
    tokens = capture_tokens(slurm_live)
    alice = slurm_live.client("alice")
    first = alice.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    second = alice.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    id1, id2 = first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]
    url = f"{slurm_live.base}/callback/{id1}"
    done = {"phase": "COMPLETED", "results": []}

    def post(token: str, event: dict[str, Any]) -> requests.Response:
        return requests.post(url, json=event, headers={"Authorization": f"Bearer {token}"})

    assert post("not-the-token", {"phase": "ERROR", "error": "forged"}).status_code == 403
    assert post(tokens[id2], {"phase": "ERROR", "error": "forged"}).status_code == 403
    assert requests.post(url, json=done).status_code == 400  # no token at all
    assert alice.phase(first) in ("QUEUED", "EXECUTING")
    assert alice.post(first + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    refused = post(tokens[id1], done)  # the right token, but after a final phase
    assert refused.status_code == 409 and "ABORTED" in refused.text
    assert alice.phase(first) == "ABORTED"
    assert alice.post(second + "/phase", data={"PHASE": "ABORT"}).status_code == 303


# --- the manager on its own -----------------------------------------------------------


class RecordingSink:
    """Collects what a manager reports (the service's role), for direct manager tests."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {}
        self.lock = threading.Lock()

    def report(self, job_id: str, event: Any) -> None:
        with self.lock:
            self.events.setdefault(job_id, []).append(event)

    def last(self, job_id: str) -> Any:
        with self.lock:
            return (self.events.get(job_id) or [None])[-1]
