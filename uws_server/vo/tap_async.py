"""Async TAP queries as UWS jobs of this service, run in-process.

A TAP job is an ordinary row of the ``jobs`` table (job list ``tap.async``, a name no
job definition can take, so ``/rest`` never serves it): the same phases, owner,
destruction time, reaper, WAIT and job documents as every other job. Only *running*
it differs: there is no script for a manager to start, so :class:`TapJobs` moves the
job PENDING → QUEUED itself (the same compare-and-set the lifecycle uses) and a small
thread pool runs the query; EXECUTING and the final phase with its ``result`` file go
through :meth:`Lifecycle.report`, exactly as a manager reports, so the phase rules,
the WAIT wake-ups and the final hooks are the service's own. ABORT and DELETE are the
service's (a running query notices at its next progress check and stops).

A query running when the server stops is not resumed: recovery marks it ERROR.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from uws_server.common import new_job_id, utcnow
from uws_server.errors import BadRequest, Conflict
from uws_server.joblog import job_log
from uws_server.lifecycle import default_destruction
from uws_server.models import ANONYMOUS, Job, Phase, Result, User, WorkerEvent
from uws_server.service import UWSService
from uws_server.vo.adql import ADQLError
from uws_server.vo.tap_query import QueryExecutor
from uws_server.vo.tap_votable import Format, error_votable, find_format, render

log = logging.getLogger("uws_server.tap")

TAP_JOBNAME = "tap.async"
MANAGER = "tap"
LANGS = frozenset({"ADQL", "ADQL-2.0", "ADQL-2.1"})
# TAP parameters kept on a job (upper case); any other parameter is ignored (TAP 1.1).
TAP_PARAMETERS = ("REQUEST", "LANG", "QUERY", "MAXREC", "RESPONSEFORMAT", "FORMAT", "RUNID")


@dataclass(frozen=True)
class QueryRequest:
    """A checked TAP request: what to run and how to answer."""

    query: str
    maxrec: int
    format: Format


def check_request(params: dict[str, str], default_maxrec: int, hard_maxrec: int) -> QueryRequest:
    """The TAP parameters (upper-case names) of a query, or BadRequest saying which."""
    request = params.get("REQUEST", "doQuery")
    if request.strip().lower() != "doquery":
        raise BadRequest(f"REQUEST={request[:32]!r} is not supported (only doQuery)")
    if "UPLOAD" in params:
        raise BadRequest("UPLOAD is not supported by this service (see /tap/capabilities)")
    lang = params.get("LANG", "ADQL").strip()
    if lang.upper() not in LANGS:
        raise BadRequest(f"LANG={lang[:32]!r} is not supported (use ADQL, ADQL-2.0 or ADQL-2.1)")
    query = params.get("QUERY", "")
    if not query.strip():
        raise BadRequest("QUERY is missing")
    raw = params.get("MAXREC")
    maxrec = default_maxrec
    if raw is not None and raw.strip() != "":
        try:
            maxrec = int(raw)
        except ValueError:
            raise BadRequest(f"MAXREC={raw[:32]!r} is not an integer") from None
        if maxrec < 0:
            raise BadRequest("MAXREC must not be negative")
    maxrec = min(maxrec, hard_maxrec)
    wanted = params.get("RESPONSEFORMAT") or params.get("FORMAT")
    fmt = find_format(wanted)
    if fmt is None:
        raise BadRequest(
            f"RESPONSEFORMAT={wanted!r} is not supported "
            "(votable, csv, tsv, json or their MIME types)"
        )
    return QueryRequest(query, maxrec, fmt)


def tap_parameters(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The TAP parameters among request pairs, names in upper case (last value wins)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.upper()
        if key in TAP_PARAMETERS or key == "UPLOAD":
            out[key] = value
    return out


def query_user(store_user: User | None) -> User | None:
    """The user a query runs as for the catalogue's visibility (None: anonymous)."""
    if store_user is None or store_user.name == ANONYMOUS.name:
        return None
    return store_user


