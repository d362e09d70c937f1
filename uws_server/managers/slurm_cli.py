"""Slurm through its command-line tools: sbatch, squeue, scancel (and the jobcomp file).

Why the CLI: pyslurm does not build against Debian's Slurm 22.05 and is tied to one
Slurm version; slurmrestd refuses root and needs JWT set up. The tools are stable across
versions and cost a few milliseconds a call (see ``shared/notes/slurm.md``).

What this module knows about Slurm, so that :mod:`uws_server.managers.slurm` only deals
with jobs: how a state maps to a UWS phase, how a duration becomes ``--time``, how an
operator's option line becomes argv, how ``squeue`` output is parsed, and the traps
found here (``squeue -j`` hides finished jobs unless ``-t all``; a lone unknown id makes
squeue exit 1 while a list of ids just omits the unknown ones; ``scancel`` of an
unknown id exits 0; ``exit_code`` is a raw wait status).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from uws_server.models import Phase
from workers.procs import signal_name

log = logging.getLogger(__name__)

QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
ABORTED_STATES = frozenset({"CANCELLED", "REVOKED"})
ERROR_STATES = frozenset(
    {
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "SPECIAL_EXIT",
    }
)
FINAL_STATES = ABORTED_STATES | ERROR_STATES | {"COMPLETED"}
# Pending reasons that no amount of waiting resolves: the job would sit QUEUED forever.
HOPELESS_REASONS = frozenset(
    {
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "InvalidAccount",
        "InvalidQOS",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "BadConstraints",
        "DependencyNeverSatisfied",
    }
)
# One line per job; "|" never occurs in our job names nor in Slurm's states and reasons.
SQUEUE_FIELDS = "JobID:|,State:|,Reason:|,exit_code:|,Name:|,StartTime:|"
SUBMIT_RETRY_DELAYS = (0.0, 0.5, 1.5)  # pauses before each sbatch attempt
TIMEOUT = 30.0  # seconds for one CLI call: a stuck controller must not stall the poller
_IDS_PER_CALL = 2000  # keeps the command line far below ARG_MAX


class SlurmError(RuntimeError):
    """A Slurm command failed (controller unreachable, job refused...)."""


def phase_of(state: str) -> Phase:
    """The UWS phase for a Slurm job state (unknown states count as still running)."""
    state = state.split()[0].rstrip("+") if state else ""
    if state in QUEUED_STATES:
        return Phase.QUEUED
    if state == "COMPLETED":
        return Phase.COMPLETED
    if state in ABORTED_STATES:
        return Phase.ABORTED
    if state in ERROR_STATES:
        return Phase.ERROR
    return Phase.EXECUTING


def job_name(job_id: str) -> str:
    """The Slurm job name of a UWS job: how a Slurm id is checked to be really ours."""
    return f"uws-{job_id}"


def time_limit(seconds: int) -> str | None:
    """``--time`` in whole minutes, rounded up (at least 1); None for no limit (0).

    The runner enforces the exact number of seconds itself, so Slurm's limit only
    catches a runner that could not stop the job: both limits agree, Slurm's is never
    the shorter.
    """
    if not seconds or seconds <= 0:
        return None
    return str(max(1, math.ceil(seconds / 60)))


def wait_status(raw: str) -> tuple[int | None, int | None]:
    """(exit code, signal) from squeue's ``exit_code`` (a raw wait status)."""
    try:
        status = int(raw)
    except ValueError:
        return None, None
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, None


def slurm_time(text: str) -> datetime | None:
    """A Slurm timestamp (the controller's local time) as naive UTC, or None."""
    try:
        return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
    except ValueError:
        return None  # "N/A", "Unknown"


@dataclass
class SlurmJob:
    """One Slurm job as squeue (or the jobcomp file) last described it."""

    slurm_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    name: str = ""
    start_time: datetime | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """Parse ``squeue -O`` output in :data:`SQUEUE_FIELDS` order."""
    jobs: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 6 or not parts[0]:
            continue
        code, sig = wait_status(parts[3])
        jobs[parts[0]] = SlurmJob(
            slurm_id=parts[0],
            state=parts[1].split()[0] if parts[1] else "",
            reason="" if parts[2] in ("None", "(null)") else parts[2],
            exit_code=code,
            signal=sig,
            name=parts[4],
            start_time=slurm_time(parts[5]),
        )
    return jobs


