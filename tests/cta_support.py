"""Running CTA job scripts in tests as the service runs them, in a process or in-process.

The job environment is the service's own (``workers.jobdir``: ``script.sh`` from the
definition, whitelisted environment, parameters and generated entities exported,
``UWS_*`` variables), not a copy of it. Two ways to run:

* :func:`run_job`: the definition's script line under bash in a new process, exactly as
  the local pool does (minus the wrapper that reports to the service);
* :func:`run_in_process`: the module that script line runs (``python -P -m cta.<step>``)
  run as ``__main__`` in this process, with the same environment, working directory and
  exit code. Meant for bad-input cases: each one is a fraction of a second instead of a
  new interpreter importing the science stack (ctapipe, gammapy: several seconds each on
  2 cores).

Importing this module makes the ``cta`` package (``scripts/cta``) importable in the test
process, as the script line's ``PYTHONPATH`` does for a job.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import runpy
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uws_server.jdl.votable import read_votable_file
from uws_server.jobdef import JobDefinition
from uws_server.managers.base import JobSpec
from workers.jobdir import PARAMETERS_FILE, SCRIPT_FILE, prepare_environment, prepare_job_dir

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
CTA = SCRIPTS / "cta"
JOBDEFS = REPO / "job_definitions"

if str(SCRIPTS) not in sys.path:  # the folder holding the ``cta`` package
    sys.path.append(str(SCRIPTS))
# What a process running a step outside the service needs on its path (the script
# line's ``$UWS_SCRIPTS_DIR:$UWS_LIB``): the ``cta`` package and ``workers``.
PYTHONPATH = os.pathsep.join([str(SCRIPTS), str(REPO)])


def step_command(step: str) -> list[str]:
    """The command line running ``cta.<step>`` in a new interpreter (with :data:`PYTHONPATH`)."""
    return [sys.executable, "-P", "-m", f"cta.{step}"]


_DEFINITIONS: dict[str, JobDefinition] = {}


@dataclass
class Finished:
    """What a job left: exit code, its output and how long it took."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def definition(name: str) -> JobDefinition:
    """The project's job definition ``name``, read by the service's own reader."""
    if name not in _DEFINITIONS:
        _DEFINITIONS[name] = read_votable_file(JOBDEFS / f"{name}_vot.xml")
    return _DEFINITIONS[name]


def prepare(
    name: str, params: dict[str, Any], job_dir: Path, store: Path, env: dict[str, str] | None
) -> dict[str, str]:
    """Make ``job_dir`` as the service does; the job's environment."""
    defn = definition(name)
    job_dir.mkdir(parents=True)
    parameters = {k: str(v) for k, v in params.items()}
    (job_dir / PARAMETERS_FILE).write_text(json.dumps(parameters, indent=1))
    spec = JobSpec(
        job_id=job_dir.name,
        jobname=name,
        job_dir=job_dir,
        script=defn.script,
        parameters=parameters,
        generated=list(defn.generated),
    )
    prepare_job_dir(spec)
    # what the service exports for every job (uws_server.app), plus one BLAS thread: the
    # jobs of a test share 2 cores with the test process
    server_env = {
        **os.environ,
        "UWS_SCRIPTS_DIR": str(SCRIPTS),
        "UWS_DL3_STORE": str(store),
        "OMP_NUM_THREADS": "1",
    }
    return {**prepare_environment(spec, server_env), **(env or {})}


