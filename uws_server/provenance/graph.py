"""The provenance graph across jobs: ProvSAP traversal and provenance search.

Both work on plain records (:class:`~.records.JobProvenance`) obtained through a
:class:`RecordSource`, which the service implements over SQL and a test implements in
memory. Jobs are linked only through entity ids: job B follows job A when B used an
entity that A generated.

Owner isolation is part of the traversal, not an afterthought: a job the caller may
not read is neither returned nor walked *through*, so a chain passing through another
user's job stops there, and the caller learns nothing of what lies behind it. (The
caller's own job that used the hidden job's product still lists that entity as an
input: the caller gave it to the job.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from .records import EntityRecord, JobProvenance

Direction = Literal["BACK", "FORWARD"]


class RecordSource(Protocol):
    """Where the traversal reads records from (the service: SQL; tests: memory).

    The two lookups take a whole frontier of entity ids at once, so that the service
    answers each traversal step with one query rather than one per entity.
    """

    def jobs_generating(self, entity_ids: Collection[str]) -> Iterable[str]:
        """Ids of the jobs that generated any of these entities."""
        ...

    def jobs_using(self, entity_ids: Collection[str]) -> Iterable[str]:
        """Ids of the jobs that used any of these entities."""
        ...

    def job(self, job_id: str) -> JobProvenance | None:
        """The records of one job, or None when there is no such job."""
        ...


def _always(_job_id: str) -> bool:
    return True


def traverse(
    source: RecordSource,
    ids: Iterable[str],
    depth: int | None,
    direction: Direction | str = "BACK",
    can_read: Callable[[str], bool] = _always,
) -> list[JobProvenance]:
    """The jobs reachable from ``ids`` within ``depth`` activity steps.

    ``ids`` may mix job ids and entity ids: an id for which ``source.job`` finds a job
    is that job, any other id is an entity. The first step is the jobs given, plus the
    jobs that generated (BACK) or used (FORWARD) the entities given; each further step
    follows the entities the previous step's jobs used (BACK) or generated (FORWARD)
    to the jobs that generated or used them. ``depth=None`` means ALL; ``depth=0``
    returns nothing. Jobs come in step order, sorted by id within a step, each once
    (cycles cannot loop). A job for which ``can_read`` is false is left out and not
    walked through.
    """
    way = str(direction).upper()
    if way not in ("BACK", "FORWARD"):
        raise ValueError(f"DIRECTION must be BACK or FORWARD, not {direction!r}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0 or None (ALL), not {depth}")
    back = way == "BACK"

    loaded: dict[str, JobProvenance | None] = {}

    def load(job_id: str) -> JobProvenance | None:
        if job_id not in loaded:
            loaded[job_id] = source.job(job_id)
        return loaded[job_id]

    start_jobs: list[str] = []
    start_entities: list[str] = []
    for i in dict.fromkeys(ids):
        (start_jobs if load(i) is not None else start_entities).append(i)
    if start_entities:
        found = (
            source.jobs_generating(start_entities) if back else source.jobs_using(start_entities)
        )
        start_jobs.extend(sorted(set(found) - set(start_jobs)))

    result: dict[str, JobProvenance] = {}
    visited: set[str] = set()
    frontier = start_jobs
    step = 1
    while frontier and (depth is None or step <= depth):
        next_entities: dict[str, None] = {}
        for job_id in frontier:
            if job_id in visited:
                continue
            visited.add(job_id)
            if not can_read(job_id):
                continue
            job = load(job_id)
            if job is None:
                continue
            result[job_id] = job
            for e in job.used_ids() if back else job.generated_ids():
                next_entities.setdefault(e, None)
        if not next_entities:
            break
        entities = list(next_entities)
        found = source.jobs_generating(entities) if back else source.jobs_using(entities)
        frontier = sorted(set(found) - visited)
        step += 1
    return list(result.values())


def provsap_steps(depth: int | str | None, from_entity: bool) -> int | None:
    """Activity steps for a ProvSAP ``DEPTH``, which counts relations, not activities.

    From an entity, the 1st, 3rd, 5th... relation reaches an activity
    (wasGeneratedBy, used, wasGeneratedBy...); from an activity, the activity itself is
    step 1 and every second relation reaches the next one. ``ALL`` (or None) is None.
    """
    if depth is None or (isinstance(depth, str) and depth.strip().upper() == "ALL"):
        return None
    d = int(depth)
    if d < 0:
        raise ValueError(f"DEPTH must be >= 0 or ALL, not {depth}")
    return (d + 1) // 2 if from_entity else 1 + d // 2


# --- search ------------------------------------------------------------------------

Field = Literal[
    "jobname", "version", "owner", "param", "sha256", "generated_from", "generated_to"
]
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_SEPARATORS = re.compile(r"[\s,;]+")


def value_items(value: str) -> list[str]:
    """The items of a (possibly list-valued) parameter value: ``"1001 1002"``,
    ``"1001,1002"`` and ``"1001; 1002"`` all hold ``1001`` and ``1002``."""
    return [v for v in _SEPARATORS.split(value.strip()) if v]


def value_contains(value: str, wanted: str) -> bool:
    """Whether a job's parameter ``value`` holds what a search asks for.

    Exact equality first; else every item of ``wanted`` must be an item of ``value``,
    where an item ``a-b`` of whole numbers (``1001-1004``) holds every number from a to
    b. So ``obs_ids=1001`` finds the jobs run on ``"1001 1002"`` and on ``"1001-1004"``,
    and a scalar parameter still matches only its own value (``"1"`` never matches
    ``"10"``).
    """
    if value == wanted:
        return True
    wanted_items = value_items(wanted)
    if not wanted_items:
        return False
    items = value_items(value)
    plain = set(items)
    ranges = []
    for item in items:
        m = _RANGE.match(item)
        if m:
            ranges.append((int(m.group(1)), int(m.group(2))))
    for w in wanted_items:
        if w in plain:
            continue
        if w.isdigit() and any(lo <= int(w) <= hi for lo, hi in ranges):
            continue
        return False
    return True


@dataclass(frozen=True)
class Condition:
    """One test a job must pass; the service turns each into one SQL condition.

    ======================  ==============================================================
    ``jobname``             ``jobs.jobname = :value``
    ``version``             the definition version recorded for the job ``= :value``
    ``owner``               ``jobs.owner = :value``
    ``param``               a parameter of the job named ``:name`` whose value holds
                            ``:value`` (:func:`value_contains`: list items and ranges)
    ``sha256``              an entity the job used or generated has this SHA-256
    ``generated_from``      ``jobs.end_time >= :value`` (products are generated at the end)
    ``generated_to``        ``jobs.end_time <= :value``
    ======================  ==============================================================

    All conditions of a query must hold (AND); a job without an end time fails the
    time conditions.
    """

    field: Field
    value: str | datetime
    name: str | None = None  # the parameter name, for field == "param"

    def matches(self, job: JobProvenance) -> bool:
        a = job.activity
        if self.field == "jobname":
            return a.jobname == self.value
        if self.field == "version":
            return a.version == self.value
        if self.field == "owner":
            return a.owner == self.value
        if self.field == "param":
            return any(
                p.name == self.name and value_contains(p.value, str(self.value))
                for p in job.parameters
            )
        if self.field == "sha256":
            return any((e.sha256 or "").lower() == str(self.value).lower() for e in job.entities)
        if a.end_time is None or not isinstance(self.value, datetime):
            return False
        if self.field == "generated_from":
            return a.end_time >= self.value
        if self.field == "generated_to":
            return a.end_time <= self.value
        raise ValueError(f"unknown search field {self.field!r}")


@dataclass(frozen=True)
class SearchQuery:
    """A provenance search: which jobs' products to return.

    The predicate is data (:meth:`conditions`), so the service can run it as SQL over
    its tables and this module can run the very same predicate over records
    (:meth:`matches`); the two cannot drift apart in meaning.
    """

    activity: str | None = None
    version: str | None = None
    params: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    agent: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    sha256: str | None = None

    @classmethod
    def of(
        cls,
        activity: str | None = None,
        version: str | None = None,
        params: Mapping[str, str] | None = None,
        agent: str | None = None,
        time_from: datetime | None = None,
        time_to: datetime | None = None,
        sha256: str | None = None,
    ) -> SearchQuery:
        """Build a query from keyword values, a parameter mapping included."""
        return cls(
            activity,
            version,
            tuple(sorted((params or {}).items())),
            agent,
            time_from,
            time_to,
            sha256,
        )

    def conditions(self) -> list[Condition]:
        out: list[Condition] = []
        if self.activity is not None:
            out.append(Condition("jobname", self.activity))
        if self.version is not None:
            out.append(Condition("version", self.version))
        if self.agent is not None:
            out.append(Condition("owner", self.agent))
        for name, value in self.params:
            out.append(Condition("param", value, name))
        if self.time_from is not None:
            out.append(Condition("generated_from", self.time_from))
        if self.time_to is not None:
            out.append(Condition("generated_to", self.time_to))
        if self.sha256 is not None:
            out.append(Condition("sha256", self.sha256))
        return out

    def matches(self, job: JobProvenance) -> bool:
        return all(c.matches(job) for c in self.conditions())


def search(
    records: Iterable[JobProvenance],
    activity: str | None = None,
    version: str | None = None,
    params: Mapping[str, str] | None = None,
    agent: str | None = None,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    can_read: Callable[[str], bool] = _always,
) -> list[EntityRecord]:
    """The entities generated by the readable jobs that match every given criterion.

    ``activity`` is the job definition name, ``agent`` the owner, ``params`` exact
    parameter values, and [``time_from``, ``time_to``] bounds the generation time (the
    job's end). Entities come in job order, each once.
    """
    query = SearchQuery.of(activity, version, params, agent, time_from, time_to)
    out: dict[str, EntityRecord] = {}
    for job in records:
        if can_read(job.job_id) and query.matches(job):
            for e in job.generated_entities():
                out.setdefault(e.entity_id, e)
    return list(out.values())
