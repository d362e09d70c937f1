"""Provenance from the store: records for each job, the files written when a job ends,
ProvSAP across jobs, and provenance search.

The :mod:`uws_server.provenance` package knows nothing of the database; this module
fills its records from the store (one job at a time, as the graph walk asks), and
applies owner isolation: nobody sees another user's job through provenance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from uws_server import __version__, managers
from uws_server.common import can_read, new_entity_id, parse_time, utcnow, within
from uws_server.config import Settings
from uws_server.errors import BadRequest, Conflict, NotFound
from uws_server.jdl.json_form import from_json, to_json
from uws_server.jobdef import JobDefinition
from uws_server.joblog import job_log
from uws_server.models import Job, User
from uws_server.provenance import (
    FILENAMES,
    FORMATS,
    MEDIA_TYPES,
    ActivityRecord,
    ContextRecord,
    EntityRecord,
    GenerationRecord,
    JobProvenance,
    ParameterRecord,
    SearchQuery,
    UsageRecord,
    build_graph_document,
    provsap_steps,
    serialize,
    traverse,
)
from uws_server.provenance.background import render_in_background
from uws_server.provenance.rocrate import MEDIA_TYPE as ROCRATE_MEDIA_TYPE
from uws_server.provenance.rocrate import RESPONSE_FORMAT as ROCRATE_FORMAT
from uws_server.provenance.rocrate import crate_zip
from uws_server.provenance.subactivities import load as load_steps
from uws_server.provenance.subactivities import resolve as resolve_steps
from uws_server.provenance.subactivities import save as save_steps
from uws_server.storage import EntityRow, Store
from uws_server.storage.entities import JobRecordRows
from workers import jobside
from workers.results import hash_file

log = logging.getLogger("uws_server.provenance")

DEFINITION_SNAPSHOT = ".uws/definition.json"  # the definition as it was when the job ran
USED_FILES = jobside.USED_FILE  # extra inputs a script reports ({"path", "role"})
RESPONSE_FORMATS = {
    "PROV-JSON": "json",
    "PROV-XML": "xml",
    "PROV-N": "provn",
    "PROV-VOTABLE": "votable",
    "PROV-SVG": "svg",
}
# Jobs a provenance search looks at, at most (the first cut is by job list and owner).
SEARCH_CANDIDATES = 5000
_PACKAGE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# Bounded caches of per-definition work, cleared whole when full (a handful of
# definitions are in use at a time; an edited definition is a new object).
_CACHE_LIMIT = 256
# id(definition) -> (that definition, its snapshot text); the reference held keeps the
# id from being reused by another object while the entry lives.
_snapshots: dict[int, tuple[JobDefinition, str]] = {}
# snapshot text -> the definition read back from it (shared: callers only read it)
_from_snapshots: dict[str, JobDefinition] = {}


def definition_snapshot(defn: JobDefinition) -> str:
    """The text of ``.uws/definition.json`` for ``defn``, worked out once per definition.

    Definitions are shared and read-only (the registry replaces the object when an
    operator edits one), and every job of a definition gets the same text, so it is
    cached by the object's identity.
    """
    hit = _snapshots.get(id(defn))
    if hit is not None and hit[0] is defn:
        return hit[1]
    text = json.dumps(to_json(defn, include_operator=False))
    if len(_snapshots) >= _CACHE_LIMIT:
        _snapshots.clear()
    _snapshots[id(defn)] = (defn, text)
    return text


def snapshot_definition(job_dir: Path, defn: JobDefinition) -> None:
    (job_dir / ".uws").mkdir(parents=True, exist_ok=True)
    (job_dir / DEFINITION_SNAPSHOT).write_text(definition_snapshot(defn))


def definition_from_snapshot(text: str) -> JobDefinition:
    """The definition a snapshot holds (:func:`from_json` of its JSON), read once per
    distinct text: the jobs of one definition all hold the same. The result is shared:
    callers must not change it. Raises like ``json.loads`` and :func:`from_json`."""
    defn = _from_snapshots.get(text)
    if defn is None:
        defn = from_json(json.loads(text))
        if len(_from_snapshots) >= _CACHE_LIMIT:
            _from_snapshots.clear()
        _from_snapshots[text] = defn
    return defn


def entity_readable(owner: User | None, owner_name: str, row: EntityRow) -> bool:
    """Whether a job's owner may read an entity, so that their job may be linked to it:
    entities belong to the user whose job generated, uploaded or reported them (there
    are no public entities; the DL3 store's files become each user's own entity when
    their job reports reading one); an admin owner may read every entity. The one
    ownership rule (``common.can_read``); an account since removed reads as a plain
    user of that name."""
    return can_read(owner or User(owner_name, ""), row.owner or "")


@dataclass
class _Turns:
    """The writers of one job's provenance: its lock, and how many hold or await it
    (the entry goes when none does)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


