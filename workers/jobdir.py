"""The job working directory: file names, ``job.json``, the script's environment.

Shared by the local manager (server side) and the worker runner, so both prepare a job
the same way. Security rules kept here: parameter values reach the script only through
the environment (never as shell text); names that would change how bash, the dynamic
loader or an interpreter behave are not exported; the job inherits only a whitelist of
the server's environment, which holds the server's own secrets.
"""

from __future__ import annotations

import os
import stat
import sys
from _thread import get_ident

from workers.logs import get_logger

# Only names, for the annotations: the worker runner reads job.json into plain objects
# (see workers.node), the service passes its JobSpec dataclass; both have the shape of
# workers.shapes. ``from __future__ import annotations`` keeps these unevaluated, so
# the runner never imports typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from workers.shapes import EntityLike, SpecLike

log = get_logger("workers.runner")

SPEC_FILE = "job.json"
PARAMETERS_FILE = "parameters.json"
SCRIPT_FILE = "script.sh"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
UWS_DIR = ".uws"
STATUS_FILE = f"{UWS_DIR}/status.json"
CONTEXT_FILE = f"{UWS_DIR}/context.json"  # written by job scripts: software versions...
PROGRESS_FILE = f"{UWS_DIR}/progress.json"  # written by job scripts (workers/progress.py)
EXIT_STATUS_FILE = f"{UWS_DIR}/exit_status"  # written by the local job wrapper

# Never exported from a parameter: they would let a value change how bash, the dynamic
# loader or an interpreter runs (BASH_ENV=file runs that file, LD_PRELOAD loads code...).
_RESERVED_NAMES = frozenset(
    "PATH HOME SHELL USER LOGNAME IFS ENV BASH_ENV SHELLOPTS BASHOPTS PS4 CDPATH GLOBIGNORE "
    "PROMPT_COMMAND EXECIGNORE POSIXLY_CORRECT HISTFILE TMPDIR TZDIR GCONV_PATH GETCONF_DIR "
    "HOSTALIASES LOCALDOMAIN LOCPATH MALLOC_TRACE NIS_PATH NLSPATH RESOLV_HOST_CONF "
    "RES_OPTIONS NODE_OPTIONS PERLLIB JAVA_TOOL_OPTIONS _JAVA_OPTIONS".split()
)
_RESERVED_PREFIXES = ("LD_", "BASH_", "UWS_", "PYTHON", "PERL5", "RUBY", "SLURM_")
# What a job inherits from the server's environment: a whitelist, because the server's
# environment holds its own secrets. ``UWS_*`` variables the server exports for jobs
# (UWS_SCRIPTS_DIR, UWS_DL3_STORE...) pass, except anything that looks like a secret
# (UWS_DATABASE_URL may carry a password).
_PASS_NAMES = frozenset(
    "PATH HOME USER LOGNAME SHELL LANG LANGUAGE TZ TMPDIR TERM HOSTNAME LD_LIBRARY_PATH "
    "VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV OMP_NUM_THREADS MKL_NUM_THREADS "
    "OPENBLAS_NUM_THREADS XDG_CACHE_HOME CTAPIPE_SVC_PATH".split()
)
_PASS_PREFIXES = ("LC_", "SLURM_", "UWS_")
# A name holding one of these (in any case) looks like a secret.
_SECRET_WORDS = ("DATABASE", "PASSW", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "CONFIG")


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def read_private(path: Path | str, limit: int) -> bytes | None:
    """A regular file's first ``limit`` bytes, refusing symlinks (the script wrote it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Write through a temporary file and a rename: readers see old or new, never half.

    The temporary file is created (exclusively) with ``mode`` from the start, so a
    secret is never readable by others, not even for a moment; the umask can only
    narrow it. No fsync: this guards against crashes of processes, not of the machine,
    and a job's launch must stay cheap.
    """
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a crashed writer with our pid and thread id
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def prepare_job_dir(spec: SpecLike) -> None:
    """Make the directory ready to run: ``.uws/``, and ``script.sh`` from the spec.

    ``script.sh`` is always (re)written from ``spec.script``, the operator's definition:
    whatever file of that name is already in the directory (an upload named
    ``script.sh``...) must never be what runs. OPUS definitions store scripts with CRLF
    line ends; bash would take the CR as part of the last word (``sleep 10\\r``
    fails), so it is removed. Status files of an earlier attempt are removed so they
    cannot be mistaken for this run's.
    """
    job_dir = os.fspath(spec.job_dir)
    try:
        os.mkdir(os.path.join(job_dir, UWS_DIR), 0o755)
    except FileExistsError:
        pass
    script = spec.script.replace("\r\n", "\n").encode()
    # replaces a symlink, never follows it
    atomic_write(os.path.join(job_dir, SCRIPT_FILE), script)
    for name in (STATUS_FILE, EXIT_STATUS_FILE):
        try:
            os.unlink(os.path.join(job_dir, name))
        except FileNotFoundError:
            pass


