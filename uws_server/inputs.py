"""Used entities: turning a client's upload, result URL, entity id or URL into a file.

The job's script only ever sees a file name inside its own directory. An entity id
or a result URL of this service resolves to the stored entity (the caller's right to
read it checked, no HTTP round trip), so a later job's provenance points at the very
entity an earlier job generated. External URLs are fetched by
:mod:`uws_server.fetch` (allowed hosts only, every address checked, no SSRF).

Files are created and copied without following links: a stored entity is copied from
a descriptor opened with ``O_NOFOLLOW`` on every component below its root (a symlink
swapped in after the file was collected is refused, not followed), it must be a
regular file, one with a single link when it lies in a job's directory, and its content
must still have the SHA-256 recorded for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from uws_server.common import can_read, new_entity_id, utcnow
from uws_server.errors import BadRequest, PayloadTooLarge
from uws_server.fetch import FetchRefused, FetchTooLarge, SafeFetcher, parse_target
from uws_server.jobdef import EntityDef, JobDefinition
from uws_server.models import User
from uws_server.storage import EntityRow, Store

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESULT_URL = re.compile(
    r"/rest/(?P<jobname>[A-Za-z][\w-]*)/(?P<job>[\w-]+)/results/(?P<name>[^/?#]+)$"
)


# Files of the job itself: an input staged under one of these names would replace
# the script, the specification or the logs.
RESERVED_NAMES = frozenset({"job.json", "parameters.json", "script.sh", "stdout.log", "stderr.log"})


def safe_filename(name: str, fallback: str = "input") -> str:
    """A file name that cannot leave a directory nor replace one of the job's own files."""
    base = _SAFE.sub("_", Path(name.replace("\\", "/")).name).lstrip(".")[:128] or fallback
    return f"input_{base}" if base in RESERVED_NAMES else base


@dataclass
class StagedInput:
    name: str  # the used entity's name (the parameter)
    filename: str  # file name in the job directory
    entity: EntityRow
    new: bool  # True if the entity row must be inserted


