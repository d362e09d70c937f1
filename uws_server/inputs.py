"""Used entities: turning a client's upload, result URL, entity id or URL into a file.

The job's script only ever sees a file name inside its own directory. An entity id
or a result URL of this service resolves to the stored entity (the caller's right to
read it checked, no HTTP round trip), so a later job's provenance points at the very
entity an earlier job generated. External URLs are fetched only from allowed hosts:
no loopback or private addresses unless listed (no SSRF).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import requests

from uws_server.errors import BadRequest, PayloadTooLarge
from uws_server.jobdef import EntityDef, JobDefinition
from uws_server.models import User
from uws_server.storage import EntityRow, Store

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESULT_URL = re.compile(
    r"/rest/(?P<jobname>[A-Za-z][\w-]*)/(?P<job>[\w-]+)/results/(?P<name>[^/?#]+)$"
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Files of the job itself: an input staged under one of these names would replace
# the script, the specification or the logs.
RESERVED_NAMES = frozenset({"job.json", "parameters.json", "script.sh", "stdout.log", "stderr.log"})


def safe_filename(name: str, fallback: str = "input") -> str:
    """A file name that cannot leave a directory nor replace one of the job's own files."""
    base = _SAFE.sub("_", Path(name.replace("\\", "/")).name).lstrip(".")[:128] or fallback
    return f"input_{base}" if base in RESERVED_NAMES else base


def new_entity_id() -> str:
    return "ent_" + secrets.token_urlsafe(12)


@dataclass
class StagedInput:
    name: str  # the used entity's name (the parameter)
    filename: str  # file name in the job directory
    entity: EntityRow
    new: bool  # True if the entity row must be inserted


def can_read(user: User, owner: str) -> bool:
    return user.is_admin or user.name == owner


class InputStager:
    """Stages used entities into a job directory and returns their entity rows."""

    def __init__(
        self, store: Store, allowed_hosts: list[str], max_bytes: int, max_upload: int
    ) -> None:
        self.store = store
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.max_bytes = max_bytes
        self.max_upload = max_upload

    def stage(
        self,
        defn: JobDefinition,
        user: User,
        job_dir: Path,
        values: dict[str, str],
        uploads: dict[str, object],
    ) -> list[StagedInput]:
        staged: list[StagedInput] = []
        for ent in defn.used:
            upload = uploads.get(ent.name)
            if upload is not None:
                staged.append(self._from_upload(ent, user, job_dir, upload))
            elif values.get(ent.name):
                staged.append(self._from_reference(defn, ent, user, job_dir, values[ent.name]))
            elif ent.multiplicity not in ("*", "?", "0..1", "0..*", "0"):
                raise BadRequest(
                    f"input '{ent.name}' is required (upload a file or give an entity id or URL)"
                )
        return staged

    # ------------------------------------------------------------------ kinds
    def _from_upload(self, ent: EntityDef, user: User, job_dir: Path, upload) -> StagedInput:  # type: ignore[no-untyped-def]
        filename = safe_filename(getattr(upload, "raw_filename", "") or ent.default or ent.name)
        job_dir.mkdir(parents=True, exist_ok=True)
        target = job_dir / filename
        size = 0
        h = hashlib.sha256()
        src = upload.file
        with target.open("wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                size += len(chunk)
                if size > self.max_upload:
                    out.close()
                    target.unlink(missing_ok=True)
                    raise PayloadTooLarge(
                        f"input '{ent.name}': upload exceeds {self.max_upload} bytes"
                    )
                h.update(chunk)
                out.write(chunk)
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
                raise BadRequest(f"input '{ent.name}': no readable result at {value}")
            for r in job.results:
                if r.name == m.group("name") and r.entity_id:
                    return self.store.get_entity(r.entity_id)
            raise BadRequest(
                f"input '{ent.name}': job {job.job_id} has no result {m.group('name')}"
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
            if not row.path or not Path(row.path).is_file():
                raise BadRequest(f"input '{ent.name}': entity {row.entity_id} has no file any more")
            filename = safe_filename(row.name, ent.default or ent.name)
            shutil.copyfile(row.path, job_dir / filename)
            return StagedInput(ent.name, filename, row, new=False)
        url = value.strip()
        if ent.url and "$ID" in ent.url and not ent.url.startswith("file:"):
            url = ent.url.replace("$ID", value.strip())
        return self._fetch(ent, user, job_dir, url)

    def _check_host(self, ent: EntityDef, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BadRequest(
                f"input '{ent.name}': only http(s) URLs, entity ids or uploads are accepted"
            )
        host = parsed.hostname.lower()
        if host not in self.allowed_hosts:
            raise BadRequest(f"input '{ent.name}': host '{host}' is not in allowed_fetch_hosts")
        try:
            infos = socket.getaddrinfo(host, parsed.port or 80)
        except OSError:
            raise BadRequest(f"input '{ent.name}': cannot resolve host '{host}'") from None
        for info in infos:
            ip = ipaddress.ip_address(info[4][0])
            if (
                ip.is_loopback or ip.is_private or ip.is_link_local
            ) and host not in self.allowed_hosts:
                raise BadRequest(f"input '{ent.name}': '{host}' is a private address")

    def _fetch(self, ent: EntityDef, user: User, job_dir: Path, url: str) -> StagedInput:
        self._check_host(ent, url)
        filename = safe_filename(urlparse(url).path, ent.default or ent.name)
        target = job_dir / filename
        size = 0
        h = hashlib.sha256()
        try:
            with requests.get(url, stream=True, timeout=30, allow_redirects=False) as resp:
                if resp.status_code != 200:
                    raise BadRequest(f"input '{ent.name}': {url} answered HTTP {resp.status_code}")
                with target.open("wb") as out:
                    for chunk in resp.iter_content(1 << 20):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise PayloadTooLarge(
                                f"input '{ent.name}': {url} exceeds {self.max_bytes} bytes"
                            )
                        h.update(chunk)
                        out.write(chunk)
                ctype = resp.headers.get("Content-Type")
        except requests.RequestException as exc:
            target.unlink(missing_ok=True)
            raise BadRequest(
                f"input '{ent.name}': cannot fetch {url}: {type(exc).__name__}"
            ) from None
        except PayloadTooLarge:
            target.unlink(missing_ok=True)
            raise
        row = EntityRow(
            entity_id=new_entity_id(),
            job_id=None,
            name=filename,
            path=str(target),
            location=url,
            content_type=ctype or ent.content_type or None,
            size=size,
            sha256=h.hexdigest(),
            owner=user.name,
            role=ent.name,
            kind="upload",
            created=utcnow(),
        )
        return StagedInput(ent.name, filename, row, new=True)
