"""The interface every execution manager (local pool, Slurm) implements.

The service decides *whether* a job runs; a manager decides *where and how*. Managers
never touch the database: they report what happens through :class:`JobSink`, which the
service implements and which enforces the phase rules.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

from uws_server.jobdef import EntityDef, JobDefinition
from uws_server.models import Job, WorkerEvent
from workers.jobdir import SPEC_FILE, atomic_write


class JobSink(Protocol):
    """Where managers report phase changes and results (the service)."""

    def report(self, job_id: str, event: WorkerEvent) -> None:
        """Record an event; illegal or late events (after a final phase) are ignored."""


@dataclass
class JobSpec:
    """Everything needed to run one job, written to ``<job_dir>/job.json`` too.

    The worker runner (:mod:`workers.node`) reads that file on the worker node, so a
    job can run without access to the database; it reads the JSON generically (it is
    standard library only), so this dataclass and :meth:`to_json` are the one place the
    spec is declared. What only one manager understands (Slurm's ``#SBATCH`` lines)
    is in ``manager_options``, filled by that manager's :meth:`Manager.options_for`.
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
    python: str = ""  # interpreter for the runner ("" = the server's own)
    owner: str = ""  # the job's owner, for the managers' log lines
    manager_options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``job_dir`` as text): what ``dataclasses.asdict`` gives, built
        directly (``asdict`` deep-copies every leaf generically)."""
        data = {name: getattr(self, name) for name in _SPEC_FIELDS}
        data["job_dir"] = str(self.job_dir)
        data["parameters"] = dict(self.parameters)
        data["generated"] = [{n: getattr(e, n) for n in _ENTITY_FIELDS} for e in self.generated]
        data["manager_options"] = dict(self.manager_options)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of :meth:`to_json`; unknown keys are ignored (newer servers)."""
        values = {k: v for k, v in data.items() if k in _SPEC_FIELDS}
        values["job_dir"] = Path(values["job_dir"])
        values["generated"] = [
            EntityDef(**{k: v for k, v in e.items() if k in _ENTITY_FIELDS})
            for e in data.get("generated") or []
        ]
        values["parameters"] = {str(k): str(v) for k, v in (data.get("parameters") or {}).items()}
        values["manager_options"] = dict(data.get("manager_options") or {})
        return cls(**values)


_SPEC_FIELDS = tuple(f.name for f in fields(JobSpec))
_ENTITY_FIELDS = tuple(f.name for f in fields(EntityDef))


def write_spec(spec: JobSpec) -> Path:
    """Write ``job.json`` (mode 0600: it holds the callback token)."""
    path = Path(spec.job_dir) / SPEC_FILE
    atomic_write(path, json.dumps(spec.to_json(), indent=1).encode(), mode=0o600)
    return path


def load_spec(job_dir: Path | str) -> JobSpec:
    """Read ``job.json``; the directory it is in wins over the stored ``job_dir``
    (a worker may mount the shared directory elsewhere than the server does)."""
    job_dir = Path(job_dir)
    spec = JobSpec.from_json(json.loads((job_dir / SPEC_FILE).read_text()))
    spec.job_dir = job_dir
    return spec


class Manager(abc.ABC):
    """Runs jobs somewhere and reports on them through a :class:`JobSink`."""

    name: ClassVar[str] = "abstract"
    # Whether jobs run away from the server process: they then report through the HTTP
    # callback, with a per-job token (the local pool reports in-process).
    remote: ClassVar[bool] = False
    # The key of a job's run context that identifies the run in this executor's own
    # records (a pid, a Slurm job id): provenance shows it to the operator.
    run_id_key: ClassVar[str] = ""

    def __init__(self, sink: JobSink) -> None:
        self.sink = sink

    def options_for(self, defn: JobDefinition) -> dict[str, Any]:
        """What of the job definition only this manager understands, for
        :attr:`JobSpec.manager_options` (none by default)."""
        return {}

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