class InputStager:
    """Stages used entities into a job directory and returns their entity rows."""

    def __init__(
        self,
        store: Store,
        fetcher: SafeFetcher,
        max_upload: int,
        roots: Iterable[Path] = (),
        job_roots: Iterable[Path] = (),
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.max_upload = max_upload
        # Where stored entities' files may lie (jobs, provenance, the DL3 store); the
        # job directories among them hold files a job could have linked elsewhere.
        self.roots = _spellings(roots)
        self.job_roots = _spellings(job_roots)

    def stage(
        self,
        defn: JobDefinition,
        user: User,
        job_dir: Path,
        values: dict[str, str],
        uploads: dict[str, object],
    ) -> list[StagedInput]:
        staged: list[StagedInput] = []
        for ent in input_entities(defn, uploads):
            upload = uploads.get(ent.name)
            if upload is not None:
                staged.append(self._from_upload(ent, user, job_dir, upload))
            elif values.get(ent.name) and defn.used_entity(ent.name) is not None:
                staged.append(self._from_reference(defn, ent, user, job_dir, values[ent.name]))
            elif defn.used_entity(ent.name) is not None and ent.multiplicity not in (
                "*", "?", "0..1", "0..*", "0"
            ):  # fmt: skip
                raise BadRequest(
                    f"input '{ent.name}' is required (upload a file or give an entity id or URL)"
                )
        return staged

    # ------------------------------------------------------------------ kinds
    def _from_upload(self, ent: EntityDef, user: User, job_dir: Path, upload) -> StagedInput:  # type: ignore[no-untyped-def]
        job_dir.mkdir(parents=True, exist_ok=True)
        filename, fd = _create_new(
            job_dir, safe_filename(getattr(upload, "raw_filename", "") or ent.default or ent.name)
        )
        target = job_dir / filename
        size = 0
        h = hashlib.sha256()
        src = upload.file
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    size += len(chunk)
                    if size > self.max_upload:
                        raise PayloadTooLarge(
                            f"input '{ent.name}': upload exceeds {self.max_upload} bytes"
                        )
                    h.update(chunk)
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        row = EntityRow(
            entity_id=new_entity_id(),
            job_id=None,
            name=filename,
            path=str(target),
            location=None,
            content_type=getattr(upload, "content_type", None) or ent.content_type or None,
            size=size,
            sha256=h.hexdigest(),
            owner=user.name,
            role=ent.name,
            kind="upload",
            created=utcnow(),
        )
        return StagedInput(ent.name, filename, row, new=True)

    def _resolve_existing(
        self, defn: JobDefinition, ent: EntityDef, user: User, value: str
    ) -> EntityRow | None:
        """An entity id, or a URL of a result on this service, to its stored row."""
        m = _RESULT_URL.search(urlparse(value).path) if "://" in value else None
        if m:
            job = self.store.get_job(m.group("job"))
            if job is None or not can_read(user, job.owner):
                raise BadRequest(f"input '{ent.name}': no readable result at {value[:256]}")
            for r in job.results:
                if r.name == m.group("name") and r.entity_id:
                    return self.store.get_entity(r.entity_id)
            raise BadRequest(
                f"input '{ent.name}': job {job.job_id} has no result {m.group('name')[:64]}"
            )
        if "://" in value:
            return None
        row = self.store.get_entity(value.strip())
        if row is None or not can_read(user, row.owner):
            raise BadRequest(f"input '{ent.name}': unknown entity id '{value[:64]}'")
        return row

    def _from_reference(
        self, defn: JobDefinition, ent: EntityDef, user: User, job_dir: Path, value: str
    ) -> StagedInput:
        row = self._resolve_existing(defn, ent, user, value)
        job_dir.mkdir(parents=True, exist_ok=True)
        if row is not None:
            filename = self._copy_entity(ent, row, job_dir)
            return StagedInput(ent.name, filename, row, new=False)
        url = value.strip()
        if ent.url and "$ID" in ent.url and not ent.url.startswith("file:"):
            url = ent.url.replace("$ID", value.strip())
        return self._fetch(ent, user, job_dir, url)

    def _copy_entity(self, ent: EntityDef, row: EntityRow, job_dir: Path) -> str:
        """Copy a stored entity's file into the job directory without following any
        link: from a descriptor opened component by component below its root."""
        gone = f"input '{ent.name}': entity {row.entity_id} has no file any more"
        if not row.path:
            raise BadRequest(gone)
        src = Path(os.path.normpath(row.path))
        try:
            fd = open_below(src, self.roots)
        except FileNotFoundError:
            raise BadRequest(gone) from None
        except OSError:
            raise BadRequest(
                f"input '{ent.name}': entity {row.entity_id}'s file is not a plain file "
                "of this service (a link, or outside its directories)"
            ) from None
        try:
            st = os.fstat(fd)
            in_job = any(_is_below(src, r) for r in self.job_roots)
            if not stat.S_ISREG(st.st_mode) or (in_job and st.st_nlink != 1):
                raise BadRequest(
                    f"input '{ent.name}': entity {row.entity_id}'s file is not a regular "
                    "file with a single link"
                )
            filename, out_fd = _create_new(
                job_dir, safe_filename(row.name, ent.default or ent.name)
            )
            target = job_dir / filename
            h = hashlib.sha256()
            try:
                with os.fdopen(out_fd, "wb") as out:
                    while chunk := os.read(fd, 1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                if row.sha256 and h.hexdigest() != row.sha256:
                    raise BadRequest(
                        f"input '{ent.name}': entity {row.entity_id}'s file changed since it "
                        "was recorded (its SHA-256 differs)"
                    )
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        finally:
            os.close(fd)
        return filename

    def _fetch(self, ent: EntityDef, user: User, job_dir: Path, url: str) -> StagedInput:
        try:
            target = parse_target(url)  # the file's name (fetch() checks it all again)
            filename, fd = _create_new(
                job_dir, safe_filename(target.request_uri.split("?", 1)[0], ent.default or ent.name)
            )
            os.close(fd)
            os.unlink(job_dir / filename)  # the fetcher creates it again, exclusively
            fetched = self.fetcher.fetch(url, str(job_dir / filename))
        except FetchTooLarge as exc:
            raise PayloadTooLarge(f"input '{ent.name}': {exc}") from None
        except FetchRefused as exc:
            raise BadRequest(f"input '{ent.name}': {exc}") from None
        row = EntityRow(
            entity_id=new_entity_id(),
            job_id=None,
            name=filename,
            path=str(job_dir / filename),
            location=fetched.url,
            content_type=fetched.content_type or ent.content_type or None,
            size=fetched.size,
            sha256=fetched.sha256,
            owner=user.name,
            role=ent.name,
            kind="upload",
            created=utcnow(),
        )
        return StagedInput(ent.name, filename, row, new=True)


def input_entities(defn: JobDefinition, uploads: dict[str, object]) -> list[EntityDef]:
    """The definition's used entities, then every ``file``-typed parameter given as an
    upload that is not one of them: OPUS stores such a file in the job's directory and
    the job reads it under the parameter's value, so it is staged like a used entity
    (and recorded as one in the provenance) rather than dropped."""
    entities = list(defn.used)
    names = {e.name for e in entities}
    for p in defn.parameters:
        if p.datatype == "file" and p.name not in names and p.name in uploads:
            entities.append(EntityDef(name=p.name, default=p.default or "", multiplicity="?"))
    return entities


def _spellings(roots: Iterable[Path]) -> list[Path]:
    """Each root as configured and as resolved (stored paths may be either)."""
    out: list[Path] = []
    for root in roots:
        for p in (Path(os.path.normpath(root)), Path(root).resolve()):
            if p not in out:
                out.append(p)
    return out


def _is_below(path: Path, root: Path) -> bool:
    return path.is_absolute() and path.parts[: len(root.parts)] == root.parts


def open_below(path: Path, roots: Iterable[Path]) -> int:
    """A read-only descriptor on ``path``, opened one component at a time below the
    first of ``roots`` that contains it, with ``O_NOFOLLOW`` at each step: a symlink
    anywhere below the root (the file itself or a directory) is refused (ELOOP or
    ENOTDIR), whenever it was swapped in. OSError otherwise, as ``os.open`` raises;
    PermissionError when the path is under none of the roots."""
    path = Path(os.path.normpath(path))
    root = next((r for r in roots if _is_below(path, r) and path != r), None)
    if root is None:
        raise PermissionError(f"{path} is outside the service's directories")
    parts = path.parts[len(root.parts) :]
    if any(p in ("..", ".", "") for p in parts):
        raise PermissionError(f"{path} is not a plain path")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        # O_NONBLOCK: a FIFO swapped in must not block the request (fstat refuses it)
        return os.open(parts[-1], flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=fd)
    finally:
        os.close(fd)


def _create_new(directory: Path, filename: str) -> tuple[str, int]:
    """Create ``filename`` in ``directory`` exclusively (never through a link, never
    over an existing file: a second input with the same name gets ``_2``, ``_3``...).
    Returns the name used and a descriptor open for writing."""
    stem, dot, ext = filename.partition(".")
    for n in range(1, 1000):
        name = filename if n == 1 else f"{stem}_{n}{dot}{ext}"
        try:
            fd = os.open(
                directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
            )
        except FileExistsError:
            continue
        return name, fd
    raise BadRequest(f"too many inputs named {filename}")