def parse_jobcomp_line(line: str) -> SlurmJob | None:
    """A ``jobcomp/filetxt`` line (``JobId=.. Name=.. JobState=.. ExitCode=code:sig``)."""
    fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
    if "JobId" not in fields or "JobState" not in fields:
        return None
    code_text, _, sig_text = fields.get("ExitCode", "").partition(":")
    sig = int(sig_text) if sig_text.isdigit() and int(sig_text) else None
    code = int(code_text) if code_text.isdigit() and sig is None else None
    return SlurmJob(
        slurm_id=fields["JobId"],
        state=fields["JobState"].split()[0],
        exit_code=code,
        signal=sig,
        name=fields.get("Name", ""),
        start_time=slurm_time(fields.get("StartTime", "")),
    )


class SlurmCLI:
    """The four commands the manager needs, each with a timeout and parsed output."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._jobcomp: Path | None | bool = False  # False: not looked up yet
        self._config: dict[str, str] | None = None

    def _run(
        self, tool: str, args: list[str], *, stdin: bytes | None = None, env: dict | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        exe = shutil.which(tool) or tool
        try:
            return subprocess.run(
                [exe, *args],
                input=stdin,
                capture_output=True,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{tool}: {exc}") from exc

    @staticmethod
    def _error(proc: subprocess.CompletedProcess[bytes]) -> str:
        text = (proc.stderr or proc.stdout or b"").decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit status {proc.returncode}"

    def submit(self, args: list[str], script: str, env: dict[str, str]) -> str:
        """``sbatch --parsable`` with the batch script on stdin; the Slurm job id."""
        proc = self._run("sbatch", ["--parsable", *args], stdin=script.encode(), env=env)
        out = proc.stdout.decode("utf-8", "replace").strip()
        slurm_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if proc.returncode != 0 or not slurm_id.isdigit():
            raise SlurmError(f"sbatch: {self._error(proc)}")
        return slurm_id

    def query(self, slurm_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """Every listed job Slurm still knows, finished ones included, in one call per
        :data:`_IDS_PER_CALL` ids. Ids it forgot are simply absent. Raises
        :class:`SlurmError` when the controller cannot be asked.
        """
        ids = sorted(set(slurm_ids), key=lambda i: (len(i), i))
        jobs: dict[str, SlurmJob] = {}
        for k in range(0, len(ids), _IDS_PER_CALL):
            chunk = ",".join(ids[k : k + _IDS_PER_CALL])
            jobs.update(self._squeue(["-j", chunk]))
        return jobs

    def query_names(self, names: Iterable[str]) -> dict[str, SlurmJob]:
        """The jobs with these names (``{name: job}``, the newest when several)."""
        found: dict[str, SlurmJob] = {}
        names = sorted(set(names))
        for k in range(0, len(names), 200):
            chunk = self._squeue(["-n", ",".join(names[k : k + 200])])
            for job in sorted(chunk.values(), key=lambda j: int(j.slurm_id)):
                found[job.name] = job
        return found

    def _squeue(self, selection: list[str]) -> dict[str, SlurmJob]:
        proc = self._run("squeue", ["-h", "-t", "all", *selection, "-O", SQUEUE_FIELDS])
        if proc.returncode != 0:
            message = self._error(proc)
            if "Invalid job id" in message:  # a lone forgotten id: not an error
                return {}
            raise SlurmError(f"squeue: {message}")
        return parse_squeue(proc.stdout.decode("utf-8", "replace"))

    def cancel(self, slurm_id: str | None, name: str) -> None:
        """``scancel``, restricted to jobs named ``name``: a wrong or reused id cancels
        nothing of anyone else's. Without an id, every job of that name is cancelled.
        """
        args = [f"--name={name}"] + ([slurm_id] if slurm_id else [])
        proc = self._run("scancel", args)
        if proc.returncode != 0:
            raise SlurmError(f"scancel: {self._error(proc)}")

    def config(self) -> dict[str, str]:
        """``scontrol show config`` as ``{key: value}``, read once ({} if unreachable)."""
        if self._config is None:
            try:
                proc = self._run("scontrol", ["show", "config"])
            except SlurmError:
                return {}
            conf: dict[str, str] = {}
            for line in proc.stdout.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    conf[key.strip()] = value.strip()
            self._config = conf
        return self._config

    def kill_wait(self) -> float | None:
        """Slurm's ``KillWait``: seconds between its SIGTERM and SIGKILL of a job."""
        text = self.config().get("KillWait", "").split()
        try:
            return float(text[0]) if text else None
        except ValueError:
            return None

    def jobcomp_path(self) -> Path | None:
        """The ``jobcomp/filetxt`` file if this cluster writes one we can read."""
        if self._jobcomp is False:
            self._jobcomp = None
            conf = self.config()
            if not conf:
                return None
            loc = conf.get("JobCompLoc", "")
            if conf.get("JobCompType") == "jobcomp/filetxt" and os.path.isfile(loc):
                self._jobcomp = Path(loc)
        return self._jobcomp if isinstance(self._jobcomp, Path) else None

    def completed(self, slurm_ids: Iterable[str], max_bytes: int = 8 << 20) -> dict[str, SlurmJob]:
        """Finished jobs from the tail of the jobcomp file: Slurm's record of jobs that
        squeue has already forgotten (there is no sacct without slurmdbd).
        """
        wanted = set(slurm_ids)
        path = self.jobcomp_path()
        if not wanted or path is None:
            return {}
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - max_bytes))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return {}
        found: dict[str, SlurmJob] = {}
        for line in text.splitlines():
            if not any(f"JobId={i} " in line for i in wanted):
                continue
            job = parse_jobcomp_line(line)
            if job is not None and job.slurm_id in wanted:
                found[job.slurm_id] = job  # the last line wins (a requeued job)
        return found


