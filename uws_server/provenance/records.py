"""Plain records a job's provenance is built from.

The service fills these from its store (jobs, parameters, results, entities, the
definition and the context the worker reported); everything in this package works on
them alone. Keeping them free of SQLAlchemy, bottle and the service's own models means
that provenance can be built, serialised and traversed in tests, in a benchmark or in
an offline tool exactly as the service does it, and that the provenance package never
imports the layers that import it.

Values are strings wherever the UWS side stores strings (parameter values, phases):
provenance records what was submitted, not an interpretation of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ActivityRecord:
    """One job seen as a ProvenanceDM activity, with its definition's description.

    The definition fields (``description`` ... ``contact_email``) are copied from the
    job definition *as it was when the job ran*, so a later edit of the definition does
    not rewrite the history of old jobs.
    """

    job_id: str
    jobname: str
    owner: str
    phase: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_id: str | None = None
    manager: str | None = None
    external_id: str | None = None
    error_summary: str | None = None
    # From the job definition (ActivityDescription).
    description: str = ""
    version: str = ""
    type: str = ""
    subtype: str = ""
    doculink: str = ""
    contact_name: str = ""
    contact_email: str = ""


@dataclass(frozen=True)
class ParameterRecord:
    """One job parameter with the value the job actually ran with (default included)."""

    name: str
    value: str
    datatype: str = "xs:string"
    unit: str | None = None
    ucd: str | None = None
    description: str = ""


@dataclass(frozen=True)
class EntityRecord:
    """A file or dataset a job used or generated.

    ``entity_id`` is stable and service-wide: the same file used by a second job keeps
    the id it got when the first job generated it, which is what makes the documents of
    several jobs chain into one graph. ``generated_by`` is the job that produced it, or
    None for an input that came from outside the service (upload, URL).
    """

    entity_id: str
    name: str = ""
    location: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    generated_by: str | None = None


@dataclass(frozen=True)
class UsageRecord:
    """The job ``job_id`` used ``entity_id`` in ``role`` (the definition's used entity)."""

    job_id: str
    entity_id: str
    role: str = ""


@dataclass(frozen=True)
class GenerationRecord:
    """The job ``job_id`` generated ``entity_id`` in ``role`` (a generated entity)."""

    job_id: str
    entity_id: str
    role: str = ""


@dataclass(frozen=True)
class ContextRecord:
    """Where and with what software the job ran, as the runner reported it.

    ``packages`` maps a package name to its version as the script reported it;
    ``manager_ids`` holds the execution identifiers (``{"slurm_job_id": "42"}``,
    ``{"pid": "1234"}``) that let an operator find the run in the batch system's logs.
    """

    service_version: str | None = None
    python: str | None = None
    host: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    manager_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class JobProvenance:
    """Everything about one job that its provenance document shows.

    ``entities`` holds every entity the job used or generated (each once);
    ``usages`` and ``generations`` link them to the job with their roles.
    """

    activity: ActivityRecord
    parameters: list[ParameterRecord] = field(default_factory=list)
    entities: list[EntityRecord] = field(default_factory=list)
    usages: list[UsageRecord] = field(default_factory=list)
    generations: list[GenerationRecord] = field(default_factory=list)
    context: ContextRecord | None = None
    # Tool runs inside the job (uws_server.provenance.subactivities.SubActivityRecord).
    subactivities: list[Any] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.activity.job_id

    def entity(self, entity_id: str) -> EntityRecord | None:
        """The entity record with this id, or None."""
        for e in self.entities:
            if e.entity_id == entity_id:
                return e
        return None

    def used_ids(self) -> list[str]:
        """Ids of the entities this job used, in record order, without repeats."""
        return _unique(u.entity_id for u in self.usages)

    def generated_ids(self) -> list[str]:
        """Ids of the entities this job generated, in record order, without repeats."""
        return _unique(g.entity_id for g in self.generations)

    def generated_entities(self) -> list[EntityRecord]:
        """The entity records this job generated."""
        by_id = {e.entity_id: e for e in self.entities}
        return [by_id[i] for i in self.generated_ids() if i in by_id]

    def validate(self) -> None:
        """Raise ValueError when the records do not describe one consistent job.

        A usage or generation pointing at another job, or at an entity that is not in
        ``entities``, would produce a document with dangling references; it is a bug
        in whoever filled the records, so it fails loudly instead.
        """
        ids = [e.entity_id for e in self.entities]
        if len(ids) != len(set(ids)):
            raise ValueError(f"job {self.job_id}: duplicate entity records")
        known = set(ids)
        for rel in [*self.usages, *self.generations]:
            if rel.job_id != self.job_id:
                raise ValueError(
                    f"job {self.job_id}: {type(rel).__name__} belongs to job {rel.job_id}"
                )
            if rel.entity_id not in known:
                raise ValueError(
                    f"job {self.job_id}: {type(rel).__name__} of unknown entity {rel.entity_id}"
                )
        names = [p.name for p in self.parameters]
        if len(names) != len(set(names)):
            raise ValueError(f"job {self.job_id}: duplicate parameter records")


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
