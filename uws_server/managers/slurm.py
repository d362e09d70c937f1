"""Run jobs on a Slurm cluster: ``sbatch`` to submit, one batched ``squeue`` poll, ``scancel``.

Submission: each job is one ``sbatch --parsable`` of a short batch script that
``exec``-s the worker runner (``python -S -m workers.node <job dir>``, the same job rules
as everywhere, see :mod:`workers.node`) in the job's directory on the shared file system.
The callback token travels in the environment of the sbatch process (``--export=ALL``),
never on a command line nor in a file of the job directory (``--export=ALL,VAR=value``
would also make Slurm launch each job several times more slowly); the runner takes it out of its
own environment before the script starts. The Slurm id is recorded in
``.uws/slurm.json`` at once, because the service keeps an external id only with a phase
change, and a restarted server must find jobs still pending in Slurm.

Two paths report, both into the sink; the service's compare-and-set phase rules make
duplicates and stale events harmless, so they may race:

* the runner's HTTP callbacks (EXECUTING, then the final event with results): the
  fast path, independent of any polling;
* one ``squeue`` call per ``slurm_poll_interval`` for *all* active jobs (not one per
  job), which sees what the runner cannot tell: pending, started, killed, cancelled,
  timed out, or forgotten by Slurm.

A job's outcome is settled, in order of trust, from the runner's ``.uws/status.json``
(true results, hashes and messages), then Slurm's final state (squeue, or the jobcomp
file once squeue forgot it), and a job nobody knows any more ends in ERROR saying so:
never stuck in EXECUTING. An outcome taken from Slurm is written to the status file
before it is reported: Slurm forgets finished jobs after MinJobAge and there is no
sacct without slurmdbd, so the first sight is persisted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uws_server.common import PROJECT_ROOT
from uws_server.jobdef import JobDefinition
from uws_server.joblog import job_log
from uws_server.managers.base import JobSink, JobSpec, Manager, load_spec
from uws_server.managers.slurm_cli import (
    ABORTED_STATES,
    ERROR_STATES,
    HOPELESS_REASONS,
    SUBMIT_RETRY_DELAYS,
    SlurmCLI,
    SlurmError,
    SlurmJob,
    batch_script,
    ending_message,
    job_name,
    runner_grace,
    time_limit,
)
from uws_server.managers.slurm_options import option_argv
from uws_server.models import Job, Phase, WorkerEvent
from uws_server.worker_events import JobStatus, read_status, status_to_event, write_status
from workers.containment import CGROUP_ENV
from workers.jobdir import UWS_DIR, atomic_write, base_environment, read_private
from workers.node import TOKEN_ENV

log = logging.getLogger(__name__)

RECORD_FILE = f"{UWS_DIR}/slurm.json"  # {"slurm_id": "123", "name": "uws-<job id>"}
SLURM_STDOUT = f"{UWS_DIR}/slurm.out"  # the runner's own output (the script has its logs)
SLURM_STDERR = f"{UWS_DIR}/slurm.err"
# A runner that exited by itself wrote its status file first; a shared file system may
# show the file a little after Slurm shows the end. Wait that long before giving up.
STATUS_GRACE = 5.0
_TRANSIENT = ("Unable to contact", "timed out", "temporarily", "Connection refused", "Zero Bytes")


@dataclass
class _Tracked:
    """An active job: its spec, its Slurm id and what this manager last reported."""

    spec: JobSpec
    slurm_id: str
    reported: Phase
    submitted: datetime | None = None  # None for jobs adopted after a restart
    aborting: bool = False
    ended_at: float | None = None  # monotonic time Slurm showed an end without status file


def _now() -> datetime:
    """Naive UTC, like every time the service stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def compile_runner() -> None:
    """Write the bytecode of ``workers/`` now, once, for every runner to load.

    A runner compiles what has no valid ``__pycache__`` entry, each time when it may
    not write one (``PYTHONDONTWRITEBYTECODE``, a read-only checkout): as much CPU a
    job as the rest of the runner (docs/benchmarks.md, "Worker runner").
    """
    import compileall

    try:
        compileall.compile_dir(PROJECT_ROOT / "workers", quiet=2, force=False)
    except OSError as exc:  # a read-only checkout: runners compile for themselves
        log.warning("cannot write the worker runner's bytecode: %s", exc)


