"""Plain data for jobs, results and users, and the UWS phase rules.

These dataclasses are what flows between the layers: storage returns them, the service
applies the rules to them, the XML templates and the managers read them. Nothing here
touches the database or HTTP, so every layer can import this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Phase(enum.StrEnum):
    """The UWS 1.1 execution phases (the schema's ExecutionPhase)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_PHASES

    @property
    def is_active(self) -> bool:
        """Queued or running: the job holds (or waits for) an execution slot."""
        return self in ACTIVE_PHASES


FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})
ACTIVE_PHASES = frozenset({Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED})

# Legal phase changes. A final phase is final: nothing leaves it except the move to
# ARCHIVED when the reaper removes a finished job's files but keeps its record.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.QUEUED, Phase.EXECUTING, Phase.ABORTED, Phase.ERROR}),
    Phase.QUEUED: frozenset({Phase.EXECUTING, Phase.ABORTED, Phase.ERROR, Phase.COMPLETED}),
    Phase.HELD: frozenset({Phase.QUEUED, Phase.EXECUTING, Phase.ABORTED, Phase.ERROR}),
    Phase.EXECUTING: frozenset(
        {Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.SUSPENDED, Phase.QUEUED}
    ),
    Phase.SUSPENDED: frozenset({Phase.EXECUTING, Phase.ABORTED, Phase.ERROR}),
    Phase.COMPLETED: frozenset({Phase.ARCHIVED}),
    Phase.ERROR: frozenset({Phase.ARCHIVED}),
    Phase.ABORTED: frozenset({Phase.ARCHIVED}),
    Phase.UNKNOWN: frozenset(set(Phase) - {Phase.UNKNOWN}),
    Phase.ARCHIVED: frozenset(),
}


def can_transition(old: Phase, new: Phase) -> bool:
    """True when a job may move from ``old`` to ``new``."""
    return new in TRANSITIONS[old]


@dataclass
class Result:
    """A file a job produced (a generated entity), or a provenance document.

    ``name`` is the result id shown in UWS; ``path`` is relative to the job's working
    directory and never leaves it.
    """

    name: str
    path: str
    content_type: str = "application/octet-stream"
    size: int | None = None
    sha256: str | None = None
    entity_id: str | None = None


@dataclass
class Job:
    """One UWS job, as stored."""

    job_id: str
    jobname: str  # the job definition (the job list it belongs to)
    owner: str
    phase: Phase
    creation_time: datetime
    destruction_time: datetime
    execution_duration: int  # seconds; 0 means unlimited
    parameters: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    quote: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_summary: str | None = None
    results: list[Result] = field(default_factory=list)
    # Execution bookkeeping, never shown to clients.
    manager: str | None = None  # "local" or "slurm"
    external_id: str | None = None  # pid (local) or Slurm job id
    callback_token_hash: str | None = None
    version: int = 0  # bumped on every change; lets WAIT and caches tell changes apart


@dataclass
class User:
    """A client of the service. Tokens are stored only as hashes."""

    name: str
    token_hash: str
    is_admin: bool = False
    roles: tuple[str, ...] = ()
    disabled: bool = False
    max_active_jobs: int | None = None

    def has_role(self, role: str) -> bool:
        return self.is_admin or role in self.roles


ANONYMOUS = User(name="anonymous", token_hash="", roles=())


@dataclass
class WorkerEvent:
    """What a manager or a worker reports about a job it runs.

    ``results`` lists the generated files (paths relative to the job directory); the
    service checks each one stays inside the directory before recording it.
    """

    phase: Phase
    error: str | None = None
    results: list[Result] = field(default_factory=list)
    external_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    context: dict[str, str] = field(default_factory=dict)  # software versions, host...
