"""The job definitions directory: loading, looking up, saving with history, deleting.

The directory is the source of truth, so operators may still edit files by hand: the
registry notices changed files (by mtime, size and inode, at most every
``reload_interval`` seconds) and re-reads only those. A malformed file never stops the
service: it is logged with its reason, listed in :attr:`JobDefinitionRegistry.errors`
and skipped, and the other definitions keep working.

Nothing is written outside the directory whatever a definition says: the only name used
in a path is the definition's, and it must match ``^[A-Za-z][A-Za-z0-9_-]{0,63}$``
before any file is touched (OPUS built paths from the RESOURCE name, so a file naming
itself ``../../x`` could overwrite files elsewhere). Writes go to a temporary file in
the same directory and are renamed into place, so a reader never sees half a file, and
the version replaced is kept under ``.history/<name>/``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from uws_server.errors import DefinitionError, NotFound
from uws_server.jdl.validate import is_safe_name, validate
from uws_server.jdl.votable import MAX_DEFINITION_BYTES, read_votable, write_votable
from uws_server.jobdef import JobDefinition

log = logging.getLogger(__name__)

VOT_SUFFIX = "_vot.xml"
HISTORY_DIR = ".history"
_TIMESTAMP_RE = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z(?:-[0-9]{1,4})?$")


@dataclass(frozen=True)
class LoadError:
    """A definition file that could not be used, and why."""

    file: str  # file name inside the directory
    reason: str


@dataclass(frozen=True)
class HistoryEntry:
    """One earlier version of a definition, kept when it was replaced or deleted."""

    timestamp: str  # UTC, e.g. 20250101T120000.000000Z: when it stopped being current
    file: str  # file name inside .history/<name>/
    size: int


@dataclass
class _Cached:
    signature: tuple[int, int, int]  # mtime_ns, size, inode
    definition: JobDefinition | None
    error: str | None = None


def name_from_filename(filename: str) -> str | None:
    """The definition name a file in the directory should hold (None: not a definition)."""
    if filename.startswith("."):
        return None
    if filename.endswith(VOT_SUFFIX) and len(filename) > len(VOT_SUFFIX):
        return filename[: -len(VOT_SUFFIX)]
    if filename.endswith(".xml") and len(filename) > 4:
        return filename[:-4]
    return None


def _not_found(name: str) -> NotFound:
    shown = name if len(name) <= 80 else name[:80] + "..."
    return NotFound(f"no job definition named {shown!r}")


class JobDefinitionRegistry:
    """Thread-safe access to the definitions of one directory.

    ``get``, ``names`` and ``all`` return copies: callers may change what they get
    without affecting other requests.
    """

    def __init__(self, directory: str | os.PathLike[str], *, reload_interval: float | None = 2.0):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.reload_interval = reload_interval
        self._lock = threading.RLock()
        self._cache: dict[str, _Cached] = {}  # file name -> what was read from it
        self._definitions: dict[str, JobDefinition] = {}
        self._files: dict[str, str] = {}  # definition name -> file name
        self._errors: list[LoadError] = []
        self._last_scan = float("-inf")

    # -- loading ---------------------------------------------------------------------

    def load_all(self) -> list[str]:
        """Read every definition file again; returns the names now available."""
        with self._lock:
            self._cache.clear()
            self._scan()
            return sorted(self._definitions)

    def _maybe_refresh(self) -> None:
        if self.reload_interval is None:
            return
        if time.monotonic() - self._last_scan < self.reload_interval:
            return
        with self._lock:
            if time.monotonic() - self._last_scan >= self.reload_interval:
                self._scan()

    def _scan(self) -> None:
        signatures: dict[str, tuple[int, int, int]] = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if name_from_filename(entry.name) and entry.is_file():
                        st = entry.stat()
                        signatures[entry.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as exc:
            # Keep serving what was loaded rather than dropping every definition.
            log.error("cannot list job definitions in %s: %s", self.directory, exc)
            return
        cache: dict[str, _Cached] = {}
        for filename, signature in signatures.items():
            cached = self._cache.get(filename)
            if cached is None or cached.signature != signature:
                cached = self._read(filename, signature)
            cache[filename] = cached
        self._cache = cache
        self._rebuild()
        self._last_scan = time.monotonic()

    def _read(self, filename: str, signature: tuple[int, int, int]) -> _Cached:
        path = self.directory / filename
        expected = name_from_filename(filename)
        try:
            if signature[1] > MAX_DEFINITION_BYTES:
                raise DefinitionError([("file", f"larger than {MAX_DEFINITION_BYTES} bytes")])
            defn = read_votable(path.read_bytes(), str(path))
            if defn.name != expected:
                raise DefinitionError(
                    [("name", f"RESOURCE name {defn.name!r} does not match the file name")]
                )
        except DefinitionError as exc:
            reason = "; ".join(f"{field}: {why}" for field, why in exc.problems)
        except OSError as exc:
            reason = f"cannot read: {exc.strerror or exc}"
        except Exception as exc:  # a bad file must never stop the service
            log.exception("unexpected error reading job definition %s", path)
            reason = f"unexpected error: {exc}"
        else:
            log.info("job definition %s loaded from %s", defn.name, path)
            return _Cached(signature, defn)
        log.error("job definition file %s skipped: %s", path, reason)
        return _Cached(signature, None, reason)

    def _rebuild(self) -> None:
        definitions: dict[str, JobDefinition] = {}
        files: dict[str, str] = {}
        errors: list[LoadError] = []
        # <name>_vot.xml wins over a hand-made <name>.xml holding the same definition.
        for filename in sorted(self._cache, key=lambda f: (not f.endswith(VOT_SUFFIX), f)):
            cached = self._cache[filename]
            if cached.definition is None:
                errors.append(LoadError(filename, cached.error or "unreadable"))
                continue
            name = cached.definition.name
            if name in definitions:
                errors.append(LoadError(filename, f"ignored: {files[name]} defines {name!r}"))
                continue
            definitions[name] = cached.definition
            files[name] = filename
        self._definitions, self._files, self._errors = definitions, files, errors

    # -- reading ---------------------------------------------------------------------

    @property
    def errors(self) -> list[LoadError]:
        """The files skipped at the last scan, with the reason."""
        self._maybe_refresh()
        with self._lock:
            return list(self._errors)

    def get(self, name: str) -> JobDefinition:
        """The definition called ``name``; raises :class:`NotFound` if there is none."""
        self._maybe_refresh()
        with self._lock:
            defn = self._definitions.get(name)
        if defn is None:
            raise _not_found(name)
        return copy.deepcopy(defn)

    def get_shared(self, name: str) -> JobDefinition:
        """The loaded definition itself, without a copy: for readers on the hot path.

        Callers must not change it (the service only reads definitions); a save
        replaces the object rather than mutating it, so a reader never sees a
        half-updated definition.
        """
        self._maybe_refresh()
        defn = self._definitions.get(name)
        if defn is None:
            raise _not_found(name)
        return defn

    def __contains__(self, name: object) -> bool:
        self._maybe_refresh()
        with self._lock:
            return name in self._definitions

    def names(self) -> list[str]:
        self._maybe_refresh()
        with self._lock:
            return sorted(self._definitions)

    def all(self) -> list[JobDefinition]:
        """Every loaded definition, sorted by name."""
        self._maybe_refresh()
        with self._lock:
            found = [self._definitions[n] for n in sorted(self._definitions)]
        return copy.deepcopy(found)

    # -- writing ---------------------------------------------------------------------

    def _current_path(self, name: str) -> Path:
        if not is_safe_name(name):
            raise DefinitionError([("name", f"{name!r} is not a safe definition name")])
        path = self.directory / f"{name}{VOT_SUFFIX}"
        if path.parent != self.directory:  # cannot happen with a safe name; never trust it
            raise DefinitionError([("name", f"{name!r} leaves the definitions directory")])
        return path

    def _history_dir(self, name: str) -> Path:
        self._current_path(name)  # checks the name
        folder = self.directory / HISTORY_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.resolve().is_relative_to(self.directory):
            raise OSError(f"history folder {folder} leads outside {self.directory}")
        return folder

    def _archive(self, name: str, path: Path, *, move: bool) -> Path:
        """Put ``path`` in the history of ``name``; move it, or copy it (atomically)."""
        folder = self._history_dir(name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = folder / f"{stamp}{VOT_SUFFIX}"
        n = 0
        while dest.exists():
            n += 1
            dest = folder / f"{stamp}-{n}{VOT_SUFFIX}"
        if move:
            os.replace(path, dest)
        else:
            self._atomic_write(dest, path.read_bytes())
        return dest

    @staticmethod
    def _atomic_write(target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def save(self, defn: JobDefinition) -> bool:
        """Validate and store ``defn`` as ``<dir>/<name>_vot.xml``; True if it is new.

        Raises :class:`DefinitionError` listing every problem, before anything is
        written. The version replaced goes to the history; saving an identical
        definition changes nothing.
        """
        problems = validate(defn)
        if problems:
            raise DefinitionError(problems, defn.name if is_safe_name(defn.name) else None)
        data = write_votable(defn)
        # Reading back proves the stored file will load, in its canonical form.
        read_votable(data, defn.name)
        target = self._current_path(defn.name)
        legacy = self.directory / f"{defn.name}.xml"
        with self._lock:
            created = not target.exists() and not legacy.exists()
            if target.exists():
                if target.read_bytes() == data:
                    self._scan()
                    return False
                self._archive(defn.name, target, move=False)
            self._atomic_write(target, data)
            if legacy.exists():
                self._archive(defn.name, legacy, move=True)
            log.info("job definition %s %s", defn.name, "created" if created else "updated")
            self._scan()
            return created

    def delete(self, name: str) -> None:
        """Remove a definition (moved to its history); raises NotFound if there is none.

        A file that failed to load can be deleted too: that is how an operator clears it.
        """
        if not is_safe_name(name):
            raise _not_found(name)
        paths = [self.directory / f"{name}{VOT_SUFFIX}", self.directory / f"{name}.xml"]
        with self._lock:
            existing = [p for p in paths if p.is_file()]
            if not existing:
                raise _not_found(name)
            for path in existing:
                self._archive(name, path, move=True)
            log.info("job definition %s deleted", name)
            self._scan()

    def history(self, name: str) -> list[HistoryEntry]:
        """Earlier versions of ``name``, newest first (also after it was deleted)."""
        if not is_safe_name(name):
            raise _not_found(name)
        folder = self.directory / HISTORY_DIR / name
        with self._lock:
            if not folder.is_dir():
                if name in self._definitions or (self.directory / f"{name}{VOT_SUFFIX}").exists():
                    return []
                raise _not_found(name)
            entries = []
            for path in folder.iterdir():
                stamp = path.name.removesuffix(VOT_SUFFIX)
                if path.name.endswith(VOT_SUFFIX) and _TIMESTAMP_RE.match(stamp):
                    entries.append(HistoryEntry(stamp, path.name, path.stat().st_size))
        entries.sort(key=lambda e: _stamp_key(e.timestamp), reverse=True)
        return entries

    def history_version(self, name: str, timestamp: str) -> bytes:
        """The file of one earlier version, as listed by :meth:`history`."""
        if not is_safe_name(name) or not _TIMESTAMP_RE.match(timestamp):
            raise NotFound("no such version")
        path = self.directory / HISTORY_DIR / name / f"{timestamp}{VOT_SUFFIX}"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no version {timestamp} of {name!r}") from None


def _stamp_key(stamp: str) -> tuple[str, int]:
    base, _, n = stamp.partition("-")
    return base, int(n or 0)