def _is_transient(exc: SlurmError) -> bool:
    return any(word in str(exc) for word in _TRANSIENT)


class SlurmManager(Manager):
    """Submits to Slurm, polls it in one batch, and settles each job's final phase."""

    name = "slurm"
    remote = True  # the runner on a node reports through the HTTP callback
    run_id_key = "slurm_job_id"

    def __init__(self, sink: JobSink, settings: Any, cli: SlurmCLI | None = None) -> None:
        super().__init__(sink)
        self.settings = settings
        self.cli = cli or SlurmCLI()
        self.poll_interval = max(0.05, float(settings.slurm_poll_interval))
        self._lock = threading.Lock()
        self._jobs: dict[str, _Tracked] = {}
        self._submitting: dict[str, bool] = {}  # job id -> abort requested meanwhile
        self._poll_lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._poller: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return
        compile_runner()
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll_loop, name="uws-slurm-poll")
        self._poller.daemon = True
        self._poller.start()

    def stop(self) -> None:
        """Stop polling; Slurm jobs keep running (a new server re-adopts them)."""
        self._stop.set()
        self._kick.set()
        if self._poller is not None:  # a poll stuck on a slow controller is not waited for
            self._poller.join(timeout=5)
            self._poller = None

    # --- Manager interface -----------------------------------------------------------

    def submit(self, spec: JobSpec) -> None:
        """``sbatch`` the runner for this job; report QUEUED with the Slurm id."""
        with self._lock:
            if spec.job_id in self._jobs or spec.job_id in self._submitting:
                return
            self._submitting[spec.job_id] = False
        try:
            slurm_id = self._sbatch(spec)
            self._write_record(Path(spec.job_dir), spec.job_id, slurm_id)
        finally:
            with self._lock:
                aborted = self._submitting.pop(spec.job_id, False)
        with self._lock:
            self._jobs[spec.job_id] = _Tracked(
                spec, slurm_id, Phase.QUEUED, submitted=_now(), aborting=aborted
            )
        if aborted:  # ABORT arrived while sbatch ran: the job must not run
            self._cancel(slurm_id, spec.job_id)
            return
        self._report(spec.job_id, WorkerEvent(Phase.QUEUED, external_id=slurm_id))

    def abort(self, job: Job) -> None:
        """``scancel`` the job (restricted to its name); the poller confirms the end."""
        with self._lock:
            if job.job_id in self._submitting:
                self._submitting[job.job_id] = True
                return
            tracked = self._jobs.get(job.job_id)
            if tracked is not None:
                tracked.aborting = True
        slurm_id = (
            tracked.slurm_id
            if tracked is not None
            else job.external_id or self._read_record(self._job_dir(job.job_id))
        )
        self._cancel(slurm_id, job.job_id)

    def recover(self, jobs: list[Job], specs: dict[str, JobSpec]) -> None:
        """Re-adopt jobs a previous server left active, by their Slurm ids.

        The first poll (right away) settles them: status file first, then squeue. A job
        with no Slurm id was never submitted (the server stopped in between): it is
        submitted now, without callbacks since its token died with the old server.
        """
        unsubmitted: list[tuple[Job, JobSpec]] = []
        for job in jobs:
            if job.manager not in (None, "", self.name):
                continue
            spec = specs.get(job.job_id) or self._spec_from_disk(job)
            if spec is None:
                self._report(job.job_id, WorkerEvent(Phase.ERROR, error="job lost on restart"))
                continue
            slurm_id = job.external_id or self._read_record(Path(spec.job_dir))
            if slurm_id:
                with self._lock:
                    self._jobs[job.job_id] = _Tracked(spec, slurm_id, job.phase)
            else:
                unsubmitted.append((job, spec))
        if unsubmitted:
            self._recover_unsubmitted(unsubmitted)
        log.info("slurm: %d job(s) re-adopted", len(self._jobs))
        self._kick.set()

    def _recover_unsubmitted(self, pairs: list[tuple[Job, JobSpec]]) -> None:
        try:  # submitted just before the crash, before the record was written?
            found = self.cli.query_names(job_name(job.job_id) for job, _ in pairs)
        except SlurmError:
            found = {}
        for job, spec in pairs:
            known = found.get(job_name(job.job_id))
            if known is not None:
                self._write_record(Path(spec.job_dir), job.job_id, known.slurm_id)
                with self._lock:
                    self._jobs[job.job_id] = _Tracked(spec, known.slurm_id, job.phase)
            elif read_status(spec.job_dir) is not None or job.phase is not Phase.QUEUED:
                status = read_status(spec.job_dir)
                event = (
                    status_to_event(status)
                    if status is not None
                    else WorkerEvent(Phase.ERROR, error="job lost on restart: no Slurm job id")
                )
                self._report(job.job_id, event)
            else:
                try:
                    self.submit(replace(spec, callback_url="", callback_token=""))
                except (SlurmError, OSError) as exc:
                    error = f"could not submit after a restart: {exc}"
                    self._report(job.job_id, WorkerEvent(Phase.ERROR, error=error))

    # --- submission ------------------------------------------------------------------

    def _job_dir(self, job_id: str) -> Path:
        return Path(self.settings.jobs_dir) / job_id

    def worker_dir(self, spec: JobSpec) -> Path:
        """The job directory as the worker nodes see it (``slurm_shared_dir``)."""
        job_dir = Path(spec.job_dir)
        try:
            return Path(self.settings.slurm_shared_dir) / job_dir.relative_to(
                Path(self.settings.jobs_dir)
            )
        except ValueError:
            return job_dir

    def options_for(self, defn: JobDefinition) -> dict[str, Any]:
        """The definition's ``#SBATCH`` options (checked when it was saved)."""
        return {"sbatch": list(defn.sbatch_options)} if defn.sbatch_options else {}

    def sbatch_args(self, spec: JobSpec) -> list[str]:
        """Site settings, then the definition's options, then ours, which win (sbatch
        keeps the last value of an option), so nothing can redirect or rename the job.
        """
        args: list[str] = []
        if self.settings.slurm_partition:
            args.append(f"--partition={self.settings.slurm_partition}")
        if self.settings.slurm_account:
            args.append(f"--account={self.settings.slurm_account}")
        for line in spec.manager_options.get("sbatch", []):
            args.extend(option_argv(line))
        wdir = self.worker_dir(spec)
        args += [
            f"--job-name={job_name(spec.job_id)}",
            f"--chdir={wdir}",
            f"--output={wdir / SLURM_STDOUT}",
            f"--error={wdir / SLURM_STDERR}",
            "--export=ALL",
        ]
        limit = time_limit(spec.execution_duration)
        if limit is not None:
            args.append(f"--time={limit}")
        return args

    def sbatch_environment(self, spec: JobSpec) -> dict[str, str]:
        """What sbatch exports to the job: the server's whitelisted variables (never its
        secrets), the import path of ``workers``, and the job's callback token."""
        env = base_environment(dict(os.environ))
        # Absolute entries only: an empty or relative one would mean the job directory.
        path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(p)]
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *path])
        if spec.callback_token:
            env[TOKEN_ENV] = spec.callback_token
        # How the runner contains the job on its node (a cgroup or a subreaper); with
        # proctrack/cgroup Slurm itself also ends every process of the job.
        env[CGROUP_ENV] = str(getattr(self.settings, "job_cgroup", "") or "auto")
        return env

    def _sbatch(self, spec: JobSpec) -> str:
        args = self.sbatch_args(spec)
        env = self.sbatch_environment(spec)
        grace = runner_grace(self.cli.kill_wait())
        script = batch_script(spec.python or sys.executable, str(self.worker_dir(spec)), grace)
        error: SlurmError | None = None
        for delay in SUBMIT_RETRY_DELAYS:
            if error is not None:
                time.sleep(delay)
                try:  # the failed attempt may have reached the controller after all
                    found = self.cli.query_names([job_name(spec.job_id)])
                except SlurmError:
                    found = {}
                if job_name(spec.job_id) in found:
                    return found[job_name(spec.job_id)].slurm_id
            try:
                return self.cli.submit(args, script, env)
            except SlurmError as exc:
                error = exc
                if not _is_transient(exc):
                    break
                job_log(log, spec).warning("sbatch failed, retrying: %s", exc)
        assert error is not None
        raise error

    @staticmethod
    def _write_record(job_dir: Path, job_id: str, slurm_id: str) -> None:
        data = {"slurm_id": slurm_id, "name": job_name(job_id)}
        try:
            atomic_write(job_dir / RECORD_FILE, json.dumps(data).encode())
        except OSError:
            job_log(log, job_id).exception("cannot record Slurm id %s", slurm_id)

    @staticmethod
    def _read_record(job_dir: Path) -> str | None:
        """The recorded Slurm id; the job could rewrite the file, so the poller still
        checks that Slurm's job of that id carries this job's name."""
        raw = read_private(job_dir / RECORD_FILE, 4096)
        try:
            slurm_id = str(json.loads(raw or b"{}").get("slurm_id") or "")
        except (ValueError, AttributeError):
            return None
        return slurm_id if slurm_id.isdigit() else None

    def _spec_from_disk(self, job: Job) -> JobSpec | None:
        try:
            return load_spec(self._job_dir(job.job_id))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _cancel(self, slurm_id: str | None, job_id: str) -> None:
        try:
            self.cli.cancel(slurm_id, job_name(job_id))
        except SlurmError as exc:  # the poller tries again while the job is active
            job_log(log, job_id).warning("scancel failed: %s", exc)

    # --- polling ---------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.poll_interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            try:
                self.poll_once()
            except Exception:
                log.exception("slurm poll failed")

    def poll_once(self) -> None:
        """One ``squeue`` for every active job, then settle what changed."""
        with self._poll_lock:
            with self._lock:
                tracked = list(self._jobs.values())
            if not tracked:
                return
            try:
                known = self.cli.query(t.slurm_id for t in tracked)
            except SlurmError as exc:  # the controller is away: ask again next time
                log.warning("slurm poll: %s", exc)
                return
            missing = [t.slurm_id for t in tracked if t.slurm_id not in known]
            if missing:
                known.update(self.cli.completed(missing))
            now = time.monotonic()
            for t in tracked:
                slurm = known.get(t.slurm_id)
                if slurm is not None and slurm.name != job_name(t.spec.job_id):
                    # not ours (a rewritten record, a reset controller): never trust it
                    slurm = SlurmJob(t.slurm_id, "", name=slurm.name)
                self._update(t, slurm, now)

    def _update(self, t: _Tracked, slurm: SlurmJob | None, now: float) -> None:
        job_id = t.spec.job_id
        if slurm is None or slurm.is_final or not slurm.state:
            event = self._final_event(t, slurm, now)
            if event is not None:
                with self._lock:
                    self._jobs.pop(job_id, None)
                self._report(job_id, event)
            return
        if t.aborting:
            if slurm.state != "COMPLETING":
                self._cancel(t.slurm_id, job_id)
            return
        phase = slurm.phase
        status = read_status(t.spec.job_dir) if phase is Phase.EXECUTING else None
        if status is not None and status.phase in (Phase.COMPLETED, Phase.ERROR):
            # The runner is done but still retrying its final callback (the server was
            # down): the status file is final, no need to wait for the Slurm job's end.
            self._settle(t, status, persist=False)
            return
        if phase is Phase.QUEUED and slurm.reason in HOPELESS_REASONS:
            self._cancel(t.slurm_id, job_id)
            error = f"Slurm cannot run this job: pending reason {slurm.reason}"
            self._settle(t, JobStatus(Phase.ERROR, error=error, end_time=_now()))
            return
        if phase is not t.reported:
            t.reported = phase
            start = slurm.start_time if phase is Phase.EXECUTING else None
            if start is not None and t.submitted is not None:
                start = max(start, t.submitted)  # Slurm's times have whole seconds
            self._report(job_id, WorkerEvent(phase, external_id=t.slurm_id, start_time=start))

    def _final_event(self, t: _Tracked, slurm: SlurmJob | None, now: float) -> WorkerEvent | None:
        """The final event from the status file, else from Slurm; None: wait a little."""
        job_dir = Path(t.spec.job_dir)
        status = read_status(job_dir)
        if status is not None:
            if (
                status.phase is Phase.ABORTED
                and not t.aborting
                and slurm is not None
                and slurm.state in ERROR_STATES
            ):  # Slurm, not a client, stopped the runner (time limit, node failure...)
                status = replace(
                    status, phase=Phase.ERROR, error=f"{self._message(t, slurm)}; {status.error}"
                )
                self._persist(job_dir, status)
            return status_to_event(status, t.slurm_id)
        if slurm is not None and slurm.signal is None and slurm.state in ("COMPLETED", "FAILED"):
            if t.ended_at is None:
                t.ended_at = now
            if now - t.ended_at < STATUS_GRACE:
                return None
        phase = (
            Phase.ABORTED if slurm is not None and slurm.state in ABORTED_STATES else Phase.ERROR
        )
        status = JobStatus(
            phase,
            exit_code=slurm.exit_code if slurm else None,
            signal=slurm.signal if slurm else None,
            error=self._message(t, slurm),
            start_time=slurm.start_time if slurm else None,
            end_time=_now(),
            context={self.run_id_key: t.slurm_id, "slurm_state": slurm.state if slurm else ""},
        )
        self._persist(job_dir, status)
        return status_to_event(status, t.slurm_id)

    def _settle(self, t: _Tracked, status: JobStatus, persist: bool = True) -> None:
        if persist:
            self._persist(Path(t.spec.job_dir), status)
        with self._lock:
            self._jobs.pop(t.spec.job_id, None)
        self._report(t.spec.job_id, status_to_event(status, t.slurm_id))

    @staticmethod
    def _persist(job_dir: Path, status: JobStatus) -> None:
        try:
            write_status(job_dir, status)
        except OSError:  # deleted meanwhile: the report still ends the job
            job_log(log, job_dir.name).warning("cannot write the status file in %s", job_dir)

    def _message(self, t: _Tracked, slurm: SlurmJob | None) -> str:
        tail = ""
        if slurm is not None and slurm.exit_code:  # the runner's own error, if any
            raw = read_private(Path(t.spec.job_dir) / SLURM_STDERR, 1 << 20) or b""
            lines = [ln.strip() for ln in raw[-4096:].decode("utf-8", "replace").splitlines()]
            tail = next((ln for ln in reversed(lines) if ln), "")[:300]
        return ending_message(t.slurm_id, slurm, t.spec.execution_duration, t.aborting, tail)

    # --- reporting -------------------------------------------------------------------

    def _report(self, job_id: str, event: WorkerEvent) -> None:
        """Hand an event to the sink, never under our lock (the service has its own)."""
        try:
            self.sink.report(job_id, event)
        except Exception:
            job_log(log, job_id).exception("the sink refused %s", event.phase)

    def active_jobs(self) -> dict[str, str]:
        """``{job id: Slurm id}`` of the jobs being watched (for tests and the admin)."""
        with self._lock:
            return {job_id: t.slurm_id for job_id, t in self._jobs.items()}
