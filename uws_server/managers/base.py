"""The interface every execution manager (local pool, Slurm) implements.

The service decides *whether* a job runs; a manager decides *where and how*. Managers
never touch the database: they report what happens through :class:`JobSink`, which the
service implements and which enforces the phase rules.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from uws_server.jobdef import EntityDef
from uws_server.models import Job, WorkerEvent


class JobSink(Protocol):
    """Where managers report phase changes and results (the service)."""

    def report(self, job_id: str, event: WorkerEvent) -> None:
        """Record an event; illegal or late events (after a final phase) are ignored."""


@dataclass
class JobSpec:
    """Everything needed to run one job, written to ``<job_dir>/job.json`` too.

    The worker runner (``workers/runner.py``) reads that file on the worker node, so a
    job can run without access to the database.
    """

    job_id: str
    jobname: str
    job_dir: Path
    script: str
    parameters: dict[str, str]
    generated: list[EntityDef] = field(default_factory=list)
    execution_duration: int = 0  # seconds, 0 = unlimited
    callback_url: str = ""  # where the runner POSTs events ("" = no HTTP callbacks)
    callback_token: str = ""  # secret for this job only; never shown to clients
    sbatch_options: list[str] = field(default_factory=list)
    python: str = ""  # interpreter for the runner ("" = the server's own)


class Manager(abc.ABC):
    """Runs jobs somewhere and reports on them through a :class:`JobSink`."""

    name: str = "abstract"

    def __init__(self, sink: JobSink) -> None:
        self.sink = sink

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background threads (pollers, the slot dispatcher)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background threads; running jobs are left running (see ``recover``)."""

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> None:
        """Queue or start the job. Reports QUEUED/EXECUTING through the sink."""

    @abc.abstractmethod
    def abort(self, job: Job) -> None:
        """Kill the job's whole process tree (or scancel it). Must not raise if gone."""

    @abc.abstractmethod
    def recover(self, jobs: list[Job], specs: dict[str, JobSpec]) -> None:
        """Adopt jobs a previous server process left QUEUED or EXECUTING.

        Each must end in its true final phase (or be re-queued), never hang.
        """
