"""What runs a job on a worker node: the status file, the event JSON, the CLI.

The local manager (in the server process) and remote workers (Slurm) use the same code,
so a job behaves the same wherever it runs: the same environment and job directory
(:mod:`workers.jobdir`), the same result collection (:mod:`workers.results`), the same
status file and the same event JSON (here; re-exported names make this module the one
import for both sides). The CLI, ``python -m workers.runner <job_dir>``, is for remote
workers: it needs only the job directory (``job.json``), never the database. It writes
``.uws/status.json`` *before* the final callback, so a server that is down when the job
ends still finds the outcome later.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from uws_server.jobdef import EntityDef
from uws_server.managers.base import JobSpec
from uws_server.models import Phase, Result, WorkerEvent
from workers.callbacks import DEFAULT_RETRY_SECONDS, RetryPolicy, post_event
from workers.jobdir import (
    CONTEXT_FILE,
    EXIT_STATUS_FILE,
    PARAMETERS_FILE,
    SCRIPT_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    UWS_DIR,
    atomic_write,
    entity_file_name,
    is_exportable,
    load_spec,
    prepare_environment,
    prepare_job_dir,
    read_private,
    spec_from_json,
    spec_to_json,
    write_spec,
)
from workers.procs import signal_name
from workers.results import collect_context, collect_results, is_optional

log = logging.getLogger("workers.runner")

# How a batch system hands the runner its callback token: never job.json, which the job
# can read (and copy into a result). See :func:`take_callback_token`.
TOKEN_ENV = "UWS_CALLBACK_TOKEN"

__all__ = [
    "CONTEXT_FILE",
    "EXIT_STATUS_FILE",
    "PARAMETERS_FILE",
    "SCRIPT_FILE",
    "SPEC_FILE",
    "STATUS_FILE",
    "STDERR_FILE",
    "STDOUT_FILE",
    "TOKEN_ENV",
    "UWS_DIR",
    "EntityDef",
    "JobStatus",
    "atomic_write",
    "collect_context",
    "collect_results",
    "entity_file_name",
    "event_from_json",
    "event_to_json",
    "final_status",
    "is_exportable",
    "is_optional",
    "load_spec",
    "main",
    "prepare_environment",
    "prepare_job_dir",
    "read_status",
    "result_from_json",
    "result_to_json",
    "run_job",
    "spec_from_json",
    "spec_to_json",
    "status_to_event",
    "status_to_json",
    "take_callback_token",
    "write_spec",
    "write_status",
]


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


def _time_to_json(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


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
    return {
        "exit_code": status.exit_code,
        "signal": status.signal,
        "phase": status.phase.value,
        "error": status.error,
        "start_time": _time_to_json(status.start_time),
        "end_time": _time_to_json(status.end_time),
        "results": [result_to_json(r) for r in status.results],
        "context": dict(status.context),
    }


def write_status(job_dir: Path | str, status: JobStatus) -> Path:
    """Write ``.uws/status.json`` atomically (temporary file + rename)."""
    path = Path(job_dir) / STATUS_FILE
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, json.dumps(status_to_json(status), indent=1).encode())
    return path


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
        log.warning("%s: unreadable status file: %s", job_dir, exc)
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


def _stderr_tail(job_dir: Path) -> str:
    raw = read_private(job_dir / STDERR_FILE, 1 << 24) or b""
    lines = [ln.strip() for ln in raw[-4096:].decode("utf-8", "replace").splitlines()]
    last = next((ln for ln in reversed(lines) if ln), "")
    return last[:300]


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
    job_dir = Path(spec.job_dir)
    results, problems = collect_results(job_dir, spec.generated)
    phase, error = Phase.ERROR, None
    if reason == "abort":
        phase, results = Phase.ABORTED, []
    elif reason == "terminated":
        phase, results = Phase.ABORTED, []
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
        tail = _stderr_tail(job_dir)
        if tail:
            error += f": {tail}"
    elif problems:
        error = "; ".join(problems)
    else:
        phase = Phase.COMPLETED
    return JobStatus(
        phase=phase,
        exit_code=exit_code,
        signal=signal,
        error=error,
        start_time=start_time,
        end_time=end_time,
        results=results,
        context=collect_context(job_dir, context),
    )


# --- events --------------------------------------------------------------------------


def event_to_json(event: WorkerEvent) -> dict[str, Any]:
    """The wire form of a :class:`WorkerEvent` (POSTed to ``/callback/<job_id>``)."""
    return {
        "phase": Phase(event.phase).value,
        "error": event.error,
        "results": [result_to_json(r) for r in event.results],
        "external_id": event.external_id,
        "start_time": _time_to_json(event.start_time),
        "end_time": _time_to_json(event.end_time),
        "context": {str(k): str(v) for k, v in event.context.items()},
    }


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


# --- CLI -----------------------------------------------------------------------------


def take_callback_token() -> str:
    """Remove the callback token from this process's environment and return it.

    The script runs as the same user as the runner, so it could read the runner's
    ``/proc/<pid>/environ`` (the environment the process was started with, kept in its
    memory): the value is overwritten there too before it is unset. The batch script
    execs the runner, so no parent shell keeps a copy either.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            libc.getenv.restype = ctypes.c_void_p
            address = libc.getenv(TOKEN_ENV.encode())
            if address:
                ctypes.memset(address, ord("x"), len(token.encode()))
        except (OSError, AttributeError):
            log.warning("cannot scrub %s from the process environment", TOKEN_ENV)
    os.environ.pop(TOKEN_ENV, None)
    return token


