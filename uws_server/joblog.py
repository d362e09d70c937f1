"""Log lines about a job, with the job's context bound: id, owner, definition.

An operator reading the log of a busy service must see whose job a line is about and
what it ran without looking the id up. Every module that logs about one job (the
lifecycle, the service, the managers) gets its logger through :func:`job_log`, so all
such lines share one format, ``job <id> [owner=<owner> definition=<name>]: <message>``,
and carry the same three values as record attributes (``job_id``, ``owner``,
``definition``) for a structured handler.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Protocol


class JobLike(Protocol):
    """A stored job (``models.Job``) or a job spec (``managers.base.JobSpec``)."""

    job_id: str
    jobname: str
    owner: str


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger adapter that prefixes every message with the job's context."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        ctx = self.extra or {}
        kwargs["extra"] = {**ctx, **(kwargs.get("extra") or {})}
        job, owner, definition = ctx.get("job_id"), ctx.get("owner"), ctx.get("definition")
        return f"job {job} [owner={owner} definition={definition}]: {msg}", kwargs


def job_log(logger: logging.Logger, job: JobLike | str) -> JobLog:
    """``logger`` bound to ``job``'s id, owner and definition (``-`` for what is not at
    hand when only the id is: a line in the same format all the same)."""
    if isinstance(job, str):
        return JobLog(logger, {"job_id": job, "owner": "-", "definition": "-"})
    return JobLog(
        logger,
        {"job_id": job.job_id, "owner": job.owner or "-", "definition": job.jobname or "-"},
    )

