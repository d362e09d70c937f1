"""Result collection and run context, after a job's script has ended.

A result is a file the job definition declares (a generated entity). Only regular
files inside the job directory qualify: ``..`` and symlinks leading out are refused,
and so are the job's private files (``job.json`` holds the callback token).
"""

from __future__ import annotations

import os
import stat
import sys

from workers import jsonio
from workers.jobdir import CONTEXT_FILE, SPEC_FILE, UWS_DIR, entity_file_name, read_private

TYPE_CHECKING = False  # the service's types, for annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from pathlib import Path

    from uws_server.jobdef import EntityDef
    from uws_server.models import Result

# Files up to this size are hashed with the interpreter's built-in SHA-256, which costs
# nothing to import; larger ones with hashlib's OpenSSL one, faster per byte but ~2 ms
# of a runner's start-up to import.
_SMALL_FILE = 4 << 20

_OPTIONAL_MULTIPLICITIES = frozenset({"*", "?", "0..1", "0..*", "0..n", "0"})
_PRIVATE = "it is a private file of the job"
_MAX_CONTEXT_BYTES = 64 * 1024
_MAX_CONTEXT_ITEMS = 200


# --- results -------------------------------------------------------------------------


def is_optional(multiplicity: str) -> bool:
    """True when a generated entity may be absent ("*", "?", "0..1"...)."""
    return multiplicity.strip().replace(" ", "") in _OPTIONAL_MULTIPLICITIES


def _resolve_inside(root: str, rel: str) -> tuple[str | None, str | None]:
    """(path relative to the real job dir, None) or (None, why it is refused)."""
    if not rel or os.path.isabs(rel):
        return None, "an absolute or empty path is not allowed"
    full = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([full, root]) != root or full == root:
        return None, "it escapes the job directory"
    inner = os.path.relpath(full, root)
    first = inner.split(os.sep, 1)[0]
    if inner == SPEC_FILE or first == UWS_DIR:
        return None, _PRIVATE
    return inner, None


def guess_content_type(path: str) -> str:
    """From the file name, for results the definition gives no content type for.

    ``mimetypes`` is imported here, not at the top: it costs a runner several
    milliseconds of start-up, and most definitions declare their content types.
    """
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _sha256(size: int):  # type: ignore[no-untyped-def]
    if size <= _SMALL_FILE:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    else:
        from hashlib import sha256
    return sha256()


def hash_file(full: str) -> tuple[int, str] | None:
    """(size, sha256) of a regular file, not following a last-moment symlink swap."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        digest = _sha256(info.st_size)
        size = 0
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()
    finally:
        os.close(fd)


def collect_results(
    job_dir: Path | str, generated: list[EntityDef]
) -> tuple[list[Result], list[str]]:
    """:func:`collect_result_records` as :class:`Result` objects."""
    from uws_server.models import Result

    records, problems = collect_result_records(job_dir, generated)
    return [Result(**r) for r in records], problems


def collect_result_records(
    job_dir: Path | str, generated: list[EntityDef]
) -> tuple[list[dict[str, object]], list[str]]:
    """Results for the generated entities found in ``job_dir``, and the problems.

    A result is a dict with the fields of :class:`~uws_server.models.Result` (the wire
    form of ``.uws/status.json`` and of the final event).

    A ``default`` with glob characters (``*.fits``) may match several files; they are
    named ``<entity>`` when alone, ``<entity>_1``, ``<entity>_2``... otherwise. A
    declared entity that is missing is a problem unless its multiplicity is optional;
    a path that leaves the directory (``..``, a symlink) is always refused. A pattern
    quietly skips what cannot be a result (directories, the job's private files), so
    that ``*.json`` does not fail every job because of ``job.json``.
    """
    root = os.path.realpath(job_dir)
    results: list[dict[str, object]] = []
    problems: list[str] = []
    for entity in generated:
        pattern = entity_file_name(entity)
        is_pattern = not os.path.isabs(pattern) and any(c in pattern for c in "*?[")
        if is_pattern:
            import glob

            found_paths = glob.glob(pattern, root_dir=root, recursive=True, include_hidden=True)
            candidates = sorted(found_paths)
        else:
            candidates = [pattern]
        found: list[tuple[str, int, str]] = []
        for rel in candidates:
            inner, why = _resolve_inside(root, rel)
            if inner is None:
                if not (is_pattern and why == _PRIVATE):
                    problems.append(f"result {entity.name}: {rel} refused: {why}")
                continue
            info = hash_file(os.path.join(root, inner))
            if info is not None:
                found.append((inner, *info))
            elif os.path.lexists(os.path.join(root, inner)) and not is_pattern:
                problems.append(f"result {entity.name}: {rel} is not a regular file")
        if (
            not found
            and not is_optional(entity.multiplicity)
            and not problems_for(problems, entity)
        ):
            problems.append(f"result {entity.name}: {pattern} was not produced")
        for index, (inner, size, sha) in enumerate(found, start=1):
            content_type = entity.content_type or guess_content_type(inner)
            results.append(
                {
                    "name": entity.name if len(found) == 1 else f"{entity.name}_{index}",
                    "path": inner.replace(os.sep, "/"),
                    "content_type": content_type,
                    "size": size,
                    "sha256": sha,
                    "entity_id": None,
                }
            )
    return results, problems


def problems_for(problems: list[str], entity: EntityDef) -> bool:
    """True when a problem about ``entity`` is already recorded (avoid a second one)."""
    return any(p.startswith(f"result {entity.name}: ") for p in problems)


def collect_context(job_dir: Path | str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Where and with what the job ran: host, Python, plus ``.uws/context.json``.

    Job scripts write ``{"ctapipe": "0.32.0", ...}`` to ``$UWS_CONTEXT_FILE`` to report
    software versions for provenance; a malformed file is ignored, never fatal.
    """
    context: dict[str, str] = {}
    raw = read_private(os.path.join(job_dir, CONTEXT_FILE), _MAX_CONTEXT_BYTES)
    if raw:
        try:
            data = jsonio.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in list(data.items())[:_MAX_CONTEXT_ITEMS]:
                if isinstance(value, str | int | float | bool):
                    context[str(key)[:200]] = str(value)[:1000]
    context["host"] = os.uname().nodename  # gethostname(), without importing socket
    context["python"] = sys.version.split()[0]  # what platform.python_version() says
    context.update(extra or {})
    return context
