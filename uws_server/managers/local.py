"""Run jobs on this machine: a bounded pool of slots, a FIFO queue, one reaper thread.

Speed: a job is ``bash -c <wrapper>`` started straight from the calling thread (no
Python interpreter per job); a single reaper thread waits on every job's pidfd at once,
so an exit is seen immediately, and results are collected by a small thread pool.

Robustness: the wrapper (:data:`WRAPPER`) runs ``script.sh`` and writes its exit
status to ``.uws/exit_status``, and ``.uws/local.json`` records the pid with its start
time and boot id. A job that outlives the server therefore still leaves its exit status,
and a restarted server can tell the job's process from a stranger that reused the pid.

Every job runs in its own session, so its process group holds everything it starts;
abort and the execution-duration limit signal the whole group (SIGTERM, then SIGKILL
after ``kill_grace``), and when the wrapper ends whatever is left of the group is
killed while the wrapper's zombie still pins the group id.

What leaves the group (``setsid``, ``nohup``, a double fork) is contained too
(:mod:`workers.containment`): where the machine allows it each job has a cgroup, which
the wrapper enters before it starts the script, and which gets the same signals and is
emptied with ``cgroup.kill`` when the job ends; elsewhere the wrapper runs under a child
subreaper (:mod:`workers.reaper`, one Python start-up per job) that does the same with
every process it inherits. Either way a job is reported final only once none of its
processes is left.

Events go through an ordered outbox delivered outside our lock, so the sink (the
service, which has its own locks) is never called with our lock held, yet a job's
events always arrive in the order they happened.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uws_server.common import PROJECT_ROOT
from uws_server.joblog import job_log
from uws_server.managers.base import JobSink, JobSpec, Manager, load_spec
from uws_server.models import Job, Phase, WorkerEvent
from uws_server.worker_events import (
    JobStatus,
    final_status,
    read_status,
    status_to_event,
    write_status,
)
from workers import containment, reaper
from workers.jobdir import (
    EXIT_STATUS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    UWS_DIR,
    atomic_write,
    prepare_environment,
    prepare_job_dir,
)
from workers.procs import ProcessIdentity, kill_group, spawn_in_session, start_ticks
from workers.progress import ProgressWatcher, progress_path
from workers.results import collect_context
from workers.supervise import exit_of

log = logging.getLogger(__name__)

IDENTITY_FILE = f"{UWS_DIR}/local.json"
# Runs the script as a child so the exit status is recorded even if the server is gone.
WRAPPER = 'bash ./script.sh; rc=$?; printf "%d\\n" "$rc" > .uws/exit_status; exit "$rc"'
# The same, entering the job's cgroup first ($1: its directory), before anything runs
# (made again if something removed it meanwhile, as workers.containment.enter_command).
CGROUP_WRAPPER = (
    'echo $$ >"$1/cgroup.procs" || { mkdir -p "$1" && echo $$ >"$1/cgroup.procs"; } || '
    '{ echo "cannot enter the job cgroup" >&2; exit 125; }; ' + WRAPPER
)
# Seconds the manager waits, after the subreaper's own grace, before it kills the
# subreaper itself (which would let escaped processes go).
REAPER_MARGIN = 2.0
LOST_MESSAGE = "job lost: the server restarted while it ran"
_ADOPTED_POLL = 0.25  # seconds between /proc checks of an adopted job without a pidfd


@dataclass
class _Run:
    """A job holding a slot: our child, or a process adopted after a restart."""

    spec: JobSpec
    identity: ProcessIdentity
    start_time: datetime
    deadline: float | None  # monotonic time the execution duration runs out
    proc: subprocess.Popen[bytes] | None = None  # None when adopted (not our child)
    reason: str | None = None  # "abort" / "timeout" once we started killing it
    kill_at: float | None = None  # when SIGTERM turns into SIGKILL
    pidfd: int | None = None
    pidfd_tried: bool = False  # pidfd_open failed: the reaper polls /proc instead
    cgroup: str | None = None  # the job's cgroup; None: under a subreaper (or adopted)

    @property
    def pid(self) -> int:
        return self.identity.pid


def _now() -> datetime:
    """Naive UTC, like every time the service stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def _deadline(duration: int, elapsed: float = 0.0) -> float | None:
    if not duration or duration <= 0:
        return None
    return time.monotonic() + max(0.0, duration - elapsed)


