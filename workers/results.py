"""Result collection and run context, after a job's script has ended.

A result is a file the job definition declares (a generated entity). Only the job's own
regular files inside its directory qualify: ``..``, absolute paths, symbolic links
(anywhere in the path, even pointing inside), FIFOs, devices, sockets and directories
are refused, and so are the job's private files (``job.json`` holds the callback token)
and hard links (``st_nlink > 1``: ``ln /etc/shadow $output`` or a link to another job's
result would otherwise be served, or changed behind the service's back). The path is
walked with ``O_NOFOLLOW`` one component at a time (no symlink swapped in between the
check and the open is followed), and a collected result is made read-only before its
SHA-256 is taken, so that the recorded hash stays the hash of what is served.

The service checks each result again the same way (:func:`inspect_result`), without
trusting what the worker reported.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from workers.jobdir import CONTEXT_FILE, SPEC_FILE, UWS_DIR, entity_file_name, read_private

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from pathlib import Path

    from workers.shapes import EntityLike

_OPTIONAL_MULTIPLICITIES = frozenset({"*", "?", "0..1", "0..*", "0..n", "0"})
_PRIVATE = "it is a private file of the job"
_DIRECTORY = "it is a directory"
_MAX_CONTEXT_BYTES = 64 * 1024
_MAX_CONTEXT_ITEMS = 200


# --- results -------------------------------------------------------------------------


def is_optional(multiplicity: str) -> bool:
    """True when a generated entity may be absent ("*", "?", "0..1"...)."""
    return multiplicity.strip().replace(" ", "") in _OPTIONAL_MULTIPLICITIES


def _resolve_inside(root: str, rel: str) -> tuple[str | None, str | None]:
    """(path relative to the job dir, None) or (None, why it is refused).

    Lexical only (``..`` and absolute paths): links are refused by
    :func:`inspect_result`, which walks the path without following any.
    """
    if not rel or os.path.isabs(rel):
        return None, "an absolute or empty path is not allowed"
    full = os.path.normpath(os.path.join(root, rel))
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
        return _hash_fd(fd)
    finally:
        os.close(fd)


def _hash_fd(fd: int) -> tuple[int, str]:
    # hashlib, not CPython's private ``_sha2`` (which spared a trivial job's runner only
    # hashlib's import: docs/benchmarks.md, "Worker runner").
    from hashlib import sha256

    digest = sha256()
    size = 0
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "it is a symbolic link"
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device"
    if stat.S_ISSOCK(mode):
        return "it is a socket"
    return "it is not a regular file"


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def inspect_result(root: str, inner: str, read_only: bool = True) -> tuple[int, str] | str:
    """(size, sha256) of the result ``inner`` (relative to the real directory ``root``),
    or why it is refused: not a regular file of its own (see the module docstring).

    Every directory on the way is opened with ``O_NOFOLLOW`` relative to the previous
    one, the last component is looked at with ``lstat`` before it is opened (a device is
    never opened) and opened with ``O_NOFOLLOW``; the opened file must be the one looked
    at. With ``read_only`` its write bits are cleared (``fchmod``) before it is hashed.
    """
    parts = inner.split(os.sep)
    try:
        dir_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        return f"its job directory cannot be opened ({exc.strerror})"
    fd = -1
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return "it does not exist"
            except OSError:  # ELOOP or ENOTDIR: a symlink or a file on the way
                return f"{part} in its path is a symbolic link or not a directory"
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            before = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return "it does not exist"
        if not stat.S_ISREG(before.st_mode):
            return _kind(before.st_mode)
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            return f"it cannot be opened without following links ({exc.strerror})"
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            return "it was replaced while it was being collected"
        if not stat.S_ISREG(info.st_mode):
            return _kind(info.st_mode)
        if info.st_nlink != 1:
            return (
                f"it has {info.st_nlink} hard links (a result must be a file of its own: "
                "copy a file into the job directory rather than link it)"
            )
        if read_only and info.st_mode & 0o222:
            try:
                os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o222)
            except OSError as exc:
                return f"it cannot be made read-only ({exc.strerror})"
        return _hash_fd(fd)
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(dir_fd)


def collect_result_records(
    job_dir: Path | str, generated: list[EntityLike], stamp: bool = True
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

    With ``stamp``, FITS and HDF5 results get their provenance references first
    (:func:`workers.jobside.stamp_results`), so the SHA-256 is that of the stamped file.
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
            if stamp:  # provenance references into FITS/HDF5 products, before hashing
                from workers.jobside import stamp_results

                stamp_results(root, [inner])
            info = inspect_result(root, inner)
            if not isinstance(info, str):
                found.append((inner, *info))
            elif info == "it does not exist" or (is_pattern and info == _DIRECTORY):
                continue  # missing (said below), or a directory a pattern matched
            else:
                problems.append(f"result {entity.name}: {rel} refused: {info}")
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


def problems_for(problems: list[str], entity: EntityLike) -> bool:
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
            data = json.loads(raw)
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
