"""Log lines about a job, with the job's context bound: id, owner, definition.

An operator reading the log of a busy service must see whose job a line is about and
what it ran without looking the id up. Every module that logs about one job (the
lifecycle, the service, the managers) gets its logger through :func:`job_log`, so all
such lines share one format, ``job <id> [owner=<owner> definition=<name>]: <message>``,
and carry the same three values as record attributes (``job_id``, ``owner``,
``definition``) for a structured handler.

Some lines are written where only the id is at hand (a manager's outbox, the notifier,
a background hook). The context of every job this process has started, recovered or
logged about is remembered (the last :data:`KEEP` jobs), so that such a line carries
its owner and definition all the same; ``-`` only for a job this process never saw.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
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


# job id -> (owner, definition) of the jobs most recently seen, oldest first
KEEP = 10_000
_known: OrderedDict[str, tuple[str, str]] = OrderedDict()
_known_lock = threading.Lock()


def remember(job: JobLike) -> None:
    """Keep ``job``'s owner and definition for lines that name it by id only."""
    context = (job.owner or "-", job.jobname or "-")
    with _known_lock:
        _known[job.job_id] = context
        _known.move_to_end(job.job_id)
        while len(_known) > KEEP:
            _known.popitem(last=False)


def job_log(logger: logging.Logger, job: JobLike | str) -> JobLog:
    """``logger`` bound to ``job``'s id, owner and definition. Given only an id, the
    context remembered for it (:func:`remember`); ``-`` for what is not known, a line
    in the same format all the same."""
    if isinstance(job, str):
        with _known_lock:
            owner, definition = _known.get(job, ("-", "-"))
        return JobLog(logger, {"job_id": job, "owner": owner, "definition": definition})
    remember(job)
    return JobLog(
        logger,
        {"job_id": job.job_id, "owner": job.owner or "-", "definition": job.jobname or "-"},
    )
