"""Jobs' progress on the service side, and how long a job is expected to run (issue 13).

The job side writes ``$UWS_PROGRESS_FILE`` and its runner relays it
(:mod:`workers.progress`): the local pool in this process, the Slurm runner through
``POST /callback/<job_id>/progress``. :class:`ProgressTracker` keeps the latest value
of each job (table ``job_progress``) and remembers it in memory: every value goes
through here, so the job document (``jobInfo``) and the progress endpoint read it
without a query. A progress report never wakes a blocked WAIT (UWS WAIT is about the
phase); a client polling with short WAITs sees it in the job document.

The expected run time of a job, behind its expected end and its UWS ``quote``, is
learnt from the definition's history: the median run time of the :data:`NEAREST`
completed jobs whose parameters are closest to this one's (:func:`parameter_distance`),
falling back to the definition's own quote when it has no history yet, and to the
progress itself (elapsed / fraction) when neither is known.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from uws_server.common import utcnow
from uws_server.models import ACTIVE_PHASES, Job, Phase
from uws_server.storage.progress import FinishedRun, ProgressRow, ProgressStore

log = logging.getLogger(__name__)

NEAREST = 5  # completed jobs the estimate takes the median of
SPREAD = 0.25  # ... at most this much farther (parameter_distance) than the nearest
HISTORY = 200  # last completed jobs of a definition looked at
HISTORY_SECONDS = 10.0  # a definition's history is read again after this
CACHE_SIZE = 20000
INFO_NS = "urn:uws-server:progress"


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parameter_distance(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """0 (same parameters) to 1 (nothing in common): the mean over every parameter
    name of either job of a per-value distance, relative for two numbers
    (``|x - y| / (|x| + |y|)``: 10 events and 20 are closer than 10 and 1000), 0 or 1
    for other values, 1 for a parameter only one job has."""
    names = set(a) | set(b)
    if not names:
        return 0.0
    total = 0.0
    for name in names:
        x, y = a.get(name), b.get(name)
        if x is None or y is None:
            total += 1.0
            continue
        if x == y:
            continue
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            scale = abs(nx) + abs(ny)
            total += min(1.0, abs(nx - ny) / scale) if scale else 0.0
        else:
            total += 1.0
    return total / len(names)


def expected_seconds(
    runs: list[FinishedRun], parameters: Mapping[str, str], k: int = NEAREST
) -> float | None:
    """The median run time of the ``k`` runs nearest to ``parameters`` (None: no runs),
    leaving out runs much farther (by :data:`SPREAD`) than the nearest: three runs with
    the same parameters say more than two more with other ones. Among equally near runs
    the most recent come first (``runs`` is newest first)."""
    if not runs:
        return None
    ranked = sorted(
        (parameter_distance(run.parameters, parameters), i, run) for i, run in enumerate(runs)
    )
    nearest = ranked[0][0]
    chosen = [run.seconds for d, _, run in ranked[:k] if d <= nearest + SPREAD]
    return statistics.median(chosen)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="milliseconds") + "Z"


class ProgressTracker:
    """The latest progress of jobs and their expected run times (see the module)."""

    def __init__(self, store: ProgressStore) -> None:
        self.store = store
        self._latest: dict[str, ProgressRow | None] = {}
        self._history: dict[str, tuple[float, list[FinishedRun]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ progress
    def record(self, job: Job, progress: Mapping[str, object]) -> bool:
        """Keep a runner's report (already cleaned by :func:`workers.progress.clean`)
        for an active job; False (ignored) for a job that is not running any more."""
        if job.phase not in ACTIVE_PHASES:
            return False
        fraction = progress.get("fraction")
        row = ProgressRow(
            job_id=job.job_id,
            fraction=float(fraction) if isinstance(fraction, (int, float)) else None,
            message=str(progress.get("message") or ""),
            updated=utcnow(),
        )
        if not self.store.record_progress(row):
            return False
        with self._lock:
            if len(self._latest) >= CACHE_SIZE:
                self._latest.clear()
            self._latest[job.job_id] = row
        return True

    def latest(self, job_id: str) -> ProgressRow | None:
        """The job's latest progress (one query per job the first time, then memory)."""
        with self._lock:
            if job_id in self._latest:
                return self._latest[job_id]
        row = self.store.latest_progress(job_id)
        with self._lock:
            if len(self._latest) >= CACHE_SIZE:
                self._latest.clear()
            self._latest.setdefault(job_id, row)
            return self._latest[job_id]

    # ------------------------------------------------------------------ estimates
    def history(self, jobname: str) -> list[FinishedRun]:
        now = time.monotonic()
        with self._lock:
            cached = self._history.get(jobname)
        if cached is not None and now - cached[0] < HISTORY_SECONDS:
            return cached[1]
        runs = self.store.completed_runs(jobname, HISTORY)
        with self._lock:
            self._history[jobname] = (now, runs)
        return runs

    def expected_duration(
        self, jobname: str, parameters: Mapping[str, str], default: int | None = None
    ) -> float | None:
        """Seconds a job of ``jobname`` with ``parameters`` is expected to run: from
        the history, else ``default`` (the definition's quote), else None."""
        estimate = expected_seconds(self.history(jobname), parameters)
        if estimate is None and default:
            return float(default)
        return estimate

    def quote(
        self, jobname: str, parameters: Mapping[str, str], default: int | None, now: datetime
    ) -> datetime | None:
        """The UWS quote of a new job: when it would end if it started ``now``."""
        seconds = self.expected_duration(jobname, parameters, default)
        return None if seconds is None else now + timedelta(seconds=seconds)

    def view(self, job: Job, default: int | None = None) -> dict[str, object]:
        """What ``GET .../progress`` returns: the latest progress, the time the job has
        been running, and when it is expected to end (None when nothing says)."""
        now = utcnow()
        row = self.latest(job.job_id)
        start, end = job.start_time, job.end_time
        elapsed = None
        if start is not None:
            elapsed = max(0.0, ((end or now) - start).total_seconds())
        expected_end: datetime | None = None
        if job.phase.is_final:
            expected_end = end
        else:
            seconds = self.expected_duration(job.jobname, job.parameters, default)
            fraction = row.fraction if row is not None else None
            if start is None:
                expected_end = None if seconds is None else now + timedelta(seconds=seconds)
            else:
                if seconds is not None:
                    expected_end = start + timedelta(seconds=seconds)
                # Past its estimate (or none): what the progress itself says.
                overdue = expected_end is None or expected_end < now
                if overdue and fraction and elapsed and fraction >= 0.02:
                    expected_end = start + timedelta(seconds=elapsed / fraction)
                if expected_end is not None and expected_end < now:
                    expected_end = now
        return {
            "job_id": job.job_id,
            "phase": job.phase.value,
            "fraction": None if row is None else row.fraction,
            "message": "" if row is None else row.message,
            "updated": None if row is None else _iso(row.updated),
            # seconds since the last report (the page hides a stale message)
            "age": None if row is None else round(max(0.0, (now - row.updated).total_seconds()), 3),
            "start_time": _iso(start),
            "elapsed": None if elapsed is None else round(elapsed, 3),
            "expected_end": _iso(expected_end),
        }

    def job_info(self, job: Job) -> tuple[str, str]:
        """(cache key, ``<uws:jobInfo>`` element or "") for the job document."""
        if job.phase is Phase.PENDING:  # never ran: no progress, and no query for it
            return "", ""
        row = self.latest(job.job_id)
        if row is None:
            return "", ""
        from xml.sax.saxutils import escape, quoteattr

        fraction = "" if row.fraction is None else f" fraction={quoteattr(f'{row.fraction:.4g}')}"
        element = (
            f'<uws:jobInfo><progress xmlns="{INFO_NS}"{fraction}'
            f" updated={quoteattr(_iso(row.updated) or '')}>"
            f"{escape(row.message)}</progress></uws:jobInfo>"
        )
        return _iso(row.updated) or "", element
