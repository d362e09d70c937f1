"""The UWS rules as seen by clients: create, read, list, run, abort, delete, wait.

Handlers call only this class. It enforces ownership (another user's job is a 404,
indistinguishable from a job that does not exist), the PENDING-only changes, the
parameter rules of the job definition, and the per-user limit of active jobs.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from uws_server.auth import Authenticator, tokens_match
from uws_server.common import can_read, new_job_id, parse_time, utcnow, within
from uws_server.config import Settings
from uws_server.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyJobs
from uws_server.fetch import SafeFetcher
from uws_server.inputs import InputStager
from uws_server.jobdef import JobDefinition
from uws_server.lifecycle import Lifecycle, default_destruction, read_inputs, write_inputs
from uws_server.models import Job, Phase, User, WorkerEvent
from uws_server.params import split_request, validate_parameters
from uws_server.provenance_service import ProvenanceService, snapshot_definition
from uws_server.storage import JobRef, Store
from uws_server.waiters import PhaseNotifier

WAITABLE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})


def parse_phases(values: list[str]) -> list[Phase]:
    out = []
    for v in values:
        try:
            out.append(Phase(v.strip().upper()))
        except ValueError:
            raise BadRequest(f"PHASE: '{v[:32]}' is not a UWS phase") from None
    return out


class CreationClock:
    """Creation times at millisecond precision, strictly increasing in this process.

    The job list shows milliseconds, so storing exactly that makes ``AFTER=<a listed
    creationTime>`` exclude the listed job, and LAST never meets a tie.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.min

    def now(self) -> datetime:
        t = datetime.now(UTC)  # naive UTC, truncated to the millisecond, in one replace
        t = t.replace(tzinfo=None, microsecond=t.microsecond // 1000 * 1000)
        with self._lock:
            if t <= self._last:
                t = self._last + timedelta(milliseconds=1)
            self._last = t
        return t


@dataclass
class ListQuery:
    phases: list[Phase]
    after: datetime | None
    last: int | None


class UWSService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry,  # uws_server.jdl.registry.JobDefinitionRegistry  # noqa: ANN001
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        # A woken WAIT answers from one read made before the waiters wake.
        self.notifier = PhaseNotifier(settings.max_waiters, store.get_job)
        self.auth = Authenticator(store, settings.allow_anonymous)
        fetcher = SafeFetcher(
            settings.allowed_fetch_hosts,
            settings.allowed_fetch_networks,
            settings.max_fetch_bytes,
            settings.fetch_timeout,
        )
        self.stager = InputStager(
            store,
            fetcher,
            settings.max_upload_bytes,
            roots=(settings.jobs_dir, settings.provenance_dir, settings.dl3_store),
            job_roots=(settings.jobs_dir,),
        )
        self.lifecycle = Lifecycle(settings, store, self.notifier, self.definition)
        self.clock = CreationClock()
        self.provenance = ProvenanceService(settings, store, self.definition)
        self.lifecycle.start_hooks.append(lambda job, defn, jdir: snapshot_definition(jdir, defn))
        self.lifecycle.final_hooks.append(self.provenance.write_job)

    # ------------------------------------------------------------- helpers
    def definition(self, jobname: str) -> JobDefinition:
        """The job definition, shared and read-only (no copy on the request path)."""
        return self.registry.get_shared(jobname)

    def visible_job(self, user: User, jobname: str, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None or job.jobname != jobname or not can_read(user, job.owner):
            raise NotFound(f"no job '{job_id[:64]}' in job list '{jobname}'")
        return job

    def job_dir(self, job_id: str) -> Path:
        return self.lifecycle.job_dir(job_id)

    def by_reference(self, job: Job) -> list[str]:
        """Parameters holding an uploaded file (shown byReference in the job XML)."""
        try:
            defn = self.definition(job.jobname)
        except NotFound:
            return []
        if not defn.used and not any(p.datatype == "file" for p in defn.parameters):
            return []
        inputs = read_inputs(self.job_dir(job.job_id))
        return [name for name, info in inputs.items() if info.get("upload")]

    # -------------------------------------------------------------- reading
    def list_jobs(self, user: User, jobname: str, query: ListQuery) -> list[JobRef]:
        self.definition(jobname)
        return self.store.jobs_visible_to(user, jobname, query.phases, query.after, query.last)

    @staticmethod
    def parse_list_query(params: list[tuple[str, str]]) -> ListQuery:
        phases: list[str] = []
        after = last = None
        for name, value in params:
            key = name.upper()
            if key == "PHASE":
                phases.append(value)
            elif key == "AFTER":
                after = parse_time("AFTER", value)
            elif key == "LAST":
                try:
                    last = int(value)
                except ValueError:
                    raise BadRequest(f"LAST: '{value[:32]}' is not an integer") from None
                if last <= 0:
                    raise BadRequest("LAST must be an integer greater than 0")
        return ListQuery(parse_phases(phases), after, last)

    def wait(
        self,
        user: User,
        jobname: str,
        job_id: str,
        timeout: int,
        phase: str | None,
        answered: Callable[[], bool] | None = None,
    ) -> Job:
        """Block until the job changes (or the timeout), without polling.

        The server layer may answer the client first, listening to the notifier (see
        handlers); ``answered`` tells whether it did, so that a change it answered
        before this waiter registered does not keep the waiting thread blocked.
        """
        job = self.visible_job(user, jobname, job_id)
        if phase is not None:
            wanted = parse_phases([phase])[0]
            if job.phase != wanted:
                return job
        if job.phase not in WAITABLE:
            return job
        limit = self.settings.max_wait
        seconds = limit if timeout < 0 else min(timeout, limit)
        if seconds <= 0:
            return job
        with self.notifier.waiting(job_id) as ticket:
            if ticket is None:  # too many waiters: answer now rather than starve others
                return job
            fresh = self.store.get_job(job_id)  # a change between read and registration?
            if fresh is None:
                raise NotFound(f"job '{job_id}' was deleted")
            if fresh.version != job.version or (answered is not None and answered()):
                return fresh
            wake = ticket.wait(seconds)
        if wake is None:  # the time is up
            return self.visible_job(user, jobname, job_id)
        # Every waiter woken by this change shares one read of the job.
        changed = wake.shared(lambda: self.store.get_job(job_id))
        if changed is None:
            raise NotFound(f"job '{job_id}' was deleted")
        return changed

    # ------------------------------------------------------------- creating
    def create_job(
        self,
        user: User,
        jobname: str,
        pairs: list[tuple[str, str]],
        uploads: dict[str, object],
    ) -> Job:
        defn = self.definition(jobname)
        if user.name == "anonymous" and not self.settings.allow_anonymous:
            raise Forbidden("anonymous users may not create jobs")
        req = split_request(pairs, uploads, self.settings.max_parameter_length)
        params = validate_parameters(defn, req.parameters, set(req.uploads))
        run = self._run_flag(req.control.get("PHASE"))
        now = self.clock.now()
        job = Job(
            job_id=new_job_id(),
            jobname=jobname,
            owner=user.name,
            phase=Phase.PENDING,
            creation_time=now,
            destruction_time=default_destruction(self.settings, now),
            execution_duration=self._duration(defn.execution_duration),
            parameters=params,
            run_id=req.control.get("RUNID") or None,
            quote=self.lifecycle.progress.quote(jobname, params, defn.quote, now),
        )
        if "EXECUTIONDURATION" in req.control:
            job.execution_duration = self._parse_duration(req.control["EXECUTIONDURATION"])
        if "DESTRUCTION" in req.control:
            job.destruction_time = self._parse_destruction(req.control["DESTRUCTION"])
        staged = []
        if defn.used or req.uploads:
            jdir = self.job_dir(job.job_id)
            try:
                staged = self.stager.stage(defn, user, jdir, params, req.uploads)
            except Exception:
                shutil.rmtree(jdir, ignore_errors=True)
                raise
            for s in staged:
                if s.entity.kind == "upload" and s.entity.location is None:
                    job.parameters[s.name] = s.filename
            write_inputs(jdir, {s.name: {"file": s.filename, "upload": s.new} for s in staged})
        self.store.insert_job(job, new_job_id)
        if staged:  # used entities: record the new ones, and what the job uses
            new_rows = [s.entity for s in staged if s.new]
            for row in new_rows:
                row.job_id = job.job_id
            self.store.add_entities(new_rows)
            self.store.add_usages(job.job_id, [(s.entity.entity_id, s.name) for s in staged])
        if run:
            self._start(user, job)
        return job

    @staticmethod
    def _run_flag(phase: str | None) -> bool:
        if phase is None or phase == "":
            return False
        if phase.upper() == "RUN":
            return True
        raise BadRequest(f"PHASE: only RUN is accepted when creating a job, not '{phase[:32]}'")

    def _duration(self, requested: int) -> int:
        limit = self.settings.max_execution_duration
        value = requested or self.settings.default_execution_duration
        if limit > 0 and (value <= 0 or value > limit):
            return limit
        return value

    def _parse_duration(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise BadRequest(f"EXECUTIONDURATION: '{text[:32]}' is not an integer") from None
        if value < 0:
            raise BadRequest(
                "EXECUTIONDURATION must be 0 (no limit) or a positive number of seconds"
            )
        return self._duration(value)

    @staticmethod
    def _parse_destruction(text: str) -> datetime:
        when = parse_time("DESTRUCTION", text)
        if when <= utcnow():
            raise BadRequest("DESTRUCTION must be in the future")
        return when

    # ------------------------------------------------------------- changing
    def _pending(self, user: User, jobname: str, job_id: str, what: str) -> Job:
        job = self.visible_job(user, jobname, job_id)
        if job.phase != Phase.PENDING:
            raise Conflict(
                f"{what} can only be changed while the job is PENDING (it is {job.phase.value})"
            )
        return job

    def set_execution_duration(self, user: User, jobname: str, job_id: str, text: str) -> None:
        job = self._pending(user, jobname, job_id, "executionDuration")
        value = self._parse_duration(text)
        if not self.store.set_execution_duration(job.job_id, value):
            raise Conflict("the job left PENDING meanwhile")
        self.notifier.notify(job.job_id)

    def set_destruction(self, user: User, jobname: str, job_id: str, text: str) -> None:
        job = self._pending(user, jobname, job_id, "destruction")
        value = self._parse_destruction(text)
        if not self.store.set_destruction(job.job_id, value):
            raise Conflict("the job left PENDING meanwhile")
        self.notifier.notify(job.job_id)

    def update_parameters(
        self, user: User, jobname: str, job_id: str, pairs: list[tuple[str, str]]
    ) -> None:
        job = self._pending(user, jobname, job_id, "parameters")
        defn = self.definition(jobname)
        req = split_request(pairs, {}, self.settings.max_parameter_length)
        if req.control.get("PHASE"):
            raise BadRequest("PHASE cannot be posted to parameters; POST it to phase")
        changed = validate_parameters(defn, req.parameters, set(), complete=False)
        used = {e.name for e in defn.used}
        if used & set(changed):
            raise BadRequest("inputs (used entities) can only be given when the job is created")
        merged = {**job.parameters, **changed}
        if not self.store.set_parameters(job.job_id, merged):
            raise Conflict("the job left PENDING meanwhile")
        self.notifier.notify(job.job_id)

    def change_phase(self, user: User, jobname: str, job_id: str, value: str) -> None:
        action = value.strip().upper()
        if action == "RUN":
            job = self.visible_job(user, jobname, job_id)
            if job.phase == Phase.PENDING:
                self._start(user, job)
            elif job.phase.is_final:
                raise Conflict(f"the job is {job.phase.value}; only a PENDING job can be run")
        elif action == "ABORT":
            job = self.visible_job(user, jobname, job_id)
            if job.phase.is_final:
                if job.phase == Phase.ABORTED:
                    return
                raise Conflict(f"the job is already {job.phase.value}")
            self.lifecycle.abort(job)
        elif action in ("SUSPEND", "ARCHIVE"):
            raise BadRequest(f"PHASE={action} is not supported by this service")
        else:
            raise BadRequest(f"PHASE: '{value[:32]}' is not RUN or ABORT")

    def _start(self, user: User, job: Job) -> None:
        limit = user.max_active_jobs or self.settings.max_active_jobs_per_user
        if limit and self.store.count_active(job.owner) >= limit:
            raise TooManyJobs(f"user {job.owner} already has {limit} active job(s), the limit")
        self.lifecycle.start_job(job)

    def delete_job(self, user: User, jobname: str, job_id: str) -> None:
        job = self.visible_job(user, jobname, job_id)
        self.lifecycle.destroy(job)

    # ---------------------------------------------------------------- files
    def result_file(self, user: User, jobname: str, job_id: str, name: str) -> tuple[Path, str]:
        job = self.visible_job(user, jobname, job_id)
        for r in job.results:
            if r.name == name:
                path = Path(r.path)
                roots = (self.job_dir(job_id), self.settings.provenance_dir / job_id)
                if not any(within(path, root) for root in roots) or not path.is_file():
                    raise NotFound(f"result '{name}' of job {job_id} is no longer available")
                return path, r.content_type
        raise NotFound(f"job {job_id} has no result '{name[:64]}'")

    def log_file(self, user: User, jobname: str, job_id: str, stream: str) -> Path | None:
        self.visible_job(user, jobname, job_id)
        path = self.job_dir(job_id) / f"{stream}.log"
        return path if path.is_file() else None

    def parameter_file(
        self, user: User, jobname: str, job_id: str, name: str
    ) -> tuple[Job, Path | None]:
        job = self.visible_job(user, jobname, job_id)
        if name not in job.parameters:
            raise NotFound(f"job {job_id} has no parameter '{name[:64]}'")
        if name in self.by_reference(job):
            path = self.job_dir(job_id) / job.parameters[name]
            if within(path, self.job_dir(job_id)) and path.is_file():
                return job, path
        return job, None

    # ------------------------------------------------------------- workers
    def worker_event(self, job_id: str, token: str, event: WorkerEvent) -> None:
        """An event POSTed by a remote runner: only with that job's own token."""
        job = self.store.get_job(job_id)
        if job is None or not tokens_match(token, job.callback_token_hash):
            raise Forbidden("invalid callback token for this job")
        if event.phase == job.phase:
            return
        if not self.lifecycle.report(job_id, event):
            current = self.store.get_job(job_id)
            phase = current.phase.value if current else "deleted"
            raise Conflict(f"event {event.phase.value} refused: the job is {phase}")
