"""The worker runner's command line: ``python -S -m workers.node JOB_DIR``.

What a batch system (Slurm) starts for each job on a worker node. It needs only the job
directory (``job.json``), never the database, and only the standard library. It writes
``.uws/status.json`` *before* the final callback, so a server that is down when the job
ends still finds the outcome later.

It is one short-lived process per job, so its start-up is part of every job's cost: on
a small node running many trivial jobs a second, a heavier runner made Slurm's waves of
jobs spill into the next second (docs/benchmarks.md, "Worker runner"). So this path imports no
dataclass, enum of ours, ``pathlib``, ``logging`` (unless something is logged) or
``typing``: ``job.json`` is read into plain objects (the keys the
service's ``JobSpec`` writes, see :mod:`workers.shapes`), and the shared job rules
(:mod:`workers.jobdir`, :mod:`workers.results`, :mod:`workers.outcome`,
:mod:`workers.supervise`, :mod:`workers.callbacks`) work on either. The batch script
runs it with ``-S`` (no ``site``, which costs a job more with an editable install).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

from workers import logs
from workers.callbacks import DEFAULT_RETRY_SECONDS, RetryPolicy, post_event
from workers.jobdir import (
    SCRIPT_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    prepare_environment,
    prepare_job_dir,
)
from workers.outcome import event_record, final_records, status_record, write_status_record

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from typing import Any

log = logs.get_logger("workers.runner")

# How a batch system hands the runner its callback token: never job.json, which the job
# can read (and copy into a result). See :func:`take_callback_token`.
TOKEN_ENV = "UWS_CALLBACK_TOKEN"

# A script still running after this many seconds is reported EXECUTING; a shorter job
# goes from QUEUED to its final phase in one callback (which carries its start time).
EXECUTING_DELAY = 0.2

USAGE = "usage: python -m workers.node JOB_DIR [--callback-retry SECONDS] [--grace SECONDS]"
_OPTIONS = {
    "--callback-retry": "seconds to keep retrying a callback while the server is unreachable",
    "--grace": "seconds between SIGTERM and SIGKILL when the job is stopped",
}


def read_spec(job_dir: str) -> SimpleNamespace:
    """``job.json`` as an object with its keys as attributes: read generically, so the
    service's ``JobSpec`` dataclass (and its :meth:`to_json`) is the only declaration of
    the spec. The directory it is in wins over the stored ``job_dir``, since a worker
    may mount the shared directory elsewhere than the server does."""
    with open(os.path.join(job_dir, SPEC_FILE), "rb") as f:
        data = json.loads(f.read())
    if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
        raise ValueError(f"{SPEC_FILE}: expected a JSON object with a job_id")
    spec = SimpleNamespace(**{str(k): v for k, v in data.items()})
    spec.job_dir = job_dir
    spec.parameters = {str(k): str(v) for k, v in (data.get("parameters") or {}).items()}
    spec.generated = [
        SimpleNamespace(**{str(k): v for k, v in e.items()})
        for e in data.get("generated") or []
        if isinstance(e, dict)
    ]
    return spec


def take_callback_token() -> str:
    """Remove the callback token from this process's environment and return it.

    The script runs as the same user as the runner, so it could read the runner's
    ``/proc/<pid>/environ`` (the environment the process was started with, kept in its
    memory): the value is overwritten there too before it is unset. The batch script
    execs the runner, so no parent shell keeps a copy either.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if token and not _scrub_through_proc(TOKEN_ENV, token):
        try:  # ctypes is costly for a runner to import: only if /proc/self/mem failed
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


def _scrub_through_proc(name: str, value: str) -> bool:
    """Overwrite ``name=value`` in the environment block the process started with
    (what ``/proc/<pid>/environ`` shows), writing to our own ``/proc/self/mem``."""
    entry = f"{name}=".encode()
    secret = value.encode()
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: proc(5) 50, 51
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = b"\0" + mem.read(end - start)
            at = block.find(b"\0" + entry + secret + b"\0")
            if at < 0:
                return False
            mem.seek(start + at + len(entry))  # block has one NUL in front
            mem.write(b"x" * len(secret))
            mem.seek(start)
            return secret not in mem.read(end - start)
    except (OSError, IndexError, ValueError):
        return False


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _send(
    spec: SimpleNamespace,
    payload: dict[str, object],
    policy: RetryPolicy,
    cancel: Any = None,
) -> bool:
    if not spec.callback_url or not spec.callback_token:
        return False
    return post_event(spec.callback_url, spec.job_id, spec.callback_token, payload, policy, cancel)