def ending_message(
    slurm_id: str, slurm: SlurmJob | None, duration: int, aborting: bool, stderr_tail: str = ""
) -> str:
    """Why a job ended, in Slurm's terms, for when its runner could not say it.

    ``slurm`` is None when Slurm forgot the job; a state of "" means the id belongs to a
    job with another name (``slurm.name``). ``duration`` is the executionDuration.
    """
    if slurm is None:
        return (
            f"Slurm no longer knows job {slurm_id} and its runner left no status file: "
            "the job's outcome is lost (Slurm forgets finished jobs after MinJobAge)"
        )
    if not slurm.state:
        return f"Slurm job {slurm_id} is not this job's (it is named {slurm.name!r})"
    where = f"Slurm job {slurm_id} {slurm.state}" + (f", {slurm.reason}" if slurm.reason else "")
    limit = time_limit(duration)
    if slurm.state == "TIMEOUT":
        if limit is None:
            return f"Slurm's time limit for the job was reached ({where})"
        return (
            f"execution duration of {duration} s exceeded: Slurm's time limit of {limit} min "
            f"was reached ({where})"
        )
    if slurm.state in ABORTED_STATES:
        how = (
            "aborted through the service"
            if aborting
            else "cancelled in Slurm, not through the service"
        )
        return f"{how} ({where})"
    if slurm.state == "NODE_FAIL":
        return f"the node running the job failed ({where})"
    if slurm.state == "OUT_OF_MEMORY":
        return f"the job ran out of memory ({where})"
    if slurm.signal:
        name = signal_name(slurm.signal)
        return f"the job's runner was killed by signal {slurm.signal} ({name}) ({where})"
    if slurm.exit_code:
        return (
            f"the job's runner exited with code {slurm.exit_code} without a status file "
            f"({where})" + (f": {stderr_tail}" if stderr_tail else "")
        )
    return f"the job's runner ended without a status file ({where})"


def runner_grace(kill_wait: float | None) -> float:
    """The runner's SIGTERM-to-SIGKILL grace on Slurm: shorter than Slurm's ``KillWait``.

    On ``scancel`` (or Slurm's time limit) Slurm signals the runner and, ``KillWait``
    later, SIGKILLs what it tracks. The runner must have killed and reaped the job's
    escaped processes by then (with ``proctrack/linuxproc`` Slurm does not see those in
    the runner's cgroup), and written its status file.
    """
    if kill_wait is None:
        return 10.0
    return max(0.5, min(10.0, kill_wait - 2.0))


def batch_script(python: str, worker_dir: str, grace: float | None = None) -> str:
    """The batch script: ``exec`` the runner, so no shell keeps the token in its
    environment while the job runs (the runner removes it from its own).

    ``-S``: the runner needs only the standard library and ``workers`` (on the
    PYTHONPATH sbatch exports), and ``site`` would cost every job CPU (docs/benchmarks.md,
    "Worker runner").
    ``-P``: the runner starts in the job directory, and ``-m`` would put that directory
    first on the import path, where an uploaded ``json.py`` would be run in its place.
    """
    from shlex import quote

    return (
        "#!/bin/bash\n"
        "# uws-server: the worker runner runs script.sh, writes .uws/status.json, calls back\n"
        f"exec {quote(python)} -S -P -m workers.node {quote(worker_dir)}"
        + (f" --grace {grace:g}" if grace is not None else "")
        + "\n"
    )
