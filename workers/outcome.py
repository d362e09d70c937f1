"""A job's outcome: its final phase and message, ``.uws/status.json``, the event JSON.

The rules are here once, in plain values (phase names, dicts), for both sides: the
worker runner (:mod:`workers.node`, a short-lived process that must start cheaply and
so never imports the service's dataclasses) and the service's typed view of them
(:mod:`uws_server.worker_events`: ``JobStatus``, ``WorkerEvent``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC

from workers.jobdir import STATUS_FILE, STDERR_FILE, atomic_write, read_private
from workers.procs import signal_name
from workers.results import collect_context, collect_result_records

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path
    from typing import Any

    from workers.shapes import SpecLike


def time_to_json(value: datetime | None) -> str | None:
    """ISO 8601 with the offset; a naive time is UTC (the service's convention)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def stderr_tail(job_dir: Path | str) -> str:
    """The script's last non-empty line of stderr (300 characters at most)."""
    raw = read_private(os.path.join(job_dir, STDERR_FILE), 1 << 24) or b""
    lines = [ln.strip() for ln in raw[-4096:].decode("utf-8", "replace").splitlines()]
    last = next((ln for ln in reversed(lines) if ln), "")
    return last[:300]


def decide(
    spec: SpecLike,
    *,
    exit_code: int | None,
    signal: int | None,
    reason: str | None,
    received_signal: int | None = None,
) -> tuple[str, str | None, list[dict[str, Any]]]:
    """The final phase, the error message and the results (as dicts) of a job.

    ``reason``: None (the script ended by itself), ``"abort"`` (the client asked),
    ``"timeout"`` (execution duration), ``"terminated"`` (the runner got a signal,
    e.g. scancel). Results of a failed job are still listed: partial output helps.
    """
    results, problems = collect_result_records(spec.job_dir, spec.generated)
    phase, error = "ERROR", None
    if reason == "abort":
        phase, results = "ABORTED", []
    elif reason == "terminated":
        phase, results = "ABORTED", []
        error = f"job cancelled: the runner received {signal_name(received_signal or 15)}"
    elif reason == "timeout":
        error = f"execution duration of {spec.execution_duration} s exceeded"
    elif signal is not None:
        error = f"killed by signal {signal} ({signal_name(signal)})"
    elif exit_code is None:
        error = "the job ended without an exit status"
    elif exit_code != 0:
        error = f"script exited with code {exit_code}"
        if 128 < exit_code < 128 + 65:
            error += f" (killed by signal {exit_code - 128}?)"
        tail = stderr_tail(spec.job_dir)
        if tail:
            error += f": {tail}"
    elif problems:
        error = "; ".join(problems)
    else:
        phase = "COMPLETED"
    return phase, error, results


def status_record(
    phase: str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    error: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    results: list[dict[str, Any]] | None = None,
    context: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The content of ``.uws/status.json``."""
    return {
        "exit_code": exit_code,
        "signal": signal,
        "phase": phase,
        "error": error,
        "start_time": time_to_json(start_time),
        "end_time": time_to_json(end_time),
        "results": list(results or []),
        "context": dict(context or {}),
    }


def event_record(
    phase: str,
    *,
    error: str | None = None,
    results: list[dict[str, Any]] | None = None,
    external_id: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    context: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The wire form of an event (POSTed to ``/callback/<job_id>``)."""
    return {
        "phase": phase,
        "error": error,
        "results": list(results or []),
        "external_id": external_id,
        "start_time": time_to_json(start_time),
        "end_time": time_to_json(end_time),
        "context": {str(k): str(v) for k, v in (context or {}).items()},
    }


def final_records(
    spec: SpecLike,
    *,
    exit_code: int | None,
    signal: int | None,
    reason: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    received_signal: int | None = None,
    external_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(status file, final event) of a job whose script has ended."""
    phase, error, results = decide(
        spec, exit_code=exit_code, signal=signal, reason=reason, received_signal=received_signal
    )
    context = collect_context(spec.job_dir)
    times = {"start_time": start_time, "end_time": end_time}
    status = status_record(
        phase, exit_code=exit_code, signal=signal, error=error, results=results,
        context=context, **times,
    )  # fmt: skip
    event = event_record(
        phase, error=error, results=results, external_id=external_id, context=context, **times
    )
    return status, event


def write_status_record(job_dir: Path | str, record: dict[str, Any]) -> str:
    """Write ``.uws/status.json`` atomically (temporary file + rename)."""
    path = os.path.join(job_dir, STATUS_FILE)
    try:
        os.mkdir(os.path.dirname(path))
    except FileExistsError:
        pass
    atomic_write(path, json.dumps(record, separators=(",", ":"), allow_nan=False).encode())
    return path
