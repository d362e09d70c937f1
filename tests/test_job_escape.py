"""Issue 11, classes 5 and 6: nothing a job starts outlives it, and no link is a result.

Class 5: one job script starts a family of processes that each leave the job's process
group a different way (``setsid``, ``nohup`` in a subshell that exits, a double fork, a
``disown``-ed job-control group, one ignoring SIGTERM, a Python child that daemonizes);
each writes its own pid. For every executor (the local pool and the worker runner, each
with a cgroup and with a subreaper, and real Slurm) and every way a job ends (the script
ends, executionDuration, ABORT), every one of them must be dead when the job's final
phase is reported.

Class 6: results that are hard links (to a file outside, to another job's result),
symbolic links (also one swapped in after collection), FIFOs and directories are refused
by the worker and again by the service; a collected result is read-only and its
recorded SHA-256 is that of what is served.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import LiveServer, make_settings, need
from uws_server import worker_events
from uws_server.jdl.votable import write_votable
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef
from uws_server.managers.base import JobSpec, write_spec
from uws_server.managers.local import LocalManager
from uws_server.models import Job, Phase, Result, WorkerEvent
from workers import containment
from workers.procs import process_state

ROOT = Path(__file__).resolve().parent.parent
ESCAPES = ("setsid", "nohup", "doublefork", "disown", "noterm", "daemon")
# Each variant writes <name>.pid with its own pid, then sleeps; then the script says
# "started" and either ends ($mode = end) or runs on (run) until it is stopped.
ESCAPE_SCRIPT = r"""
setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &
(nohup sh -c 'echo $$ > nohup.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &)
( (setsid sh -c 'echo $$ > doublefork.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &) & )
set -m
sh -c 'echo $$ > disown.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &
disown
set +m
setsid sh -c 'trap "" TERM HUP; echo $$ > noterm.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &
"$UWS_PYTHON" - <<'PY'
import os, signal, time
here = os.getcwd()
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
os.chdir("/")
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
with open(os.path.join(here, "daemon.tmp"), "w") as f:
    f.write(str(os.getpid()))
os.rename(os.path.join(here, "daemon.tmp"), os.path.join(here, "daemon.pid"))
time.sleep(300)
PY
for f in setsid nohup doublefork disown noterm daemon; do
    until [ -s "$f.pid" ]; do sleep 0.02; done
done
echo started > started
if [ "$mode" = run ]; then sleep 300; fi
echo done > output.txt
"""
SCENARIOS = ("end", "timeout", "abort")


def cgroups_allowed() -> bool:
    return containment.cgroup_base("auto") is not None


def need_mode(mode: str) -> str:
    """The ``job_cgroup`` setting for a containment mode."""
    if mode == "cgroup":
        need(cgroups_allowed(), "no writable cgroup v2 with cgroup.kill on this machine")
        return "auto"
    return "off"


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def wait_for(predicate: Callable[[], bool], within: float = 15.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def escaped_pids(job_dir: Path, within: float = 20.0) -> dict[str, int]:
    """The pid each variant wrote, once all of them have (and they run)."""
    files = [job_dir / f"{name}.pid" for name in ESCAPES]

    def ready() -> bool:
        return (job_dir / "started").exists() and all(f.exists() for f in files)

    assert wait_for(ready, within), sorted(os.listdir(job_dir))
    return {name: int((job_dir / f"{name}.pid").read_text()) for name in ESCAPES}


def assert_all_dead(pids: dict[str, int]) -> None:
    """Every escaped process is dead *now* (when the final phase has been reported)."""
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    for pid in left.values():  # never leave them behind for the next test
        os.kill(pid, 9)
    assert not left, f"still running after the job's end: {left}"


def leftover_pids(job_dir: Path) -> list[int]:
    pids = []
    for name in ESCAPES:
        try:
            pids.append(int((job_dir / f"{name}.pid").read_text()))
        except (OSError, ValueError):
            pass
    return pids


def left_behind(log: str) -> int:
    """How many processes the runner says it killed after the script's end (at least
    the six escapes; a subshell still exiting at that moment may be counted too)."""
    match = re.search(r"killed (\d+) process\(es\) it left behind", log)
    return int(match.group(1)) if match else 0


def kill_pids(job_dir: Path) -> None:
    for pid in leftover_pids(job_dir):
        if alive(pid):
            os.kill(pid, 9)


def test_each_variant_really_leaves_the_process_group(tmp_path: Path) -> None:
    """Without containment, killing the script's process group (all there was before)
    leaves every one of them running, except ``nohup`` in a subshell, which only leaves
    its parent (it is there for SIGHUP and the re-parenting): the family tests below
    are not vacuous."""
    script = tmp_path / "script.sh"
    script.write_text(ESCAPE_SCRIPT)
    env = {**os.environ, "mode": "end", "UWS_PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, start_new_session=True)
    try:
        assert proc.wait(timeout=20) == 0
        pids = escaped_pids(tmp_path)
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
        survivors = {name: alive(pid) for name, pid in pids.items()}
        assert survivors == {**dict.fromkeys(ESCAPES, True), "nohup": False}
    finally:
        kill_pids(tmp_path)


# --- the local pool -------------------------------------------------------------------


class Sink:
    """Records events; a test waits for the final one."""

    def __init__(self) -> None:
        import threading

        self.events: list[tuple[str, WorkerEvent]] = []
        self.cond = threading.Condition()
        self.alive_at_final: dict[str, list[int]] = {}
        self.watch: dict[str, Path] = {}

    def report(self, job_id: str, event: WorkerEvent) -> None:
        if event.phase.is_final and job_id in self.watch:
            # what still runs at the very moment the final phase is reported
            pids = leftover_pids(self.watch[job_id])
            self.alive_at_final[job_id] = [p for p in pids if alive(p)]
        with self.cond:
            self.events.append((job_id, event))
            self.cond.notify_all()

    def wait_final(self, job_id: str, timeout: float = 20.0) -> WorkerEvent:
        def final() -> WorkerEvent | None:
            return next((e for j, e in self.events if j == job_id and e.phase.is_final), None)

        with self.cond:
            assert self.cond.wait_for(lambda: final() is not None, timeout), self.events
            event = final()
            assert event is not None
            return event


def _job(job_id: str) -> Job:
    now = datetime.now(UTC)
    return Job(job_id, "escape", "alice", Phase.EXECUTING, now, now + timedelta(days=1), 0)


def local_spec(jobs_dir: Path, job_id: str, script: str, mode: str, **kw: Any) -> JobSpec:
    job_dir = jobs_dir / job_id
    job_dir.mkdir()
    params = {"mode": mode}
    (job_dir / "parameters.json").write_text(json.dumps(params))
    (job_dir / "script.sh").write_text(script)
    generated = kw.pop("generated", [EntityDef("output", default="output.txt")])
    spec = JobSpec(job_id, "escape", job_dir, script, params, generated=generated, **kw)
    write_spec(spec)
    return spec


@pytest.fixture
def local_pool(tmp_path: Path) -> Iterator[Callable[[str], tuple[LocalManager, Sink, Path]]]:
    made: list[tuple[LocalManager, Path]] = []

    def make(job_cgroup: str) -> tuple[LocalManager, Sink, Path]:
        jobs_dir = tmp_path / f"jobs-{len(made)}"
        jobs_dir.mkdir()
        sink = Sink()
        settings = SimpleNamespace(local_slots=2, jobs_dir=jobs_dir, job_cgroup=job_cgroup)
        manager = LocalManager(sink, settings, kill_grace=0.5)
        manager.start()
        made.append((manager, jobs_dir))
        return manager, sink, jobs_dir

    yield make
    for manager, jobs_dir in made:
        for job_id in manager.running_jobs():
            manager.abort(_job(job_id))
        manager.stop()
        for job_dir in jobs_dir.iterdir():
            kill_pids(job_dir)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_local_pool_ends_every_escaped_process(
    local_pool: Callable[[str], tuple[LocalManager, Sink, Path]], mode: str, scenario: str
) -> None:
    manager, sink, jobs_dir = local_pool(need_mode(mode))
    assert (manager.cgroup_base is not None) == (mode == "cgroup")
    spec = local_spec(
        jobs_dir,
        "esc",
        ESCAPE_SCRIPT,
        "end" if scenario == "end" else "run",
        execution_duration=2 if scenario == "timeout" else 0,
    )
    sink.watch["esc"] = spec.job_dir
    manager.submit(spec)
    pids = escaped_pids(spec.job_dir)
    if scenario != "end":  # (a job that ends at once may be cleaned up already)
        assert all(alive(p) for p in pids.values())
    if scenario == "abort":
        manager.abort(_job("esc"))
    final = sink.wait_final("esc")
    expected = {"end": Phase.COMPLETED, "timeout": Phase.ERROR, "abort": Phase.ABORTED}
    assert final.phase is expected[scenario], final
    assert sink.alive_at_final["esc"] == []  # gone before the final phase was reported
    assert_all_dead(pids)
    if mode == "cgroup":
        assert not os.path.exists(containment.job_cgroup(manager.cgroup_base or "", "esc"))


def test_old_empty_job_cgroups_are_swept_and_busy_ones_kept(tmp_path: Path) -> None:
    """What a supervisor killed before its job's end leaves: an empty job cgroup."""
    base = containment.cgroup_base(need_mode("cgroup"))
    assert base is not None
    empty = containment.create_cgroup(containment.job_cgroup(base, f"sweep-{os.getpid()}-e"))
    busy = containment.create_cgroup(containment.job_cgroup(base, f"sweep-{os.getpid()}-b"))
    proc = subprocess.Popen([*containment.enter_command(busy), "sleep", "30"])
    try:
        assert wait_for(lambda: containment.cgroup_members(busy) == [proc.pid])
        containment.sweep_cgroups(base, min_age=3600)  # too young: both stay
        assert os.path.isdir(empty) and os.path.isdir(busy)
        containment.sweep_cgroups(base, min_age=0)
        assert not os.path.exists(empty)
        assert os.path.isdir(busy) and containment.cgroup_members(busy) == [proc.pid]
    finally:
        assert containment.release_cgroup(busy)
        proc.wait(timeout=10)
    assert proc.returncode == -9 and not os.path.exists(busy)


# --- the worker runner (what Slurm starts) --------------------------------------------


def run_cli(job_dir: Path, job_cgroup: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), containment.CGROUP_ENV: job_cgroup}
    return subprocess.Popen(
        [sys.executable, "-S", "-P", "-m", "workers.node", str(job_dir), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_runner_ends_every_escaped_process(tmp_path: Path, mode: str, scenario: str) -> None:
    job_cgroup = need_mode(mode)
    spec = local_spec(
        tmp_path,
        "esc",
        ESCAPE_SCRIPT,
        "end" if scenario == "end" else "run",
        execution_duration=2 if scenario == "timeout" else 0,
    )
    proc = run_cli(spec.job_dir, job_cgroup, "--grace", "0.5")
    try:
        pids = escaped_pids(spec.job_dir)
        if scenario == "abort":
            proc.terminate()  # what scancel does to the runner
        _, err = proc.communicate(timeout=30)
        # the status file is written (and the runner exits) only once they are gone
        assert_all_dead(pids)
    finally:
        proc.kill()
        kill_pids(spec.job_dir)
    status = worker_events.read_status(spec.job_dir)
    assert status is not None
    expected = {"end": Phase.COMPLETED, "timeout": Phase.ERROR, "abort": Phase.ABORTED}
    assert status.phase is expected[scenario], (status, err)
    if mode == "subreaper" and scenario == "end":
        assert left_behind(err.decode()) >= len(ESCAPES), err


HOPPER = r"""
"$UWS_PYTHON" -c 'import os, time  # {marker}
log = os.open("hops", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
while True:
    if os.fork():
        os._exit(0)  # the parent goes: the child is re-parented, with a new pid each time
    os.setsid()
    os.write(log, b"x")
    time.sleep(0.005)
' </dev/null >/dev/null 2>&1 &
sleep 0.5
echo done > output.txt
"""


def hunt(marker: str, seconds: float) -> None:
    """Kill what carries ``marker`` among the newest pids (a /proc scan is too slow to
    see a process that changes pid every 5 ms; the newest pids are where it is)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open("/proc/loadavg") as f:
            last = int(f.read().split()[-1])
        for pid in range(max(2, last - 40), last + 3):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        os.kill(pid, 9)
            except OSError:
                continue


def stop_hopping(hops: Path, marker: str) -> None:
    size = -1
    while hops.stat().st_size != size:
        size = hops.stat().st_size
        hunt(marker, 0.3)


def test_the_hopper_outlives_a_process_group_kill(tmp_path: Path) -> None:
    """The control: without containment it hops on after its group was killed."""
    marker = f"uws-hopper-{os.getpid()}-control"
    env = {**os.environ, "UWS_PYTHON": sys.executable}
    argv = ["bash", "-c", HOPPER.replace("{marker}", marker)]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, start_new_session=True)
    hops = tmp_path / "hops"
    try:
        assert proc.wait(timeout=20) == 0
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        at_end = hops.stat().st_size
        assert wait_for(lambda: hops.stat().st_size > at_end, 5)
    finally:
        stop_hopping(hops, marker)


@pytest.mark.parametrize("executor", ["local", "runner"])
@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_a_process_that_keeps_changing_pid_is_caught(
    local_pool: Callable[[str], tuple[LocalManager, Sink, Path]],
    tmp_path: Path,
    executor: str,
    mode: str,
) -> None:
    """A moving target: it forks, its parent exits, again and again (a new pid and a new
    session every 5 ms), noting each hop in ``hops``. Killing a list of pids would always
    be one step behind; after the job's end no hop may follow."""
    job_cgroup = need_mode(mode)
    marker = f"uws-hopper-{os.getpid()}-{executor}-{mode}"
    script = HOPPER.replace("{marker}", marker)
    hops = Path()
    try:
        if executor == "local":
            manager, sink, jobs_dir = local_pool(job_cgroup)
            spec = local_spec(jobs_dir, "hop", script, "end")
            hops = spec.job_dir / "hops"
            manager.submit(spec)
            assert sink.wait_final("hop").phase is Phase.COMPLETED
        else:
            spec = local_spec(tmp_path, "hop", script, "end")
            hops = spec.job_dir / "hops"
            proc = run_cli(spec.job_dir, job_cgroup)
            assert proc.wait(timeout=30) == 0, proc.communicate()
        at_end = hops.stat().st_size
        assert at_end >= 3  # it did hop while the job ran
        time.sleep(0.3)
        assert hops.stat().st_size == at_end, "still hopping after the job's end"
    finally:
        if hops.exists():  # never leave it behind, even when the test failed
            stop_hopping(hops, marker)


REWRITER = r"""
echo original > output.txt
setsid sh -c 'sleep 0.3; for i in $(seq 300); do echo rewritten > output.txt; sleep 0.01; done' \
    </dev/null >/dev/null 2>&1 &
"""


@pytest.mark.parametrize("executor", ["local", "runner"])
@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_a_detached_process_cannot_change_a_collected_result(
    local_pool: Callable[[str], tuple[LocalManager, Sink, Path]],
    tmp_path: Path,
    executor: str,
    mode: str,
) -> None:
    """The job leaves a process that rewrites its result after the job's end: it is
    gone before the result is collected, so what is served stays what was hashed."""
    job_cgroup = need_mode(mode)
    if executor == "local":
        manager, sink, jobs_dir = local_pool(job_cgroup)
        spec = local_spec(jobs_dir, "rw", REWRITER, "end")
        manager.submit(spec)
        final = sink.wait_final("rw")
        results = final.results
    else:
        spec = local_spec(tmp_path, "rw", REWRITER, "end")
        proc = run_cli(spec.job_dir, job_cgroup)
        assert proc.wait(timeout=30) == 0, proc.communicate()
        status = worker_events.read_status(spec.job_dir)
        assert status is not None
        final, results = status, status.results
    assert final.phase is Phase.COMPLETED
    time.sleep(0.6)  # the rewriter would have started by now
    output = spec.job_dir / "output.txt"
    assert output.read_text() == "original\n"
    (result,) = results
    assert result.sha256 == sha256(output.read_bytes()).hexdigest()
    assert output.stat().st_mode & 0o222 == 0


def test_the_reaper_mirrors_its_command_and_leaves_nothing(tmp_path: Path) -> None:
    """The local pool's subreaper (no cgroup): same exit status, same signal."""
    from workers import reaper

    def run(script: str) -> int:
        argv = reaper.command(sys.executable, str(ROOT), 0.5, ["bash", "-c", script])
        return subprocess.run(argv, cwd=tmp_path, timeout=20, check=False).returncode

    assert run("exit 7") == 7
    assert run("kill -TERM $$") == -15
    escape = "(setsid sh -c 'echo $$ > left.pid; exec sleep 300' &)"
    assert run(f"{escape}; until [ -s left.pid ]; do sleep 0.01; done; exit 0") == 0
    pid = int((tmp_path / "left.pid").read_text())
    assert not alive(pid)


# --- Slurm ------------------------------------------------------------------------------


def slurm_ready() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    return "is UP" in ping.stdout


ESCAPE_DEFINITION = JobDefinition(
    "escape_job",
    script=ESCAPE_SCRIPT,
    parameters=[ParameterDef("mode", default="run")],
    generated=[EntityDef("output", default="output.txt", content_type="text/plain")],
)


@pytest.fixture
def slurm_server(tmp_path: Path) -> Iterator[Callable[[str], LiveServer]]:
    servers: list[LiveServer] = []

    def start(job_cgroup: str) -> LiveServer:
        need(slurm_ready(), "Slurm is not running (bash scripts/slurm_start.sh)")
        settings = make_settings(
            tmp_path, manager="slurm", slurm_poll_interval=0.5, job_cgroup=job_cgroup
        )
        defn = ESCAPE_DEFINITION
        defn.execution_duration = 60
        defn.contact_name, defn.contact_email = "tests", "tests@example.org"
        path = settings.job_definitions_dir / f"{defn.name}_vot.xml"
        path.write_bytes(write_votable(defn))
        server = LiveServer(settings)
        server.add_user("alice")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        jobs = server.settings.jobs_dir
        for job_dir in jobs.iterdir() if jobs.is_dir() else []:
            subprocess.run(["scancel", f"--name=uws-{job_dir.name}"], check=False)
            kill_pids(job_dir)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_slurm_ends_every_escaped_process(
    slurm_server: Callable[[str], LiveServer], mode: str, scenario: str
) -> None:
    """On the test cluster (proctrack/linuxproc, which misses re-parented processes)
    the runner's own containment is what ends them."""
    live = slurm_server(need_mode(mode))
    alice = live.client("alice")
    params = {"mode": "end" if scenario == "end" else "run", "PHASE": "RUN"}
    if scenario == "timeout":
        params["EXECUTIONDURATION"] = "3"
    job = alice.create("escape_job", params)
    jdir = live.settings.jobs_dir / job.rsplit("/", 1)[1]
    pids = escaped_pids(jdir, within=60)
    if scenario == "abort":
        assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303
        # ABORTED is recorded at once; the runner then has its grace (< KillWait) to
        # kill the rest and write its status file
        assert wait_for(lambda: (jdir / ".uws" / "status.json").exists(), 30)
    else:
        phase = alice.wait_final(job, timeout=60)
        assert phase == ("COMPLETED" if scenario == "end" else "ERROR"), alice.get(job).text
    assert_all_dead(pids)
    status = worker_events.read_status(jdir)
    assert status is not None
    expected = {"end": Phase.COMPLETED, "timeout": Phase.ERROR, "abort": Phase.ABORTED}
    assert status.phase is expected[scenario], status
    if mode == "subreaper" and scenario == "end":  # the runner found them as its own
        log = (jdir / ".uws" / "slurm.err").read_text()
        assert left_behind(log) >= len(ESCAPES), log


# --- class 6: results that are links, or not files ---------------------------------------


LINK_CASES: dict[str, tuple[str, str]] = {
    # name: (what the script does to output.txt, the reason given)
    "hardlink_outside": ("ln {outside} output.txt", "hard links"),
    "hardlink_other_job": ("ln {other_result} output.txt", "hard links"),
    "symlink_outside": ("ln -s {outside} output.txt", "symbolic link"),
    "symlink_inside": ("echo x > data.txt; ln -s data.txt output.txt", "symbolic link"),
    "fifo": ("mkfifo output.txt", "FIFO"),
    "directory": ("mkdir output.txt", "directory"),
    "symlinked_dir": ("ln -s {outside_dir} sub", "symbolic link"),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_results_that_are_links_or_not_files_are_refused(tmp_path: Path, case: str) -> None:
    """By the worker's collection: the job ends in ERROR saying why, nothing is listed,
    and the file outside is untouched (a FIFO does not block the collection)."""
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    outside.chmod(0o644)
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "output.txt").write_text("outside")
    other = tmp_path / "other" / "result.fits"
    other.parent.mkdir()
    other.write_text("another job's result")
    action, reason = LINK_CASES[case]
    script = action.format(
        outside=outside, other_result=other, outside_dir=tmp_path / "outside_dir"
    )
    default = "sub/output.txt" if case == "symlinked_dir" else "output.txt"
    spec = local_spec(
        tmp_path, "links", script + "\n", "end", generated=[EntityDef("output", default=default)]
    )
    proc = run_cli(spec.job_dir, "off")
    assert proc.wait(timeout=30) == 1, proc.communicate()
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.ERROR
    assert status.results == []
    assert status.error is not None and reason in status.error, status.error
    assert f"result output: {default} refused" in status.error
    assert outside.read_text() == "secret" and outside.stat().st_mode & 0o777 == 0o644
    assert other.stat().st_mode & 0o200  # another job's result is not ours to touch


def test_a_pattern_refuses_links_but_skips_directories(tmp_path: Path) -> None:
    script = "mkdir d.out; echo a > a.out; ln a.out b.out; ln -s a.out c.out\n"
    spec = local_spec(
        tmp_path, "pat", script, "end", generated=[EntityDef("outs", default="*.out")]
    )
    subprocess.run(["bash", "-c", script], cwd=spec.job_dir, check=True)
    results, problems = worker_events.collect_results(spec.job_dir, spec.generated)
    assert results == []  # a.out has a second link (b.out): neither is the job's own
    assert sorted(problems) == [
        "result outs: a.out refused: it has 2 hard links (a result must be a file of its "
        "own: copy a file into the job directory rather than link it)",
        "result outs: b.out refused: it has 2 hard links (a result must be a file of its "
        "own: copy a file into the job directory rather than link it)",
        "result outs: c.out refused: it is a symbolic link",
    ]


def test_a_collected_result_is_read_only_and_hashed_as_served(tmp_path: Path) -> None:
    spec = local_spec(tmp_path, "ro", "echo hello > output.txt\n", "end")
    proc = run_cli(spec.job_dir, "off")
    assert proc.wait(timeout=30) == 0, proc.communicate()
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.COMPLETED
    path = spec.job_dir / "output.txt"
    assert path.stat().st_mode & 0o222 == 0
    if os.geteuid() != 0:  # root may write anyway: then only the mode can be checked
        with pytest.raises(PermissionError):
            path.write_text("changed")
    (result,) = status.results
    assert result.sha256 == sha256(path.read_bytes()).hexdigest()


# --- the service's own check (it does not trust the worker) -------------------------------


def _finish(live: LiveServer, job: str, results: list[Result]) -> None:
    """Report the job's end as a worker would, with these results."""
    job_id = job.rsplit("/", 1)[1]
    event = WorkerEvent(Phase.COMPLETED, results=results, end_time=datetime.now(UTC))
    assert live.service.lifecycle.report(job_id, event)


def _held_job(live: LiveServer) -> tuple[str, Path]:
    """A job the service believes EXECUTING while no manager runs it."""
    alice = live.client("alice")
    job = alice.create("echo_job", {"text": "x"})
    job_id = job.rsplit("/", 1)[1]
    jdir = live.settings.jobs_dir / job_id
    jdir.mkdir(parents=True, exist_ok=True)
    store = live.service.store
    assert store.mark_executing(job_id, Phase.PENDING, datetime.now(UTC).replace(tzinfo=None))
    return job, jdir


def _result(jdir: Path, name: str = "output.txt", data: bytes = b"ok\n") -> Result:
    return Result("output", name, "text/plain", len(data), sha256(data).hexdigest())


@pytest.fixture
def service_live(settings: Any) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.add_user("alice")
    yield server
    server.stop()


def _swap_to_symlink(jdir: Path, tmp: Path) -> None:
    (tmp / "elsewhere.txt").write_text("ok\n")
    (jdir / "output.txt").unlink()
    os.symlink(tmp / "elsewhere.txt", jdir / "output.txt")


def _swap_to_hardlink(jdir: Path, tmp: Path) -> None:
    (tmp / "shadow").write_text("ok\n")
    (jdir / "output.txt").unlink()
    os.link(tmp / "shadow", jdir / "output.txt")


def _swap_content(jdir: Path, tmp: Path) -> None:
    path = jdir / "output.txt"
    path.chmod(0o644)
    path.write_text("changed after collection\n")


def _swap_to_fifo(jdir: Path, tmp: Path) -> None:
    (jdir / "output.txt").unlink()
    os.mkfifo(jdir / "output.txt")


def _swap_to_dir(jdir: Path, tmp: Path) -> None:
    (jdir / "output.txt").unlink()
    (jdir / "output.txt").mkdir()


SWAPS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink": (_swap_to_symlink, "symbolic link"),
    "hardlink": (_swap_to_hardlink, "hard links"),
    "content": (_swap_content, "changed after it was collected"),
    "fifo": (_swap_to_fifo, "FIFO"),
    "directory": (_swap_to_dir, "directory"),
}


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_the_service_checks_results_again_after_collection(
    service_live: LiveServer, tmp_path: Path, swap: str
) -> None:
    """The worker collected ``output.txt`` (a regular file, hashed); then, before the
    service records it, it is swapped (TOCTOU): the service refuses it and the job ends
    in ERROR saying so; no result row points at the swapped file."""
    live = service_live
    job, jdir = _held_job(live)
    (jdir / "output.txt").write_bytes(b"ok\n")
    collected = _result(jdir)
    action, reason = SWAPS[swap]
    action(jdir, tmp_path)
    _finish(live, job, [collected])
    alice = live.client("alice")
    assert alice.phase(job) == "ERROR"
    error = alice.get(job + "/error").text
    assert "refused by the service" in error and reason in error, error
    assert "output" not in alice.get(job + "/results").text.split("<uws:results")[1]


def test_the_service_records_its_own_reading_of_a_good_result(service_live: LiveServer) -> None:
    live = service_live
    job, jdir = _held_job(live)
    (jdir / "output.txt").write_bytes(b"ok\n")
    _finish(live, job, [_result(jdir)])
    alice = live.client("alice")
    assert alice.phase(job) == "COMPLETED"
    assert (jdir / "output.txt").stat().st_mode & 0o222 == 0  # read-only, also here
    served = alice.get(job + "/results/output")
    assert served.status_code == 200 and served.content == b"ok\n"


def test_a_job_whose_cgroup_was_removed_before_it_entered_still_runs_contained() -> None:
    """A sweep (or anything) removing the job's still-empty cgroup between its creation
    and the move: the job makes it again rather than failing with 'cannot enter'."""
    base = containment.cgroup_base(need_mode("cgroup"))
    assert base is not None
    path = containment.create_cgroup(containment.job_cgroup(base, f"gone-{os.getpid()}"))
    os.rmdir(path)  # removed before the job moved in
    proc = subprocess.Popen([*containment.enter_command(path), "sleep", "30"])
    try:
        assert wait_for(lambda: containment.cgroup_members(path) == [proc.pid])
    finally:
        proc.kill()
        proc.wait()
        assert containment.release_cgroup(path)
    assert not os.path.exists(path)