def contain(job_id: str) -> tuple[str | None, bool]:
    """(the job's cgroup, or None; whether this runner is a subreaper): how every process
    the job starts is found again (:mod:`workers.containment`). A cgroup where this node
    lets the runner make one, else a subreaper."""
    from workers import containment

    base = containment.cgroup_base()
    if base is not None:
        try:
            cgroup = containment.create_cgroup(containment.job_cgroup(base, job_id))
            # what runners killed before their job's end left here (a few stats)
            containment.sweep_cgroups(base)
            return cgroup, False
        except OSError as exc:
            log.warning("no cgroup (%s): using a subreaper", exc)
    if not containment.become_subreaper():
        log.warning("neither a cgroup nor a subreaper: only its process group is killed")
        return None, False
    return None, True


def run_job(spec: SimpleNamespace, retry_seconds: float, grace: float) -> str:
    """Run the job to its end: events, script, results, status file, final callback.
    Returns the final phase."""
    from workers.supervise import run_script

    job_dir = spec.job_dir
    prepare_job_dir(spec)
    env = prepare_environment(spec)
    external_id = os.environ.get("SLURM_JOB_ID") or None
    policy = RetryPolicy(total=retry_seconds)
    announcer: list[Any] = []  # (thread, cancel event) once EXECUTING is being sent
    watcher: list[Any] = []  # the progress relay, once the job runs long enough

    def on_start(_pid: int, start_time: datetime) -> None:
        # In a thread: an unreachable server must not delay the job itself. threading
        # is imported only here, by jobs that run long enough to report EXECUTING.
        import threading

        cancel = threading.Event()
        event = event_record("EXECUTING", external_id=external_id, start_time=start_time)
        thread = threading.Thread(target=_send, args=(spec, event, policy, cancel), daemon=True)
        thread.start()
        announcer.append((thread, cancel))
        if spec.callback_url:
            from workers.progress import relay_to_server

            watcher.append(relay_to_server(spec, job_dir))

    cgroup, subreaper = contain(spec.job_id)
    outcome = run_script(
        ["bash", SCRIPT_FILE],
        cwd=job_dir,
        env=env,
        stdout_path=os.path.join(job_dir, STDOUT_FILE),
        stderr_path=os.path.join(job_dir, STDERR_FILE),
        duration=spec.execution_duration,
        grace=grace,
        on_start=on_start,
        start_delay=EXECUTING_DELAY,
        cgroup=cgroup,
        subreaper=subreaper,
    )
    for relay in watcher:
        relay.unwatch(spec.job_id)  # its last progress, before its final event
        relay.stop()
    if outcome.leftovers:
        log.warning("killed %d process(es) it left behind", outcome.leftovers)
    status, event = final_records(
        spec,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        reason=outcome.reason,
        start_time=outcome.start_time,
        end_time=outcome.end_time,
        received_signal=outcome.received_signal,
        external_id=external_id,
    )
    write_status_record(job_dir, status)  # before the callback: nothing lost if down
    for thread, cancel in announcer:
        cancel.set()  # the final event supersedes a still-retrying EXECUTING one
        thread.join()
    if spec.callback_url and not _send(spec, event, policy):
        log.error("final event not delivered; it is in %s", STATUS_FILE)
    return str(status["phase"])


def _usage_error(message: str) -> None:
    print(f"{USAGE}\nerror: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_arguments(argv: list[str]) -> SimpleNamespace:
    """The command line, without ``argparse`` (costly for three arguments, with the
    ``shutil``, ``bz2`` and ``lzma`` its help formatter imports). Exits with
    status 2 and the usage on a mistake, 0 after ``--help``. Returns ``job_dir``,
    ``callback_retry`` and ``grace``.
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
    return SimpleNamespace(
        job_dir=positional[0], callback_retry=values["--callback-retry"], grace=values["--grace"]
    )


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 COMPLETED, 1 ERROR or ABORTED, 2 runner failure."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logs.CONFIGURE.update(level=20, format="%(asctime)s runner %(levelname)s %(message)s")
    job_dir = os.path.realpath(args.job_dir)
    token = take_callback_token()  # first: the script must never inherit it
    spec: SimpleNamespace | None = None
    try:
        spec = read_spec(job_dir)
        logs.bind_job(spec.job_id, getattr(spec, "owner", ""), getattr(spec, "jobname", ""))
        spec.callback_token = spec.callback_token or token
        phase = run_job(spec, args.callback_retry, args.grace)
    except Exception as exc:  # report what we can: the server would otherwise wait forever
        log.exception("job in %s failed to run", job_dir)
        error, end = f"runner failure: {exc}", _now()
        try:
            write_status_record(job_dir, status_record("ERROR", error=error, end_time=end))
        except OSError:
            log.exception("cannot write the status file in %s", job_dir)
        if spec is not None:
            failed = event_record("ERROR", error=error, end_time=end)
            _send(spec, failed, RetryPolicy(total=args.callback_retry))
        return 2
    return 0 if phase == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