def _send(
    spec: JobSpec, event: WorkerEvent, policy: RetryPolicy, cancel: threading.Event | None = None
) -> bool:
    if not spec.callback_url or not spec.callback_token:
        return False
    payload = event_to_json(event)
    return post_event(spec.callback_url, spec.job_id, spec.callback_token, payload, policy, cancel)


def run_job(spec: JobSpec, retry_seconds: float, grace: float) -> JobStatus:
    """Run the job to its end: events, script, results, status file, final callback."""
    from workers.supervise import run_script

    job_dir = Path(spec.job_dir)
    prepare_job_dir(spec)
    env = prepare_environment(spec)
    external_id = os.environ.get("SLURM_JOB_ID") or None
    policy = RetryPolicy(total=retry_seconds)
    cancel = threading.Event()
    notifier: list[threading.Thread] = []

    def on_start(_pid: int) -> None:
        # In a thread: an unreachable server must not delay the job itself.
        event = WorkerEvent(Phase.EXECUTING, external_id=external_id, start_time=_now())
        thread = threading.Thread(target=_send, args=(spec, event, policy, cancel), daemon=True)
        thread.start()
        notifier.append(thread)

    outcome = run_script(
        ["bash", SCRIPT_FILE],
        cwd=job_dir,
        env=env,
        stdout_path=job_dir / STDOUT_FILE,
        stderr_path=job_dir / STDERR_FILE,
        duration=spec.execution_duration,
        grace=grace,
        on_start=on_start,
    )
    status = final_status(
        spec,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        reason=outcome.reason,
        start_time=outcome.start_time,
        end_time=outcome.end_time,
        received_signal=outcome.received_signal,
    )
    write_status(job_dir, status)  # before the callback: nothing lost if the server is down
    cancel.set()  # the final event supersedes a still-retrying EXECUTING one
    for thread in notifier:
        thread.join()
    if spec.callback_url and not _send(spec, status_to_event(status, external_id), policy):
        log.error("job %s: final event not delivered; it is in %s", spec.job_id, STATUS_FILE)
    return status


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


USAGE = "usage: python -m workers.runner JOB_DIR [--callback-retry SECONDS] [--grace SECONDS]"
_OPTIONS = {
    "--callback-retry": "seconds to keep retrying a callback while the server is unreachable",
    "--grace": "seconds between SIGTERM and SIGKILL when the job is stopped",
}


@dataclass
class Arguments:
    job_dir: Path
    callback_retry: float
    grace: float = 10.0


def _usage_error(message: str) -> NoReturn:
    print(f"{USAGE}\nerror: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_arguments(argv: list[str]) -> Arguments:
    """The command line, without ``argparse``: argparse (with the ``shutil``, ``bz2``
    and ``lzma`` its help formatter imports) cost every job 10 ms of CPU for three
    arguments. Exits with status 2 and the usage on a mistake, 0 after ``--help``.
    """
    values: dict[str, float] = {
        "--callback-retry": float(os.environ.get("UWS_CALLBACK_RETRY", DEFAULT_RETRY_SECONDS)),
        "--grace": 10.0,
    }
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            options = "".join(f"\n  {name} SECONDS  {text}" for name, text in _OPTIONS.items())
            print(f"{USAGE}\n\n{__doc__}\noptions:{options}")
            raise SystemExit(0)
        name, eq, value = arg.partition("=")
        if name in values:
            if not eq:
                value = args.pop(0) if args else ""
            try:
                values[name] = float(value)
            except ValueError:
                _usage_error(f"{name} needs a number of seconds, not {value!r}")
        elif arg.startswith("-") and arg != "-":
            _usage_error(f"unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) != 1:
        _usage_error(f"one job directory expected, got {len(positional)}")
    return Arguments(Path(positional[0]), values["--callback-retry"], values["--grace"])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Exit status: 0 COMPLETED, 1 ERROR or ABORTED, 2 runner failure."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s")
    job_dir = args.job_dir.resolve()
    token = take_callback_token()  # first: the script must never inherit it
    spec: JobSpec | None = None
    try:
        spec = load_spec(job_dir)
        spec.callback_token = spec.callback_token or token
        status = run_job(spec, args.callback_retry, args.grace)
    except Exception as exc:  # report what we can: the server would otherwise wait forever
        log.exception("job in %s failed to run", job_dir)
        failed = JobStatus(Phase.ERROR, error=f"runner failure: {exc}", end_time=_now())
        try:
            write_status(job_dir, failed)
        except OSError:
            log.exception("cannot write the status file in %s", job_dir)
        if spec is not None:
            _send(spec, status_to_event(failed), RetryPolicy(total=args.callback_retry))
        return 2
    return 0 if status.phase is Phase.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
