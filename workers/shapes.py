"""What the job-side code needs of a job's specification, as structural types.

``job.json`` is the contract between the service and a worker node: the service writes
it from its ``JobSpec`` dataclass (:mod:`uws_server.managers.base`), the worker runner
reads it into plain objects (:func:`workers.node.read_spec`). The shared job rules work
on either, so they are typed against these protocols, never against the service's
classes (``workers`` imports nothing from ``uws_server``). Imported for annotations
only: the runner never pays for ``typing``.
"""

from __future__ import annotations

from typing import Protocol


class EntityLike(Protocol):
    """A generated (or used) entity of the job definition."""

    name: str
    multiplicity: str
    default: str
    content_type: str


class SpecLike(Protocol):
    """A job as the job-side code sees it (the keys of ``job.json``)."""

    job_id: str
    job_dir: object  # a path, as text (worker) or pathlib.Path (service)
    script: str
    parameters: dict[str, str]
    generated: list[EntityLike]
    execution_duration: int
    callback_url: str
    python: str