def read_exit_status(job_dir: Path) -> int | None:
    """The exit status the wrapper recorded, or None (still running, or killed)."""
    try:
        return int((job_dir / EXIT_STATUS_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


class LocalManager(Manager):
    """Runs up to ``settings.local_slots`` jobs at once on this machine."""

    name = "local"
    run_id_key = "pid"

    def __init__(self, sink: JobSink, settings: Any, kill_grace: float = 3.0) -> None:
        super().__init__(sink)
        self.settings = settings
        self.slots = max(1, int(settings.local_slots))
        self.kill_grace = kill_grace
        # Where job cgroups go; None: each job runs under a subreaper instead.
        self.cgroup_base = containment.cgroup_base(str(getattr(settings, "job_cgroup", "")))
        if self.cgroup_base is not None:
            log.info("local pool: each job in its own cgroup under %s", self.cgroup_base)
        else:
            log.info("local pool: no cgroup for jobs here; each job runs under a subreaper")
        self._lock = threading.Lock()
        self._running: dict[str, _Run] = {}
        self._queue: deque[JobSpec] = deque()
        self._outbox: deque[tuple[str, WorkerEvent]] = deque()
        self._drain_lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._reaper: threading.Thread | None = None
        self._finisher: ThreadPoolExecutor | None = None
        # relays $UWS_PROGRESS_FILE of running jobs to the sink (workers/progress.py)
        self.progress = ProgressWatcher(self._relay_progress)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._reaper is not None and self._reaper.is_alive():
                return
            self._stopping = False
            if self.cgroup_base is not None:  # left by supervisors killed before the end
                containment.sweep_cgroups(self.cgroup_base)
            self._finisher = ThreadPoolExecutor(
                max_workers=min(8, self.slots + 1), thread_name_prefix="uws-local-finish"
            )
            self._reaper = threading.Thread(target=self._reap_loop, name="uws-local-reaper")
            self._reaper.daemon = True
            self._reaper.start()

    def stop(self) -> None:
        """Stop our threads; running jobs keep running (a new server adopts them)."""
        with self._lock:
            self._stopping = True
            reaper, finisher = self._reaper, self._finisher
        self._wake()
        if reaper is not None:
            reaper.join()
        if finisher is not None:
            finisher.shutdown(wait=True)
        self.progress.stop()
        with self._lock:
            for run in self._running.values():
                if run.pidfd is not None:
                    os.close(run.pidfd)
                    run.pidfd = None
        self._flush()

    # --- Manager interface -----------------------------------------------------------

    def submit(self, spec: JobSpec) -> None:
        """Start the job now if a slot is free, else queue it (FIFO)."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the local manager is stopped")
            if spec.job_id in self._running or any(q.job_id == spec.job_id for q in self._queue):
                return
            if len(self._running) < self.slots and not self._queue:
                self._launch_locked(spec)
            else:
                self._queue.append(spec)
                self._emit(spec.job_id, WorkerEvent(Phase.QUEUED))
        self._flush()
        self._wake()

    def abort(self, job: Job) -> None:
        """Kill the job's process group (SIGTERM, SIGKILL after the grace period)."""
        with self._lock:
            for queued in self._queue:
                if queued.job_id == job.job_id:
                    self._queue.remove(queued)
                    self._emit(job.job_id, WorkerEvent(Phase.ABORTED, end_time=_now()))
                    break
            else:
                run = self._running.get(job.job_id)
                if run is not None:
                    self._terminate_locked(run, "abort")
                else:
                    self._abort_unknown_locked(job)
        self._flush()
        self._wake()

    def recover(self, jobs: list[Job], specs: dict[str, JobSpec]) -> None:
        """Adopt, finish or re-queue what a previous server process left behind."""
        requeue: list[JobSpec] = []
        for job in sorted(jobs, key=lambda j: j.creation_time):
            if job.manager not in (None, "", self.name):
                continue
            spec = specs.get(job.job_id) or self._spec_from_disk(job)
            if spec is None:
                self._emit_now(job.job_id, WorkerEvent(Phase.ERROR, error=LOST_MESSAGE))
            elif job.phase in (Phase.QUEUED, Phase.HELD) and not self._was_launched(spec):
                requeue.append(spec)
            elif job.phase in (Phase.QUEUED, Phase.HELD):
                # Started just before the crash, before EXECUTING was recorded.
                self._recover_running(job, spec)
            elif job.phase in (Phase.EXECUTING, Phase.SUSPENDED):
                self._recover_running(job, spec)
        for spec in requeue:  # after adoption: adopted jobs hold their slots first
            self.submit(spec)
        self._wake()

    # --- internals: launching and killing ---------------------------------------------

    def _launch_locked(self, spec: JobSpec) -> None:
        """Start the wrapper; on failure the job ends in ERROR instead of holding a slot."""
        job_dir = os.fspath(spec.job_dir)  # strings: no Path objects per launch
        cgroup: str | None = None
        try:
            prepare_job_dir(spec)
            env = prepare_environment(spec)
            if self.cgroup_base is not None:
                cgroup = containment.create_cgroup(
                    containment.job_cgroup(self.cgroup_base, spec.job_id)
                )
                argv = ["bash", "-c", CGROUP_WRAPPER, "uws-job", cgroup]
            else:
                argv = reaper.command(
                    sys.executable, str(PROJECT_ROOT), self.kill_grace,
                    ["bash", "-c", WRAPPER, "uws-job"],
                )  # fmt: skip
            proc = spawn_in_session(
                argv, job_dir, env,
                os.path.join(job_dir, STDOUT_FILE), os.path.join(job_dir, STDERR_FILE),
            )  # fmt: skip
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if cgroup is not None:
                containment.release_cgroup(cgroup)
            job_log(log, spec).exception("cannot start")
            self._emit(spec.job_id, WorkerEvent(Phase.ERROR, error=f"cannot start the job: {exc}"))
            return
        identity = ProcessIdentity.of(proc.pid)
        try:
            atomic_write(
                os.path.join(job_dir, IDENTITY_FILE), json.dumps(identity.to_json()).encode()
            )
        except OSError:
            job_log(log, spec).exception("cannot record its process identity")
        run = _Run(spec, identity, _now(), _deadline(spec.execution_duration), proc=proc)
        run.cgroup = cgroup
        self._running[spec.job_id] = run
        self.progress.watch(spec.job_id, progress_path(job_dir))
        self._emit(
            spec.job_id,
            WorkerEvent(Phase.EXECUTING, external_id=str(proc.pid), start_time=run.start_time),
        )

    def _terminate_locked(self, run: _Run, reason: str) -> None:
        if run.reason is not None:
            return
        run.reason = reason
        if run.proc is not None or run.identity.is_running():
            kill_group(run.pid, signal.SIGTERM)
        grace = self.kill_grace
        if run.cgroup is not None:
            containment.signal_cgroup(run.cgroup, signal.SIGTERM)
        else:  # the subreaper passes SIGTERM on and kills after the same grace itself
            grace += REAPER_MARGIN
        run.kill_at = time.monotonic() + grace

    def _kill_locked(self, run: _Run) -> None:
        """SIGKILL: the group, and the cgroup when there is one."""
        if run.proc is not None or run.identity.is_running():
            kill_group(run.pid, signal.SIGKILL)
        if run.cgroup is not None:
            containment.kill_cgroup(run.cgroup)

    def _abort_unknown_locked(self, job: Job) -> None:
        """Abort a job we do not track (left by an earlier server, not yet recovered)."""
        spec = self._spec_from_disk(job)
        identity = self._identity(job, Path(spec.job_dir)) if spec else None
        if spec is None or identity is None or not identity.is_running():
            return
        run = _Run(spec, identity, job.start_time or _now(), None)
        run.cgroup = self._existing_cgroup(job.job_id)
        self._running[job.job_id] = run
        self._terminate_locked(run, "abort")

    def _spec_from_disk(self, job: Job) -> JobSpec | None:
        job_dir = Path(self.settings.jobs_dir) / job.job_id
        try:
            return load_spec(job_dir)
        except (OSError, ValueError, TypeError, KeyError):
            if not job_dir.is_dir():
                return None
            return JobSpec(job.job_id, job.jobname, job_dir, "", dict(job.parameters))

    def _existing_cgroup(self, job_id: str) -> str | None:
        """The cgroup a previous server made for this job, if it is still there."""
        if self.cgroup_base is None:
            return None
        path = containment.job_cgroup(self.cgroup_base, job_id)
        return path if os.path.isdir(path) else None

    def _release_cgroup(self, run: _Run) -> None:
        """Kill what is left in the job's cgroup and wait until it is gone."""
        if run.cgroup is not None and not containment.release_cgroup(run.cgroup):
            job_log(log, run.spec).error("processes survive SIGKILL in %s", run.cgroup)

    @staticmethod
    def _was_launched(spec: JobSpec) -> bool:
        return (Path(spec.job_dir) / IDENTITY_FILE).exists()

    @staticmethod
    def _identity(job: Job, job_dir: Path) -> ProcessIdentity | None:
        try:
            identity = ProcessIdentity.from_json(json.loads((job_dir / IDENTITY_FILE).read_text()))
        except (OSError, ValueError, AttributeError):
            return None
        if job.external_id and job.external_id != str(identity.pid):
            return None
        return identity

    def _recover_running(self, job: Job, spec: JobSpec) -> None:
        job_dir = Path(spec.job_dir)
        status = read_status(job_dir)
        if status is not None:  # finished; the final report was lost with the old server
            cgroup = self._existing_cgroup(job.job_id)
            if cgroup is not None:
                containment.release_cgroup(cgroup)
            self._emit_now(job.job_id, status_to_event(status, job.external_id))
            return
        identity = self._identity(job, job_dir)
        if identity is not None and identity.is_running():
            started = job.start_time or _now()
            if started.tzinfo is not None:
                started = started.astimezone(UTC).replace(tzinfo=None)
            elapsed = (_now() - started).total_seconds()
            run = _Run(spec, identity, started, _deadline(spec.execution_duration, elapsed))
            run.cgroup = self._existing_cgroup(job.job_id)
            with self._lock:
                self._running[job.job_id] = run
            job_log(log, job).info("adopted running process %d", identity.pid)
            return
        if identity is not None and start_ticks(identity.pid) in (None, identity.start_ticks):
            kill_group(identity.pid, signal.SIGKILL)  # leftovers of a killed wrapper
        cgroup = self._existing_cgroup(job.job_id)
        if cgroup is not None and not containment.release_cgroup(cgroup):
            job_log(log, job).error("processes survive SIGKILL in %s", cgroup)
        code = read_exit_status(job_dir)
        if code is not None:
            status = final_status(
                spec,
                exit_code=code,
                signal=None,
                reason=None,
                start_time=job.start_time,
                end_time=_now(),
            )
        else:
            status = JobStatus(
                Phase.ERROR,
                error=LOST_MESSAGE,
                start_time=job.start_time,
                end_time=_now(),
                context=collect_context(job_dir),
            )
        write_status(job_dir, status)
        self._emit_now(job.job_id, status_to_event(status, job.external_id))

    # --- internals: the reaper ---------------------------------------------------------

    def _reap_loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        while True:
            with self._lock:
                if self._stopping:
                    break
                runs = list(self._running.values())
                now = time.monotonic()
                for run in runs:
                    if run.reason is None and run.deadline is not None and now >= run.deadline:
                        self._terminate_locked(run, "timeout")
                    if run.kill_at is not None and now >= run.kill_at:
                        self._kill_locked(run)
                        run.kill_at = None
            timeout: float | None = None
            for run in runs:
                if not run.pidfd_tried:
                    self._open_pidfd(run, poller)
                ended = self._check_exit(run)
                if ended is not None:
                    self._on_exit(run, ended, poller)
                    continue
                for t in (run.kill_at, run.deadline if run.reason is None else None):
                    if t is not None:
                        timeout = t - now if timeout is None else min(timeout, t - now)
                if run.pidfd is None:
                    timeout = _ADOPTED_POLL if timeout is None else min(timeout, _ADOPTED_POLL)
            if self._start_queued():
                continue  # new jobs have no pidfd yet: register them before sleeping
            timeout_ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
            poller.poll(timeout_ms)
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _open_pidfd(self, run: _Run, poller: select.poll) -> None:
        run.pidfd_tried = True
        try:
            fd = os.pidfd_open(run.pid)
        except OSError:
            return  # gone already, or an old kernel: the reaper polls instead
        # Opened after the identity check could race with pid reuse: check again now
        # that the pidfd pins the process.
        if run.proc is None and not run.identity.is_running():
            os.close(fd)
            return
        run.pidfd = fd
        poller.register(fd, select.POLLIN)

    def _check_exit(self, run: _Run) -> tuple[int | None, int | None] | None:
        """(exit code, signal) once the job's main process ended, else None."""
        if run.proc is not None:
            try:
                res = os.waitid(os.P_PID, run.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return read_exit_status(Path(run.spec.job_dir)), None
            return None if res is None else exit_of(res)
        if run.identity.is_running():
            return None
        return read_exit_status(Path(run.spec.job_dir)), None

    def _on_exit(
        self, run: _Run, ended: tuple[int | None, int | None], poller: select.poll
    ) -> None:
        end_time = _now()
        with self._lock:
            self._running.pop(run.spec.job_id, None)
        self.progress.unwatch(run.spec.job_id)  # its last value, before its end
        if run.pidfd is not None:
            poller.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None
        if run.proc is not None:
            kill_group(run.pid, signal.SIGKILL)  # the zombie still pins the group id
            run.proc.wait()
        elif start_ticks(run.pid) in (None, run.identity.start_ticks):
            kill_group(run.pid, signal.SIGKILL)
        if run.cgroup is not None:
            containment.kill_cgroup(run.cgroup)  # what left the group; waited for below
        finisher = self._finisher
        if finisher is None:
            self._finish(run, ended, end_time)
        else:
            finisher.submit(self._finish, run, ended, end_time)

    def _finish(self, run: _Run, ended: tuple[int | None, int | None], end_time: datetime) -> None:
        """Collect results, write the status file, then report (in that order)."""
        exit_code, sig = ended
        spec = run.spec
        self._release_cgroup(run)  # none of the job's processes may outlive its end
        try:
            status = final_status(
                spec,
                exit_code=exit_code,
                signal=sig,
                reason=run.reason,
                start_time=run.start_time,
                end_time=end_time,
            )
            write_status(spec.job_dir, status)
            event = status_to_event(status, str(run.pid))
        except Exception as exc:  # the job must end somewhere, never hang in EXECUTING
            if not Path(spec.job_dir).exists():  # deleted while it ran: nothing to collect
                job_log(log, spec).info("its directory was removed while it ran")
            else:
                job_log(log, spec).exception("cannot finish")
            event = WorkerEvent(Phase.ERROR, error=f"cannot collect the job's results: {exc}")
        self._emit_now(spec.job_id, event)

    def _start_queued(self) -> bool:
        """Fill free slots from the queue; True if a job was started."""
        started = False
        with self._lock:
            while self._queue and len(self._running) < self.slots and not self._stopping:
                self._launch_locked(self._queue.popleft())
                started = True
        self._flush()
        return started

    # --- internals: ordered event delivery --------------------------------------------

    def _emit(self, job_id: str, event: WorkerEvent) -> None:
        """Queue an event (call with the lock held); :meth:`_flush` delivers it."""
        self._outbox.append((job_id, event))

    def _emit_now(self, job_id: str, event: WorkerEvent) -> None:
        with self._lock:
            self._emit(job_id, event)
        self._flush()

    def _flush(self) -> None:
        """Deliver queued events in order, one deliverer at a time, never under our lock."""
        while True:
            if not self._drain_lock.acquire(blocking=False):
                return  # the current deliverer will pick ours up
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        job_id, event = self._outbox.popleft()
                    try:
                        self.sink.report(job_id, event)
                    except Exception:
                        job_log(log, job_id).exception("the sink refused %s", event.phase)
            finally:
                self._drain_lock.release()
            with self._lock:
                if not self._outbox:
                    return

    def _relay_progress(self, job_id: str, progress: dict[str, object]) -> None:
        report = getattr(self.sink, "report_progress", None)
        if report is not None:
            report(job_id, progress)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already awake

    def running_jobs(self) -> list[str]:
        """Ids of the jobs holding a slot (for tests and the admin page)."""
        with self._lock:
            return list(self._running)

    def queued_jobs(self) -> list[str]:
        with self._lock:
            return [s.job_id for s in self._queue]