# --- environment ---------------------------------------------------------------------


def is_exportable(name: str) -> bool:
    """True when a parameter may become an environment variable of the script."""
    return (
        name.isascii()  # with isidentifier: [A-Za-z_][A-Za-z0-9_]*
        and name.isidentifier()
        and name not in _RESERVED_NAMES
        and not name.startswith(_RESERVED_PREFIXES)
    )


def base_environment(source: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in source.items()
        if (k in _PASS_NAMES or k.startswith(_PASS_PREFIXES)) and not _looks_secret(k)
    }


def entity_file_name(entity: EntityLike) -> str:
    """The file a generated entity is written to (its ``default``, else its name)."""
    return entity.default or entity.name


def prepare_environment(spec: SpecLike, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The script's environment: whitelisted server variables, parameters, entities.

    Values are handed over as they are (only NUL, which no environment can hold, is
    dropped); the script is a file, so a value is never parsed as shell text. Generated
    entities win over parameters of the same name so that the file the script writes is
    the one :func:`collect_results` looks for; ``UWS_*`` variables win over everything.
    """
    python = spec.python or sys.executable
    if base_env is None:
        env = _server_environment(python)
    else:
        env = _with_python_on_path(base_environment(base_env), python)
    for name, value in spec.parameters.items():
        if is_exportable(name):
            env[name] = str(value).replace("\x00", "")
        else:
            log.debug("job %s: parameter %r not exported to the environment", spec.job_id, name)
    for entity in spec.generated:
        if is_exportable(entity.name):
            env[entity.name] = entity_file_name(entity)
    job_dir = os.path.realpath(spec.job_dir)
    env["UWS_JOB_ID"] = spec.job_id
    env["UWS_JOB_DIR"] = job_dir
    env["UWS_PARAMETERS_FILE"] = os.path.join(job_dir, PARAMETERS_FILE)
    env["UWS_CONTEXT_FILE"] = os.path.join(job_dir, CONTEXT_FILE)
    env["UWS_PROGRESS_FILE"] = os.path.join(job_dir, PROGRESS_FILE)
    env["UWS_PYTHON"] = python
    env["UWS_JOBNAME"] = getattr(spec, "jobname", "") or ""  # job.json may not carry it
    # Where the ``workers`` package is, for job scripts importing workers.jobside.
    env["UWS_LIB"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return env


def _with_python_on_path(env: dict[str, str], python: str) -> dict[str, str]:
    """``env`` with the directory of the job's Python first on its ``PATH`` (if not on
    it already), so that ``python`` in a script is the interpreter the job asked for."""
    if python:
        bin_dir = os.path.dirname(os.path.abspath(python))
        path = env.get("PATH", "")
        if bin_dir not in path.split(os.pathsep):
            env["PATH"] = f"{bin_dir}{os.pathsep}{path}" if path else bin_dir
    return env


def _server_environment(python: str) -> dict[str, str]:
    """The whitelisted part of this process's environment with ``python`` on ``PATH``,
    read afresh for every job: a variable set, changed or removed through ``os.environ``
    is seen by the next job. (It was cached, keyed on CPython's private
    ``os.environ._data``, for a saving in a local job's start that no user feels:
    issue 14 keeps speed code on public interfaces only.)"""
    return _with_python_on_path(base_environment(dict(os.environ)), python)