class TapJobs:
    """Creates, starts and runs the async TAP jobs of one service."""

    def __init__(
        self,
        service: UWSService,
        executor: QueryExecutor,
        workers: int = 2,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        self.service = service
        self.prepare = prepare  # called before each query (the catalogue's store sync)
        self.settings = service.settings
        self.executor = executor
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tap")
        self._stopping: set[str] = set()
        self._lock = threading.Lock()

    def create(self, user: User, pairs: list[tuple[str, str]]) -> Job:
        params = tap_parameters(pairs)
        # Parameters are checked when the job runs: a bad LANG, QUERY or MAXREC makes the
        # job ERROR with the reason (TAP 1.1 §3: the job is created all the same).
        control = {k.upper(): v for k, v in pairs if k.upper() in ("PHASE", "RUNID")}
        phase = control.get("PHASE", "").strip().upper()
        if phase not in ("", "RUN"):
            raise BadRequest(f"PHASE: only RUN is accepted when creating a job, not {phase[:32]!r}")
        now = self.service.clock.now()
        job = Job(
            job_id=new_job_id(),
            jobname=TAP_JOBNAME,
            owner=user.name,
            phase=Phase.PENDING,
            creation_time=now,
            destruction_time=default_destruction(self.settings, now),
            execution_duration=int(self.settings.tap_async_timeout),
            parameters={k: v for k, v in params.items() if k != "RUNID"},
            run_id=control.get("RUNID") or None,
        )
        job = self.service.store.insert_job(job, new_job_id)
        job_log(log, job).info("TAP query job created")
        if phase == "RUN":
            self.start(job)
        return job

    def update(self, job: Job, pairs: list[tuple[str, str]]) -> None:
        """POST .../parameters while PENDING."""
        params = tap_parameters(pairs)
        merged = {**job.parameters, **params}
        if not self.service.store.set_parameters(job.job_id, merged):
            raise BadRequest(
                f"parameters can only change while the job is PENDING ({job.phase.value})"
            )
        self.service.notifier.notify(job.job_id)

    def start(self, job: Job) -> None:
        """PENDING → QUEUED, then the query on the pool."""
        if job.phase != Phase.PENDING:
            if job.phase.is_final:
                raise Conflict(f"the job is {job.phase.value}; only a PENDING job can be run")
            return
        ok = self.service.store.mark_queued(job.job_id, MANAGER)
        if not ok:
            return
        self.service.notifier.notify(job.job_id)
        self._pool.submit(self._run, job.job_id)

    def stop_query(self, job_id: str) -> None:
        """An ABORT or DELETE: a running query stops at its next progress check."""
        with self._lock:
            if len(self._stopping) > 10000:
                self._stopping.clear()
            self._stopping.add(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ running
    def _run(self, job_id: str) -> None:
        lifecycle = self.service.lifecycle
        job = self.service.store.get_job(job_id)
        if job is None or job.phase != Phase.QUEUED:
            return
        if not lifecycle.report(job_id, WorkerEvent(Phase.EXECUTING, start_time=utcnow())):
            return
        jdir = self.service.job_dir(job_id)
        try:
            req = check_request(
                job.parameters, self.settings.tap_maxrec_default, self.settings.tap_maxrec_hard
            )
            owner = (
                None if job.owner == ANONYMOUS.name else self.service.store.user_by_name(job.owner)
            )
            timeout = float(job.execution_duration or self.settings.tap_async_timeout)
            if self.prepare is not None:
                self.prepare()
            result = self.executor.run(
                req.query,
                query_user(owner),
                req.maxrec,
                timeout,
                cancelled=lambda: job_id in self._stopping,
            )
            body = render(req.format, result.fields, result.rows, result.overflow).encode("utf-8")
            name = f"result.{req.format.extension}"
            jdir.mkdir(parents=True, exist_ok=True)
            (jdir / name).write_bytes(body)
            event = WorkerEvent(
                Phase.COMPLETED,
                results=[
                    Result(
                        "result", name, req.format.mime, len(body), hashlib.sha256(body).hexdigest()
                    )
                ],
                end_time=utcnow(),
            )
            job_log(log, job).info("TAP query done: %d rows", len(result.rows))
        except (ADQLError, BadRequest) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            jdir.mkdir(parents=True, exist_ok=True)
            (jdir / "error.xml").write_text(error_votable(message))
            event = WorkerEvent(Phase.ERROR, error=message, end_time=utcnow())
            job_log(log, job).info("TAP query refused: %s", message)
        except Exception:
            job_log(log, job).exception("TAP query failed")
            event = WorkerEvent(
                Phase.ERROR, error="internal error running the query", end_time=utcnow()
            )
        if job_id in self._stopping:
            event = WorkerEvent(Phase.ABORTED, end_time=utcnow())
        lifecycle.report(job_id, event)
