"""Job-side plumbing of the ctapipe chain scripts (DL0 -> DL3), on top of ``common``.

``common`` (shared with the gammapy scripts) provides parameters, output names,
``.uws/context.json``, ``.uws/error.txt`` and the error conventions. The chain needs a
few things more, kept here so the five scripts stay consistent:

* used entities given as file paths (relative to the job dir, or absolute), each
  recorded in ``.uws/used.json`` as ``{"path", "role", "sha256"}`` -- appended, since a
  chain job reads several inputs;
* ctapipe commands run in a subprocess with the toy EventSource registered, their
  provenance logs merged into ``.uws/ctapipe_provenance.json``;
* boolean and choice parameters.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import common
from common import JobError, Params, output_path, report_progress, write_context

__all__ = [
    "ChainParams",
    "JobError",
    "merge_ctapipe_provenance",
    "output_path",
    "record_used",
    "report_progress",
    "resolve_input",
    "run",
    "run_ctapipe_tool",
    "write_context",
]

log = logging.getLogger("uws.cta.chain")

UWS_DIR = Path(".uws")
SCRIPT_DIR = Path(__file__).resolve().parent
MODELS_DIR = SCRIPT_DIR / "models"


class ChainParams(Params):
    """``common.Params`` plus booleans and enumerations."""

    def boolean(self, name: str, default: bool = False) -> bool:
        if not self.given(name):
            return default
        value = self.values[name].strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise JobError(f"parameter '{name}': '{self.values[name]}' is not a boolean")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise JobError(f"parameter '{name}' = '{value}' must be one of {', '.join(choices)}")
        return value


def uws_dir() -> Path:
    """``.uws`` in the job directory (the working directory), created on demand."""
    UWS_DIR.mkdir(exist_ok=True)
    return UWS_DIR


def resolve_input(value: str | None, name: str, default: Path | None = None) -> Path:
    """A used entity's file: relative to the job dir (where the service puts it) or absolute.

    ``default`` (a committed model, for instance) is used when the parameter is empty; it
    is copied into the job directory first, because the service only links reported
    inputs found inside the job directory or the DL3 store (by their SHA-256).
    """
    if not value:
        if default is None:
            raise JobError(f"input '{name}' is required")
        if not default.is_file():
            raise JobError(f"input '{name}' not given and no default at {default}")
        local = Path("defaults") / default.name
        local.parent.mkdir(exist_ok=True)
        shutil.copy2(default, local)
        return local.resolve()
    path = Path(value.removeprefix("file://"))
    if not path.is_file():
        raise JobError(f"input '{name}' not found: {value}")
    return path.resolve()


def record_used(path: Path, role: str) -> None:
    """Append an input to ``.uws/used.json`` (the job's provenance lists it as used)."""
    common.jobside.record_used(str(path), role)


def merge_ctapipe_provenance(log_path: Path) -> int:
    """Append a ctapipe provenance log's activities to ``.uws/ctapipe_provenance.json``.

    ctapipe Tools write a JSON list of activities (inputs/outputs with roles, resolved
    config, system); a job may run several tools, so the job keeps one list, without
    duplicates (by ``activity_uuid``). Returns the number of activities added.
    """
    log_path = Path(log_path)
    if not log_path.exists():
        log.warning("ctapipe provenance log %s missing", log_path)
        return 0
    try:
        activities = json.loads(log_path.read_text())
    except json.JSONDecodeError:
        log.warning("ctapipe provenance log %s is not JSON", log_path)
        return 0
    if isinstance(activities, dict):
        activities = [activities]
    uws_dir()
    target = Path(common.jobside.CTAPIPE_PROVENANCE_FILE)  # read by the service at job end
    merged = json.loads(target.read_text()) if target.exists() else []
    seen = {a.get("activity_uuid") for a in merged if isinstance(a, dict)}
    new = [a for a in activities if isinstance(a, dict) and a.get("activity_uuid") not in seen]
    merged.extend(new)
    target.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    return len(new)


def run_ctapipe_tool(name: str, args: list, label: str | None = None) -> None:
    """Run ctapipe command ``name`` (e.g. ``ctapipe-process``) unmodified, in a new process.

    The launcher ``ctapipe_tool.py`` registers the toy EventSource first. The tool's
    provenance log (``.uws/<label>.provenance.json``) is merged into the job's. A non-zero
    exit becomes a ``JobError`` quoting the last error line the tool logged.

    The process is a fork of this one when that is safe (see :func:`_run_forked`), else a
    new interpreter: either way the tool starts from this job's state, with its own
    provenance singleton, and cannot take the job down with it.
    """
    label = label or name
    prov = uws_dir() / f"{label}.provenance.json"
    prov.unlink(missing_ok=True)
    argv = [name, *map(str, args), "--provenance-log", str(prov)]
    log.info("running %s", " ".join(argv))
    if hasattr(os, "fork") and threading.active_count() == 1:
        returncode, output = _run_forked(argv)
    else:
        returncode, output = _run_subprocess(argv)
    sys.stdout.write(output)
    sys.stdout.flush()
    merge_ctapipe_provenance(prov)
    if returncode != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if any(k in ln for k in ("ERROR", "CRITICAL", "Error"))]
        detail = (errors or lines or ["no output"])[-1]
        raise JobError(f"{name} failed (exit {returncode}): {detail[:300]}")


def _run_subprocess(argv: list[str]) -> tuple[int, str]:
    """The tool in a new interpreter: exit code, then its stdout and stderr."""
    import subprocess

    cmd = [sys.executable, str(SCRIPT_DIR / "ctapipe_tool.py"), *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPT_DIR), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _run_forked(argv: list[str]) -> tuple[int, str]:
    """The tool in a fork of this process: exit code, then its stdout and stderr.

    Why: a new interpreter imports numpy, astropy, ctapipe and scikit-learn again,
    several seconds per tool on a loaded worker (``irf_production`` runs nine tools).
    The tool's module is imported here, once per job, and each fork starts with it
    loaded. Only done while this process runs one Python thread (a lock held by another
    thread would stay held in the child); the child gets a root logger without the
    job's handler, as a new interpreter has, and ends with ``os._exit`` so it never
    runs the job's own clean-up.
    """
    import tempfile

    import ctapipe_tool

    func = ctapipe_tool.load(argv[0])
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                logging.root.handlers.clear()
                code = _exit_code(ctapipe_tool.call, func, argv)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace") + err.read().decode(errors="replace")
    return os.waitstatus_to_exitcode(status), text


def _exit_code(call: Callable[..., int | None], *args: object) -> int:
    """What the interpreter's exit status would be after ``sys.exit(call(*args))``."""
    import traceback

    try:
        result = call(*args)
    except SystemExit as exc:
        result = exc.code
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
        return 1
    if result is None:
        return 0
    if isinstance(result, int):
        return result & 0xFF
    print(result, file=sys.stderr)
    return 1


def run(main: Callable[[ChainParams], None]) -> None:
    """Run a chain script's ``main`` with ``common``'s runtime set-up and error rules."""

    def job() -> None:
        from astropy.utils import iers

        iers.conf.auto_max_age = None
        params = ChainParams(ChainParams.load().values)
        write_context(chain_context())
        main(params)

    common.run_job(job)


def chain_context() -> dict[str, str]:
    """Extra context entries: the toy instrument and the packages only the chain uses."""
    from importlib import metadata

    import toy_instrument

    extra = {"toy_instrument": toy_instrument.INSTRUMENT_VERSION}
    for name in ("scikit-learn", "tables"):
        try:
            extra[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return extra