def run_job(
    name: str,
    params: dict[str, Any],
    job_dir: Path,
    store: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> Finished:
    """Run job ``name`` in ``job_dir``: its definition's script under bash, a new process."""
    job_env = prepare(name, params, job_dir, store, env)
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", SCRIPT_FILE],
        cwd=job_dir,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


# The one form of a CTA step's script line (docs/architecture.md, "CTA job steps").
SCRIPT_LINE = re.compile(
    r'^PYTHONPATH="\$UWS_SCRIPTS_DIR:\$UWS_LIB" python -P -m (cta\.[a-z0-9_]+)$'
)


def step_module(name: str) -> str:
    """The module the definition's script line runs (``cta.<step>``)."""
    script = definition(name).script.strip()
    match = SCRIPT_LINE.match(script)
    assert match, script  # nothing else would run in-process
    return match.group(1)


def unit_converters() -> dict[Any, Any]:
    """A copy of matplotlib's unit converters, to put back after a step ran here (astropy's
    quantity_support() adds some). Taken after pyplot's import: matplotlib registers its
    date converters when ``matplotlib.dates`` is first imported, so a copy taken before
    that, put back, would leave every later time axis in this process without them (seen:
    a light curve's plot failing on ``datetime`` after another step ran first)."""
    import matplotlib.pyplot  # noqa: F401 (imports matplotlib.dates: the converters)
    import matplotlib.units

    return dict(matplotlib.units.registry)


def run_in_process(
    name: str,
    params: dict[str, Any],
    job_dir: Path,
    store: Path,
    env: dict[str, str] | None = None,
) -> Finished:
    """Run job ``name``'s script as ``__main__`` here: same files, environment, exit code.

    The process's environment, working directory, ``sys.argv``, ``sys.path``, standard
    streams, root logger, matplotlib's unit converters and figures and astropy's IERS
    settings (which the scripts' runtime set-up changes) are restored afterwards. Only
    for scripts that end quickly: a job that runs a ctapipe tool still starts that tool
    as a process.
    """
    from astropy.utils import iers

    job_env = prepare(name, params, job_dir, store, env)
    module = step_module(name)
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_path = list(sys.path)
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    saved_units = unit_converters()
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    start = time.monotonic()
    try:
        os.environ.clear()
        os.environ.update(job_env)
        os.chdir(job_dir)
        root.handlers[:] = []  # as in a new interpreter: the step's basicConfig applies
        sys.argv = [module]
        with contextlib.ExitStack() as stack:
            for key in ("auto_download", "auto_max_age", "iers_degraded_accuracy"):
                stack.enter_context(iers.conf.set_temp(key, getattr(iers.conf, key)))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            # a step another step imports (gammapy_spectra) is already in sys.modules:
            # runpy then warns that ``__main__`` is a second copy, which is what we want
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", "'cta\\.", RuntimeWarning, "runpy")
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        root.handlers[:], root.level = saved_logging
        import matplotlib.pyplot
        import matplotlib.units

        matplotlib.units.registry.clear()
        matplotlib.units.registry.update(saved_units)
        matplotlib.pyplot.close("all")
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return Finished(returncode, out.getvalue(), err.getvalue(), time.monotonic() - start)


def error_line(proc: Finished, job_dir: Path) -> str:
    """The job's one-line error: ``.uws/error.txt``, also the last line on stderr."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    text = (job_dir / ".uws" / "error.txt").read_text()
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert proc.stderr.strip().splitlines()[-1] == f"ERROR: {text.strip()}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return text.strip()


def shared_dir(name: str, build: Callable[[Path], None], basetemp: Path) -> Path:
    """A directory built once per test run and shared by every module and xdist worker.

    Why: the science chain costs a minute of CPU or more; built once, it is read by any
    test that needs it. Where: ``$UWS_TEST_SHARED_DIR/cta/<name>`` (set by
    tests/conftest.py for the whole run), else next to the workers' temporary
    directories under xdist, else this run's ``basetemp``. The first process takes an
    exclusive ``flock`` and builds; the others wait on the lock, then reuse the result.
    A failed build leaves ``<name>.failed`` with the reason, so the others fail at once
    with it instead of building again.
    """
    import fcntl

    root = os.environ.get("UWS_TEST_SHARED_DIR")
    if root:
        base = Path(root) / "cta"
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        base = basetemp.parent / "cta_shared"
    else:
        base = basetemp / "cta_shared"
    base.mkdir(parents=True, exist_ok=True)
    target, done, failed = base / name, base / f"{name}.done", base / f"{name}.failed"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return target
        if failed.exists():
            raise RuntimeError(f"shared {name} failed to build: {failed.read_text()}")
        if target.exists():  # a build killed half-way: start again
            import shutil

            shutil.rmtree(target)
        target.mkdir()
        try:
            build(target)
        except BaseException as exc:
            failed.write_text(f"{type(exc).__name__}: {exc}"[:4000])
            raise
        done.write_text("")
    return target
