"""The service's typed view of a job's outcome on a worker: status file, events, results.

The job side (:mod:`workers`) works on plain values so that the worker runner starts
cheaply and never imports the service: :mod:`workers.outcome` decides the final phase
and writes ``.uws/status.json`` and the event JSON as dicts, :mod:`workers.results`
collects results as dicts. This module is the service's side of that contract: it turns
those records into its dataclasses (:class:`JobStatus`, :class:`WorkerEvent`,
:class:`Result`) and type-checks what a worker sends (the callback handler, the local
and Slurm managers use it). It imports ``workers`` because the local manager runs the
same job-side rules in the server process.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uws_server.joblog import job_log
from uws_server.models import Phase, Result, WorkerEvent
from workers.jobdir import STATUS_FILE, read_private
from workers.outcome import decide, event_record, status_record, write_status_record
from workers.results import collect_context, collect_result_records

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the managers import this module
    from uws_server.jobdef import EntityDef
    from uws_server.managers.base import JobSpec

log = logging.getLogger(__name__)


def collect_results(
    job_dir: Path | str, generated: list[EntityDef]
) -> tuple[list[Result], list[str]]:
    """:func:`workers.results.collect_result_records` as :class:`Result` objects."""
    records, problems = collect_result_records(job_dir, generated)
    return [Result(**r) for r in records], problems


@dataclass
class JobStatus:
    """``.uws/status.json``: the final state, written before anyone is told about it."""

    phase: Phase
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    results: list[Result] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)


def _time_from_json(value: Any, key: str) -> datetime | None:
    """Naive UTC, the service's convention for every stored time (see ``utcnow``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def result_to_json(result: Result) -> dict[str, Any]:
    return asdict(result)


def result_from_json(data: Any) -> Result:
    """A :class:`Result` from untrusted JSON, with every field type-checked."""
    if not isinstance(data, dict):
        raise ValueError("result: expected an object")
    name, path = data.get("name"), data.get("path")
    if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
        raise ValueError("result: name and path must be non-empty strings")
    size = data.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError("result: size must be a non-negative integer")
    sha = data.get("sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise ValueError("result: sha256 must be 64 lowercase hex digits")
    content_type = data.get("content_type") or "application/octet-stream"
    entity_id = data.get("entity_id")
    if not isinstance(content_type, str) or not (entity_id is None or isinstance(entity_id, str)):
        raise ValueError("result: content_type and entity_id must be strings")
    return Result(name, path, content_type, size, sha, entity_id)


def status_to_json(status: JobStatus) -> dict[str, Any]:
    return status_record(
        status.phase.value,
        exit_code=status.exit_code,
        signal=status.signal,
        error=status.error,
        start_time=status.start_time,
        end_time=status.end_time,
        results=[result_to_json(r) for r in status.results],
        context=status.context,
    )


def write_status(job_dir: Path | str, status: JobStatus) -> Path:
    """Write ``.uws/status.json`` atomically (temporary file + rename)."""
    return Path(write_status_record(job_dir, status_to_json(status)))


def read_status(job_dir: Path | str) -> JobStatus | None:
    """The final status if the job got that far; None if absent or unreadable."""
    raw = read_private(Path(job_dir) / STATUS_FILE, 16 * 1024 * 1024)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        event = event_from_json(data)
        exit_code, sig = data.get("exit_code"), data.get("signal")
        if not all(v is None or type(v) is int for v in (exit_code, sig)):
            raise ValueError("exit_code and signal must be integers")
    except ValueError as exc:
        job_log(log, Path(job_dir).name).warning("unreadable status file in %s: %s", job_dir, exc)
        return None
    return JobStatus(
        phase=event.phase,
        exit_code=exit_code,
        signal=sig,
        error=event.error,
        start_time=event.start_time,
        end_time=event.end_time,
        results=event.results,
        context=event.context,
    )


def status_to_event(status: JobStatus, external_id: str | None = None) -> WorkerEvent:
    return WorkerEvent(
        phase=status.phase,
        error=status.error,
        results=list(status.results),
        external_id=external_id,
        start_time=status.start_time,
        end_time=status.end_time,
        context=dict(status.context),
    )


def final_status(
    spec: JobSpec,
    *,
    exit_code: int | None,
    signal: int | None,
    reason: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    received_signal: int | None = None,
    context: dict[str, str] | None = None,
) -> JobStatus:
    """Decide the final phase and message, and gather results and context.

    ``reason``: None (the script ended by itself), ``"abort"`` (the client asked),
    ``"timeout"`` (execution duration), ``"terminated"`` (the runner got a signal,
    e.g. scancel). Results of a failed job are still listed: partial output helps.
    """
    phase, error, results = decide(
        spec, exit_code=exit_code, signal=signal, reason=reason, received_signal=received_signal
    )
    return JobStatus(
        phase=Phase(phase),
        exit_code=exit_code,
        signal=signal,
        error=error,
        start_time=start_time,
        end_time=end_time,
        results=[Result(**r) for r in results],
        context=collect_context(spec.job_dir, context),
    )


# --- events --------------------------------------------------------------------------


def event_to_json(event: WorkerEvent) -> dict[str, Any]:
    """The wire form of a :class:`WorkerEvent` (POSTed to ``/callback/<job_id>``)."""
    return event_record(
        Phase(event.phase).value,
        error=event.error,
        results=[result_to_json(r) for r in event.results],
        external_id=event.external_id,
        start_time=event.start_time,
        end_time=event.end_time,
        context=event.context,
    )


def event_from_json(data: Any) -> WorkerEvent:
    """Parse and type-check an event; ``ValueError`` with a message if malformed.

    Times come back as naive UTC, like every time the service stores; on the wire they
    always carry their offset (a naive time is sent as UTC). Result paths are not
    checked against a directory here: the service does that, it knows the job dir.
    """
    if not isinstance(data, dict):
        raise ValueError("event: expected a JSON object")
    try:
        phase = Phase(data.get("phase"))
    except ValueError:
        raise ValueError(f"event: unknown phase {data.get('phase')!r}") from None
    error, external_id = data.get("error"), data.get("external_id")
    if not all(v is None or isinstance(v, str) for v in (error, external_id)):
        raise ValueError("event: error and external_id must be strings or null")
    results = data.get("results") or []
    context = data.get("context") or {}
    if not isinstance(results, list) or not isinstance(context, dict):
        raise ValueError("event: results must be a list and context an object")
    return WorkerEvent(
        phase=phase,
        error=error,
        results=[result_from_json(r) for r in results],
        external_id=external_id,
        start_time=_time_from_json(data.get("start_time"), "start_time"),
        end_time=_time_from_json(data.get("end_time"), "end_time"),
        context={str(k): str(v) for k, v in context.items()},
    )
