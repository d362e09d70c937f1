"""The execution side of the rules: starting jobs, accepting reports, recovery, reaping.

Managers run jobs; this module decides what their reports mean. Every phase change is
a compare-and-set in storage, checked against ``models.TRANSITIONS``, so a late or
forged event can never move a job out of a final phase.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from uws_server.auth import hash_token
from uws_server.common import new_entity_id, utcnow, within
from uws_server.config import Settings
from uws_server.jobdef import JobDefinition
from uws_server.joblog import job_log, remember
from uws_server.managers.base import JobSpec, Manager, load_spec, write_spec
from uws_server.models import Job, Phase, WorkerEvent, can_transition
from uws_server.progress import ProgressTracker
from uws_server.storage import EntityRow, JobEnd, Store
from uws_server.storage.progress import ProgressStore
from uws_server.waiters import PhaseNotifier
from workers import jobside
from workers.jobside import read_stamped
from workers.results import inspect_result

log = logging.getLogger("uws_server.lifecycle")

# Which file in the job directory each used entity was staged to (set at creation).
INPUTS_FILE = ".uws/inputs.json"
# Where a job script may leave a one-line explanation of its failure.
ERROR_FILE = jobside.ERROR_FILE  # the script's one-line error summary
MAX_ERROR_CHARS = 4000
# Seconds a destroyed running job's directory waits in the trash for its processes.
TRASH_DELAY = 10.0


def write_inputs(job_dir: Path, inputs: dict[str, dict[str, object]]) -> None:
    (job_dir / ".uws").mkdir(parents=True, exist_ok=True)
    (job_dir / INPUTS_FILE).write_text(json.dumps(inputs))


def read_inputs(job_dir: Path) -> dict[str, dict[str, object]]:
    """``{entity name: {"file": name in the job dir, "upload": bool}}``; {} if none."""
    try:
        return json.loads((job_dir / INPUTS_FILE).read_text())
    except (OSError, ValueError):
        return {}


class Lifecycle:
    """Starts jobs on the manager and applies what the manager reports."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        notifier: PhaseNotifier,
        definitions: Callable[[str], JobDefinition],
    ) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier
        self.definitions = definitions
        self.manager: Manager | None = None
        # jobs' latest progress and expected run times (uws_server/progress.py)
        self.progress = ProgressTracker(ProgressStore(store.engine))
        self.final_hooks: list[Callable[[str], None]] = []
        # Called with (job, definition, job_dir) before a job is handed to the manager.
        self.start_hooks: list[Callable[[Job, JobDefinition, Path], None]] = []
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uws-final")
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def job_dir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def callback_base(self) -> str:
        if self.settings.callback_url:
            return self.settings.callback_url.rstrip("/")
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.settings.port}"

    # ------------------------------------------------------------------ start
    def start_job(self, job: Job) -> bool:
        """Write the job's directory and hand it to the manager (PENDING → QUEUED)."""
        assert self.manager is not None, "no manager configured"
        defn = self.definitions(job.jobname)
        jdir = self.job_dir(job.job_id)
        (jdir / ".uws").mkdir(parents=True, exist_ok=True)
        # The script sees each used entity as the file staged in its directory.
        parameters = dict(job.parameters)
        for name, info in read_inputs(jdir).items():
            parameters[name] = str(info["file"])
        (jdir / "parameters.json").write_text(json.dumps(parameters, indent=1))
        # Only remote runners call back; the local manager reports in-process. The token
        # never goes into job.json (a job could copy that into a result): the manager
        # hands it to the runner through the environment.
        remote = self.manager.remote
        token = secrets.token_urlsafe(32) if remote else ""
        spec = JobSpec(
            job_id=job.job_id,
            jobname=job.jobname,
            job_dir=jdir,
            script=defn.script,
            parameters=parameters,
            generated=list(defn.generated),
            execution_duration=job.execution_duration,
            callback_url=self.callback_base() if remote else "",
            callback_token=token,
            python=self.settings.pipeline_python,
            owner=job.owner,
            manager_options=self.manager.options_for(defn),
        )
        write_spec(dataclasses.replace(spec, callback_token="") if token else spec)
        remember(job)  # the managers' lines name it by id: they carry its context too
        for hook in self.start_hooks:
            hook(job, defn, jdir)
        ok = self.store.mark_queued(
            job.job_id, self.manager.name, hash_token(token) if token else None
        )
        if not ok:
            return False
        self.notifier.notify(job.job_id)
        try:
            self.manager.submit(spec)
        except Exception as exc:  # the manager could not even queue it
            job_log(log, job).exception("submit failed")
            self.report(job.job_id, WorkerEvent(Phase.ERROR, error=f"could not submit: {exc}"))
        return True

    # ----------------------------------------------------------------- report
    def report(self, job_id: str, event: WorkerEvent) -> bool:
        """Apply a manager's event; False when it was illegal or late (ignored)."""
        for _ in range(5):
            job = self.store.get_job(job_id)
            if job is None:
                return False
            if event.phase == job.phase:
                if event.external_id and event.external_id != job.external_id:
                    self.store.set_external_id(job_id, event.external_id)
                return True
            if not can_transition(job.phase, event.phase):
                job_log(log, job).info("ignored %s -> %s", job.phase.value, event.phase.value)
                return False
            if event.phase.is_final:
                end_time = event.end_time or utcnow()
                rows, refused = self._result_rows(job, event)
                if refused:  # the worker's word is not enough: the service looked itself
                    phase = Phase.ERROR if event.phase is Phase.COMPLETED else event.phase
                    error = "; ".join(filter(None, [event.error, *refused]))
                    event = dataclasses.replace(event, phase=phase, error=error)
                end = JobEnd(
                    phase=event.phase,
                    end_time=end_time,
                    start_time=None if job.start_time else (event.start_time or end_time),
                    error_summary=None
                    if event.phase == Phase.COMPLETED
                    else self._error_text(job_id, event),
                    context=json.dumps(event.context) if event.context else None,
                    external_id=event.external_id or None,
                    results=rows,
                )
                changed = self.store.finish(job_id, job.phase, end)
                if changed:
                    job_log(log, job).info("finished: %s", event.phase.value)
            elif event.phase == Phase.EXECUTING:
                changed = self.store.mark_executing(
                    job_id, job.phase, event.start_time or utcnow(), event.external_id
                )
            else:
                changed = self.store.mark_phase(job_id, job.phase, event.phase, event.external_id)
            if changed:
                self.notifier.notify(job_id)
                if event.phase.is_final:
                    self._after_final(job)
                return True
        return False

    def report_progress(self, job_id: str, progress: dict[str, object]) -> bool:
        """Keep a runner's progress report (never a phase change: no WAIT is woken)."""
        job = self.store.get_job(job_id)
        return job is not None and self.progress.record(job, progress)

    def _error_text(self, job_id: str, event: WorkerEvent) -> str:
        text = event.error or f"job ended in phase {event.phase.value}"
        err_file = self.job_dir(job_id) / ERROR_FILE
        try:
            if err_file.is_file() and within(err_file, self.job_dir(job_id)):
                detail = err_file.read_text(errors="replace").strip()
                if detail:
                    text = f"{detail} ({text})"
        except OSError:
            pass
        return text[:MAX_ERROR_CHARS]

    def _result_rows(
        self, job: Job, event: WorkerEvent
    ) -> tuple[list[EntityRow] | None, list[str]]:
        """The event's results as entity rows, and why any was refused; rows None when
        it reports none (earlier rows are kept).

        Each result is checked here again, without trusting the worker (a Slurm node
        runs the job's code as the runner's user): inside the job directory, reached
        without following any link, a regular file with a single link, read-only, and
        its size and SHA-256 are the service's own reading, which must match what the
        worker reported (else the file changed after it was collected).
        """
        if not event.results:
            return None, []
        jdir = self.job_dir(job.job_id)
        root = os.path.realpath(jdir)
        rows: list[EntityRow] = []
        refused: list[str] = []
        stamped = read_stamped(root)  # ids the script wrote into its products
        for r in event.results:
            path = r.path if os.path.isabs(r.path) else os.path.join(root, r.path)
            inner = os.path.relpath(os.path.normpath(path), root)
            if inner == "." or inner == ".." or inner.startswith("../"):
                why: str | None = "it is outside its job directory"
            else:
                seen = inspect_result(root, inner)
                if isinstance(seen, str):
                    why = seen
                elif (r.size is not None and r.size != seen[0]) or (
                    r.sha256 is not None and r.sha256 != seen[1]
                ):
                    why = "it changed after it was collected (size or SHA-256 differ)"
                else:
                    why = None
            if why is not None:
                job_log(log, job).warning("result %s (%s) refused: %s", r.name, r.path, why)
                refused.append(f"result {r.name}: {r.path} refused by the service: {why}")
                continue
            rows.append(
                EntityRow(
                    entity_id=self._stamped_id(
                        stamped.get(inner.replace(os.sep, "/")), job.job_id, rows
                    ),
                    job_id=job.job_id,
                    name=r.name,
                    path=os.path.join(root, inner),
                    location=None,
                    content_type=r.content_type,
                    size=seen[0],
                    sha256=seen[1],
                    owner=job.owner,
                    role=r.name,
                    kind="result",
                    created=utcnow(),
                )
            )
        return rows or None, refused

    def _stamped_id(self, claimed: str | None, job_id: str, rows: list[EntityRow]) -> str:
        """The id a script stamped into a result (workers.jobside.stamp), if it may have
        it: not another entity's (a script must not take over an existing id), else a
        new one. The same job recording its results again keeps its ids."""
        if not claimed or any(row.entity_id == claimed for row in rows):
            return new_entity_id()
        existing = self.store.get_entity(claimed)
        if existing is not None and existing.job_id != job_id:
            return new_entity_id()
        return claimed

    def _after_final(self, job: Job) -> None:
        """Run final hooks (provenance) in the background: never delay the phase change."""
        for hook in self.final_hooks:
            try:
                self._hooks.submit(self._run_hook, hook, job)
            except RuntimeError:  # stopping (a late worker callback): the phase stands,
                # and the provenance files are written when they are first asked for
                job_log(log, job).info("stopping: final hook %s left for later", hook)

    @staticmethod
    def _run_hook(hook: Callable[[str], None], job: Job) -> None:
        try:
            hook(job.job_id)
        except Exception:
            job_log(log, job).exception("final hook %s failed", getattr(hook, "__name__", hook))

    # ------------------------------------------------------------ abort/delete
    def abort(self, job: Job, message: str = "aborted by its owner") -> bool:
        ok = self.store.mark_aborted(job.job_id, utcnow(), message)
        if ok:
            if job.phase != Phase.PENDING and self.manager is not None:
                self.manager.abort(job)
            self.notifier.notify(job.job_id)
            self._after_final(job)
            job_log(log, job).info("aborted: %s", message)
        return ok

    def destroy(self, job: Job) -> None:
        """Kill if running, then remove the record and every file of the job.

        The directory is first renamed into ``.trash``: a dying process still writing
        there (its cwd follows the rename) cannot recreate the job's directory, and
        the trash is emptied once the processes had time to go.
        """
        jdir = self.job_dir(job.job_id)
        trash = self.settings.jobs_dir / ".trash" / f"{job.job_id}-{secrets.token_hex(4)}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            jdir.rename(trash)
        except FileNotFoundError:
            trash = None  # type: ignore[assignment]
        if job.phase.is_active and self.manager is not None:
            self.manager.abort(job)
        self.store.delete_job(job.job_id)
        job_log(log, job).info("deleted")
        shutil.rmtree(self.settings.provenance_dir / job.job_id, ignore_errors=True)
        self.notifier.notify(job.job_id)
        if trash is not None:
            if job.phase.is_active:
                threading.Timer(TRASH_DELAY, shutil.rmtree, (trash, True)).start()
            else:
                shutil.rmtree(trash, ignore_errors=True)

    def empty_trash(self) -> None:
        shutil.rmtree(self.settings.jobs_dir / ".trash", ignore_errors=True)

    # --------------------------------------------------------------- recovery
    def recover(self) -> None:
        """Adopt jobs a previous process left QUEUED or EXECUTING: never leave them hanging."""
        assert self.manager is not None
        left = self.store.jobs_in_phases([Phase.QUEUED, Phase.EXECUTING])
        mine: list[Job] = []
        specs: dict[str, JobSpec] = {}
        for job in left:
            remember(job)
            if job.manager not in (None, self.manager.name):
                self.report(
                    job.job_id,
                    WorkerEvent(
                        Phase.ERROR,
                        error=f"job ran on the {job.manager} manager, but the server "
                        f"restarted with the {self.manager.name} manager",
                    ),
                )
                continue
            try:
                specs[job.job_id] = load_spec(self.job_dir(job.job_id))
            except (OSError, ValueError, KeyError) as exc:
                self.report(
                    job.job_id, WorkerEvent(Phase.ERROR, error=f"job lost on restart: {exc}")
                )
                continue
            mine.append(job)
        if mine:
            log.info("recovering %d job(s) left by a previous process", len(mine))
            self.manager.recover(mine, specs)

    # ----------------------------------------------------------------- reaper
    def reap_once(self, now: datetime | None = None) -> int:
        ids = self.store.expired_job_ids(now or utcnow())
        for job_id in ids:
            job = self.store.get_job(job_id)
            if job is not None:
                self.destroy(job)
        if ids:
            log.info("reaper: destroyed %d expired job(s)", len(ids))
        self.empty_trash()
        return len(ids)

    def start_reaper(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.reaper_interval):
                try:
                    self.reap_once()
                except Exception:
                    log.exception("reaper pass failed")

        self._reaper = threading.Thread(target=loop, name="uws-reaper", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        self._stop.set()
        self._hooks.shutdown(wait=True, cancel_futures=False)


def default_destruction(settings: Settings, now: datetime) -> datetime:
    return now + timedelta(seconds=settings.default_destruction)
