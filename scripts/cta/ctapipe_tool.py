"""Running ctapipe's own commands from a CTA step, with the toy DL0 EventSource registered.

Why: ctapipe discovers EventSources among imported subclasses (and ``ctapipe_io``
entry points). Importing :mod:`cta.toy.dl0` first and then calling the command's own
console entry point gives exactly ``ctapipe-process`` & co. without installing a plugin
package. :func:`run_ctapipe_tool` runs each tool in its own process (a fork, or
``python -P -m cta.ctapipe_tool``), so ctapipe's provenance singleton and memory start
clean for every tool; the tools' provenance logs are merged into the job's.

Usage as a launcher: ``python -P -m cta.ctapipe_tool ctapipe-process --input events.dl0.h5 ...``
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from workers import jobside

from .job import JobError, uws_dir

log = logging.getLogger("uws.cta.chain")

# What a new interpreter needs on its path to import this package and ``workers``: the
# folder holding ``cta`` and the one holding ``workers`` (as this process found them).
_IMPORT_ROOTS = tuple(
    dict.fromkeys(
        str(Path(mod.__file__).resolve().parents[1])  # type: ignore[arg-type]
        for mod in (sys.modules[__package__], sys.modules["workers"])
    )
)


def load(name: str) -> Callable[[], int | None]:
    """The console-script entry point of ctapipe command ``name``, imported.

    The toy EventSource is registered first and astropy kept offline (no IERS download).
    ``SystemExit`` with a message for an unknown command, as the command line would.
    """
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None

    from .toy import dl0  # noqa: F401  (registers ToyDL0EventSource)

    if not name.startswith("ctapipe-"):
        sys.exit("usage: python -P -m cta.ctapipe_tool ctapipe-<command> [arguments]")
    found = entry_points(group="console_scripts", name=name)
    if not found:
        sys.exit(f"no installed ctapipe command named {name}")
    return next(iter(found)).load()


def call(func: Callable[[], int | None], argv: list[str]) -> int | None:
    """Run an entry point as its command line would: ``argv[0]`` is the command's name."""
    sys.argv = list(argv)
    return func()


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
    target = Path(jobside.CTAPIPE_PROVENANCE_FILE)  # read by the service at job end
    merged = json.loads(target.read_text()) if target.exists() else []
    seen = {a.get("activity_uuid") for a in merged if isinstance(a, dict)}
    new = [a for a in activities if isinstance(a, dict) and a.get("activity_uuid") not in seen]
    merged.extend(new)
    target.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    return len(new)


def run_ctapipe_tool(name: str, args: list, label: str | None = None) -> None:
    """Run ctapipe command ``name`` (e.g. ``ctapipe-process``) unmodified, in a new process.

    The launcher (this module) registers the toy EventSource first. The tool's
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

    cmd = [sys.executable, "-P", "-m", "cta.ctapipe_tool", *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*_IMPORT_ROOTS, env.get("PYTHONPATH")]))
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

    func = load(argv[0])
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                # the streams on those descriptors, whatever sys.stdout/stderr were (a
                # caller may have redirected them to memory, as in-process tests do)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                logging.root.handlers.clear()
                code = _exit_code(call, func, argv)
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


def chain_context() -> dict[str, str]:
    """Extra context entries: the toy instrument and the packages only the chain uses."""
    from importlib import metadata

    from .toy import instrument

    extra = {"toy_instrument": instrument.INSTRUMENT_VERSION}
    for name in ("scikit-learn", "tables"):
        try:
            extra[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return extra


def main() -> None:
    """Dispatch to the console-script entry point named by the first argument."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -P -m cta.ctapipe_tool ctapipe-<command> [arguments]")
    sys.exit(call(load(sys.argv[1]), [sys.argv[1], *sys.argv[2:]]))


if __name__ == "__main__":
    main()
