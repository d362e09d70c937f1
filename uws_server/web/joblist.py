"""The job list page's query: filters (phase, definition, creation date), sorting, paging.

The list used to stop silently at 300 jobs. Now every job the viewer may see that passes
the filters is counted, and one page of them is shown, with the total and the page
count, so nothing is cut without saying so. The store returns the filtered job
references (a few small columns per job, newest first, the date's lower bound applied in
SQL); the other sort orders and the page are applied here, in Python, at a cost per
job small enough for a user's 100,000 jobs (docs/benchmarks.md, the table of figures
moved out of docstrings). A keyset query in the store would page in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from uws_server.errors import BadRequest, NotFound
from uws_server.models import ACTIVE_PHASES, Phase, User
from uws_server.service import UWSService
from uws_server.storage.store import JobRef
from uws_server.web.common import iso, url_part

PAGE_SIZES = (20, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
LIVE_PHASES = frozenset({Phase.PENDING, *ACTIVE_PHASES})
# sort key -> (column label, how to sort a JobRef)
SORTS: dict[str, tuple[str, Any]] = {
    "created": ("Created (UTC)", lambda r: r.creation_time),
    "jobname": ("Definition", lambda r: (r.jobname, r.creation_time)),
    "job": ("Job", lambda r: r.job_id),
    "run_id": ("Run id", lambda r: ((r.run_id or "").lower(), r.creation_time)),
    "owner": ("Owner", lambda r: (r.owner, r.creation_time)),
    "phase": ("Phase", lambda r: (r.phase.value, r.creation_time)),
}


def phase_filter(value: str | None) -> list[Phase]:
    """The phases a list filter stands for: '' all, 'active', or one phase."""
    value = (value or "").strip()
    if not value:
        return []
    if value.lower() == "active":
        return sorted(LIVE_PHASES)
    try:
        return [Phase(value.upper())]
    except ValueError:
        raise BadRequest(f"phase: '{value[:32]}' is not a UWS phase") from None


def _date(name: str, value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.fromisoformat(value) if "T" in value else datetime.combine(
            datetime.strptime(value, "%Y-%m-%d").date(), time()
        )
    except ValueError:
        raise BadRequest(f"{name}: '{value[:32]}' is not a date (YYYY-MM-DD)") from None


def _int(name: str, value: str, default: int) -> int:
    if not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name}: '{value[:32]}' is not a whole number") from None


@dataclass
class ListQuery:
    """What the list shows; parsed from the query string, written back into links."""

    phase: str = ""
    jobname: str = ""
    date_from: str = ""
    date_to: str = ""
    sort: str = "created"
    order: str = "desc"
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    phases: list[Phase] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(cls, q: Any) -> ListQuery:
        sort = (q.get("sort") or "created").strip()
        if sort not in SORTS:
            raise BadRequest(f"sort: '{sort[:32]}' is not one of {', '.join(SORTS)}")
        order = (q.get("order") or ("asc" if sort in ("jobname", "owner") else "desc")).lower()
        if order not in ("asc", "desc"):
            raise BadRequest("order must be asc or desc")
        size = _int("size", q.get("size") or "", DEFAULT_PAGE_SIZE)
        if size not in PAGE_SIZES:
            raise BadRequest(f"size must be one of {', '.join(map(str, PAGE_SIZES))}")
        page = _int("page", q.get("page") or "", 1)
        if page < 1:
            raise BadRequest("page must be 1 or more")
        out = cls(
            phase=(q.get("phase") or "").strip(),
            jobname=(q.get("jobname") or "").strip(),
            date_from=(q.get("from") or "").strip(),
            date_to=(q.get("to") or "").strip(),
            sort=sort,
            order=order,
            page=page,
            size=size,
        )
        out.phases = phase_filter(out.phase)
        out.start = _date("from", out.date_from)
        end = _date("to", out.date_to)
        if end is not None and "T" not in out.date_to:
            end += timedelta(days=1)  # a day given: the whole day
        out.end = end
        if out.start and out.end and out.end <= out.start:
            raise BadRequest("to must be after from")
        return out

    def link(self, **changes: Any) -> str:
        """/ui/jobs with this query, some values changed (page back to 1 unless given)."""
        values = {
            "phase": self.phase,
            "jobname": self.jobname,
            "from": self.date_from,
            "to": self.date_to,
            "sort": self.sort,
            "order": self.order,
            "size": str(self.size),
            "page": "1",
        }
        values.update({k: str(v) for k, v in changes.items()})
        defaults = {"sort": "created", "order": "desc", "size": str(DEFAULT_PAGE_SIZE), "page": "1"}
        return "/ui/jobs?" + urlencode(
            [(k, v) for k, v in values.items() if v and defaults.get(k) != v]
        )

    def sort_link(self, key: str) -> str:
        """The column header's link: sort by it, or flip the order if already sorted."""
        if key == self.sort:
            return self.link(order="asc" if self.order == "desc" else "desc")
        return self.link(sort=key, order="asc" if key in ("jobname", "owner", "job") else "desc")


@dataclass
class JobPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    query: ListQuery


def row(ref: JobRef) -> dict[str, Any]:
    url = f"/ui/jobs/{url_part(ref.jobname)}/{url_part(ref.job_id)}"
    return {
        "jobname": ref.jobname,
        "job_id": ref.job_id,
        "phase": ref.phase.value,
        "run_id": ref.run_id or "",
        "owner": ref.owner,
        "creation_time": iso(ref.creation_time),
        "url": url,
        "can_run": ref.phase == Phase.PENDING,
        "can_abort": ref.phase in LIVE_PHASES,
    }


def _naive(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=None) if t is not None and t.tzinfo is not None else t


def job_page(service: UWSService, user: User, query: ListQuery) -> JobPage:
    """One page of the jobs ``user`` may see that pass the filters, and their count."""
    if query.jobname and query.jobname not in service.registry:
        raise NotFound(f"no job definition named {query.jobname!r}")
    names = [query.jobname] if query.jobname else service.registry.names()
    after = query.start - timedelta(microseconds=1) if query.start else None
    refs = service.store.jobs_visible_to(user, names, query.phases, after, None)
    if query.end is not None:
        end = query.end
        refs = [r for r in refs if r.creation_time is not None and _naive(r.creation_time) < end]
    key = SORTS[query.sort][1]
    if query.sort != "created" or query.order != "desc":  # the store's order otherwise
        refs.sort(key=key, reverse=query.order == "desc")
    total = len(refs)
    pages = max(1, -(-total // query.size))
    page = min(query.page, pages)
    first = (page - 1) * query.size
    return JobPage([row(r) for r in refs[first : first + query.size]], total, page, pages, query)