class ProvenanceService:
    """Builds, stores and serves provenance; also the ``RecordSource`` of the graph walk."""

    def __init__(self, settings: Settings, store: Store, definitions) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.store = store
        self.definitions = definitions  # name -> JobDefinition (raises NotFound)
        self._lock = threading.Lock()
        self._writing: dict[str, _Turns] = {}  # job id -> its writers' lock

    @contextlib.contextmanager
    def _job_writer(self, job_id: str) -> Iterator[None]:
        """One writer of a job's provenance at a time: the final hook and a reader who
        asked before the hook ran would otherwise link the same inputs and render the
        same files side by side."""
        with self._lock:
            turns = self._writing.setdefault(job_id, _Turns())
            turns.waiting += 1
        try:
            with turns.lock:
                yield
        finally:
            with self._lock:
                turns.waiting -= 1
                if turns.waiting == 0:
                    del self._writing[job_id]

    def base_url(self) -> str:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        return f"http://{host}:{self.settings.port}"

    # ------------------------------------------------------------ records
    def _definition(self, job: Job) -> JobDefinition | None:
        snap = self.settings.jobs_dir / job.job_id / DEFINITION_SNAPSHOT
        try:
            return definition_from_snapshot(snap.read_text())
        except (OSError, ValueError, Exception):  # noqa: BLE001 - fall back to current
            try:
                return self.definitions(job.jobname)
            except NotFound:
                return None

    def _entity_record(self, row: EntityRow, jobnames: dict[str, str]) -> EntityRecord:
        """An entity's record; ``jobnames`` (job id -> job list) gives a result's URL."""
        location = row.location
        if location is None and row.job_id and row.kind == "result":
            jobname = jobnames.get(row.job_id)
            if jobname is not None:
                location = f"{self.base_url()}/rest/{jobname}/{row.job_id}/results/{row.name}"
        return EntityRecord(
            entity_id=row.entity_id,
            name=row.name,
            location=location,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            generated_by=row.job_id if row.kind == "result" else None,
        )

    def job(self, job_id: str) -> JobProvenance | None:
        """A job's records (``RecordSource.job``); None when there is no such job."""
        return self.jobs([job_id]).get(job_id)

    def jobs(self, job_ids: Sequence[str]) -> dict[str, JobProvenance]:
        """The records of many jobs from a few set-based reads (the provenance search
        builds one per candidate job)."""
        found = self.store.job_records(job_ids)
        producers = {
            e.job_id
            for rec in found.values()
            for e in (*(u for _, u in rec.used), *rec.generated)
            if e.job_id and e.kind == "result"
        }
        jobnames = {rec.job.job_id: rec.job.jobname for rec in found.values()}
        missing = producers - set(jobnames)
        if missing:
            jobnames.update(self.store.jobnames(missing))
        accounts: dict[str, User | None] = {}  # owners looked up only for another's entity
        return {job_id: self._record(rec, jobnames, accounts) for job_id, rec in found.items()}

    def _record(
        self, rec: JobRecordRows, jobnames: dict[str, str], accounts: dict[str, User | None]
    ) -> JobProvenance:
        job, job_id = rec.job, rec.job.job_id
        defn = self._definition(job)
        context = {}
        raw = rec.context
        if raw:
            try:
                context = json.loads(raw)
            except ValueError:
                context = {}
        activity = ActivityRecord(
            job_id=job.job_id,
            jobname=job.jobname,
            owner=job.owner,
            phase=job.phase.value,
            start_time=job.start_time,
            end_time=job.end_time,
            run_id=job.run_id,
            manager=job.manager,
            external_id=job.external_id,
            error_summary=job.error_summary,
            description=defn.description if defn else "",
            version=defn.version if defn else "",
            type=defn.type if defn else "",
            subtype=defn.subtype if defn else "",
            doculink=defn.doculink if defn else "",
            contact_name=defn.contact_name if defn else "",
            contact_email=defn.contact_email if defn else "",
        )
        params = []
        for name, value in job.parameters.items():
            p = defn.parameter(name) if defn else None
            params.append(
                ParameterRecord(
                    name=name,
                    value=value,
                    datatype=p.datatype if p else "xs:string",
                    unit=p.unit if p else None,
                    ucd=p.ucd if p else None,
                    description=p.description if p else "",
                )
            )
        entities: dict[str, EntityRecord] = {}
        usages = []
        for role, row in rec.used:
            if row.owner != job.owner and job.owner not in accounts:
                accounts[job.owner] = self._owner(job.owner)
            if entity_readable(accounts.get(job.owner), job.owner, row):
                entities[row.entity_id] = self._entity_record(row, jobnames)
                usages.append(UsageRecord(job_id, row.entity_id, role))
        generations = []
        for row in rec.generated:
            entities[row.entity_id] = self._entity_record(row, jobnames)
            generations.append(GenerationRecord(job_id, row.entity_id, row.role or row.name))
        manager_cls = managers.manager_class(job.manager)
        manager_key = (manager_cls.run_id_key if manager_cls else "") or "external_id"
        ctx = ContextRecord(
            service_version=__version__,
            python=context.get("python") or platform.python_version(),
            host=context.get("host") or platform.node(),
            packages={
                k: str(v)
                for k, v in context.items()
                if k not in ("python", "host") and _PACKAGE_KEY.match(k)
            },
            manager_ids={manager_key: job.external_id} if job.external_id else {},
        )
        steps = load_steps(self.settings.provenance_dir / job_id)
        return JobProvenance(
            activity, params, list(entities.values()), usages, generations, ctx, steps
        )

    def jobs_generating(self, entity_ids: Collection[str]) -> Iterable[str]:
        return self.store.jobs_generating(entity_ids)

    def jobs_using(self, entity_ids: Collection[str]) -> Iterable[str]:
        return self.store.jobs_using(entity_ids)

    # ------------------------------------------------------- when a job ends
    def link_reported_inputs(self, job: Job) -> None:
        """Record the files a script says it read (``.uws/used.json``) as used entities.

        A file is matched to a stored entity by its SHA-256, so a DL3 observation read
        from the data store is the very entity the analysis job generated.
        """
        jdir = self.settings.jobs_dir / job.job_id
        try:
            reported = json.loads((jdir / USED_FILES).read_text())
        except (OSError, ValueError):
            return
        if not isinstance(reported, list):
            return
        roots = (jdir, self.settings.dl3_store)
        owner = self._owner(job.owner)
        known = {e for e, _ in self.store.usages_of_job(job.job_id)}
        pairs: list[tuple[str, str]] = []
        for item in reported[:10000]:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                continue
            path = Path(item["path"])
            path = path if path.is_absolute() else jdir / path
            if not any(within(path, r) for r in roots) or not path.is_file():
                job_log(log, job).warning("reported an input outside its reach: %s", path)
                continue
            hashed = hash_file(str(path))
            if hashed is None:
                continue
            digest = hashed[1]
            row = self._entity_by_sha(digest, owner, job.owner)
            if row is None:
                row = EntityRow(
                    entity_id=new_entity_id(),
                    job_id=None,
                    name=path.name,
                    path=str(path.resolve()),
                    location=None,
                    content_type=None,
                    size=path.stat().st_size,
                    sha256=digest,
                    owner=job.owner,
                    role=str(item.get("role") or "input")[:64],
                    kind="external",
                    created=utcnow(),
                )
                self.store.add_entities([row])
            role = str(item.get("role") or "input")[:64]
            if row.entity_id not in known:
                known.add(row.entity_id)
                pairs.append((row.entity_id, role))
        self.store.add_usages(job.job_id, pairs)

    def record_steps(self, job: Job) -> None:
        """Keep the tool runs the job's script recorded (workers.jobside.read_activities),
        their files linked by SHA-256 to the job's entities (provenance/subactivities)."""
        jdir = self.settings.jobs_dir / job.job_id
        records = jobside.read_activities(str(jdir))
        rec = self.store.job_records([job.job_id]).get(job.job_id)
        known: dict[str, str] = {}
        if rec is not None:
            for row in (*(u for _, u in rec.used), *rec.generated):
                if row.sha256:
                    known.setdefault(row.sha256, row.entity_id)
        try:
            steps = resolve_steps(
                records, jdir, known, hash_file, readable=(self.settings.dl3_store,)
            )
            save_steps(self.settings.provenance_dir / job.job_id, steps)
        except OSError as exc:
            job_log(log, job).warning("its steps could not be recorded: %s", exc)

    def _owner(self, name: str) -> User | None:
        """A job owner's account (None when it is gone: then no admin rights)."""
        return self.store.user_by_name(name)

    def _entity_by_sha(self, digest: str, owner: User | None, owner_name: str) -> EntityRow | None:
        """The stored entity with this content that the job's owner may read: their own
        (uploads, results, files their jobs reported), or any for an admin. Another
        user's entity of the same SHA-256 is never linked: the owner's provenance would
        then show that user's entity id and job URL."""
        admin = owner is not None and owner.is_admin
        return self.store.entity_by_content(digest, None if admin else owner_name)

    def write_job(self, job_id: str, unless: Path | None = None) -> dict[str, Path]:
        """The final hook: write the five files and list them among the job's results
        (nothing when ``unless`` exists once this writer's turn comes: a reader's
        catch-up that the hook has meanwhile done)."""
        with self._job_writer(job_id):
            if unless is not None and unless.is_file():
                return {}
            return self._write_job(job_id)

    def _write_job(self, job_id: str) -> dict[str, Path]:
        job = self.store.get_job(job_id)
        if job is None or not job.phase.is_final:
            return {}
        self.link_reported_inputs(job)
        self.record_steps(job)
        record = self.job(job_id)
        assert record is not None
        outdir = self.settings.provenance_dir / job_id
        written = render_in_background(record, self.base_url(), outdir)
        rows = [
            EntityRow(
                entity_id=new_entity_id(),
                job_id=job_id,
                name=f"provenance_{fmt}",
                path=str(path.resolve()),
                location=None,
                content_type=MEDIA_TYPES[fmt],
                size=path.stat().st_size,
                sha256=None,
                owner=job.owner,
                role="provenance",
                kind="provenance",
                created=utcnow(),
            )
            for fmt, path in written.items()
        ]
        with self._lock:
            self.store.replace_provenance(job_id, rows)
        job_log(log, job).info("provenance written: %s", ", ".join(sorted(written)))
        return written

    # --------------------------------------------------------------- reading
    def job_file(self, job: Job, fmt: str) -> tuple[Path, str]:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise NotFound(f"no provenance format '{fmt[:16]}' (use {', '.join(FORMATS)})")
        if not job.phase.is_final:
            raise Conflict(f"provenance is written when the job ends (it is {job.phase.value})")
        path = self.settings.provenance_dir / job.job_id / FILENAMES[fmt]
        if not path.is_file():
            self.write_job(job.job_id, unless=path)  # the hook may still be queued
        if not path.is_file():
            raise NotFound(f"no {fmt} provenance for job {job.job_id}")
        return path, MEDIA_TYPES[fmt]

    def job_crate(self, job: Job) -> bytes:
        """The job's Workflow Run RO-Crate (zip), once it has ended."""
        if not job.phase.is_final:
            raise Conflict(f"provenance is written when the job ends (it is {job.phase.value})")
        records = self.job(job.job_id)
        if records is None:
            raise NotFound(f"no job {job.job_id}")
        return crate_zip([records], self.base_url(), f"{job.jobname} job {job.job_id}")

    def provsap(self, user: User, query: list[tuple[str, str]]) -> tuple[bytes, str]:
        """ProvSAP: parameters are case-insensitive, as in IVOA protocols."""
        values: dict[str, list[str]] = {}
        for k, v in query:
            values.setdefault(k.upper(), []).append(v)
        ids = [i.strip() for i in values.get("ID", []) if i.strip()]
        if not ids:
            raise BadRequest("ProvSAP needs at least one ID (a job id or an entity id)")
        direction = values.get("DIRECTION", ["BACK"])[0].upper()
        if direction not in ("BACK", "FORWARD"):
            raise BadRequest("DIRECTION must be BACK or FORWARD")
        model = values.get("MODEL", ["IVOA"])[0].upper()
        if model not in ("IVOA", "W3C"):
            raise BadRequest("MODEL must be IVOA or W3C")
        agent = values.get("AGENT", values.get("AGENTS", ["true"]))[0].lower() not in (
            "false",
            "0",
            "no",
        )
        fmt_name = values.get("RESPONSEFORMAT", ["PROV-JSON"])[0].upper()
        fmt = RESPONSE_FORMATS.get(fmt_name)
        if fmt is None and fmt_name != ROCRATE_FORMAT:
            raise BadRequest(
                f"RESPONSEFORMAT must be one of {', '.join([*RESPONSE_FORMATS, ROCRATE_FORMAT])}"
            )
        is_job = {i: self.store.get_job(i) is not None for i in ids}
        try:
            steps = provsap_steps(
                values.get("DEPTH", ["ALL"])[0], from_entity=not all(is_job.values())
            )
        except ValueError:
            raise BadRequest("DEPTH must be a non-negative integer or ALL") from None
        for i in ids:
            if is_job[i]:
                if not can_read(user, self.store.get_job(i).owner):  # type: ignore[union-attr]
                    raise NotFound(f"no job or entity '{i[:64]}'")
            else:
                row = self.store.get_entity(i)
                if row is None or not can_read(user, row.owner):
                    raise NotFound(f"no job or entity '{i[:64]}'")
        owners: dict[str, str] = {}

        def readable(job_id: str) -> bool:
            if job_id not in owners:
                j = self.store.get_job(job_id)
                owners[job_id] = j.owner if j else ""
            return bool(owners[job_id]) and can_read(user, owners[job_id])

        jobs = traverse(self, ids, steps, direction, readable)
        if fmt is None:  # one RO-Crate for the whole chain
            if not jobs:
                raise NotFound(f"no job within DEPTH of {', '.join(i[:64] for i in ids)}")
            title = f"Provenance ({direction}) of {', '.join(ids)}"
            return crate_zip(jobs, self.base_url(), title), ROCRATE_MEDIA_TYPE
        doc = build_graph_document(
            jobs, include_agents=agent, model=model, base_url=self.base_url()
        )
        return serialize(doc, fmt), MEDIA_TYPES[fmt]

    def search(self, user: User, query: list[tuple[str, str]]) -> list[dict[str, object]]:
        """Generated entities of the readable jobs matching every filter."""
        params: dict[str, str] = {}
        single: dict[str, str] = {}
        for k, v in query:
            key = k.lower()
            if key == "param":
                name, sep, value = v.partition("=")
                if not sep or not name:
                    raise BadRequest("param must be name=value")
                params[name] = value
            elif key in ("activity", "version", "agent", "from", "to", "format", "sha256"):
                single[key] = v.strip()
            else:
                raise BadRequest(
                    f"unknown search filter '{k[:32]}'"
                    " (activity, version, param, agent, from, to, sha256)"
                )
        digest = single.get("sha256")
        if digest is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise BadRequest("sha256 must be 64 hexadecimal digits")
        times: dict[str, datetime | None] = {}
        for key in ("from", "to"):
            times[key] = None
            if key in single:
                times[key] = parse_time(key, single[key])
        sq = SearchQuery.of(
            single.get("activity"),
            single.get("version"),
            params,
            single.get("agent"),
            times["from"],
            times["to"],
            digest,
        )
        candidates = self.store.candidate_jobs(user, sq.activity, sq.agent, SEARCH_CANDIDATES)
        records = self.jobs(candidates)
        out: list[dict[str, object]] = []
        for job_id in candidates:
            rec = records.get(job_id)
            if rec is None or not sq.matches(rec):
                continue
            for ent in rec.generated_entities():
                out.append(
                    {
                        "entity_id": ent.entity_id,
                        "name": ent.name,
                        "job_id": job_id,
                        "jobname": rec.activity.jobname,
                        "content_type": ent.content_type,
                        "size": ent.size,
                        "sha256": ent.sha256,
                        "url": ent.location,
                        "job_url": f"{self.base_url()}/rest/{rec.activity.jobname}/{job_id}",
                    }
                )
        return out
