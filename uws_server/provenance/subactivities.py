"""Sub-activities: the tool runs a job's script recorded, inside the job's activity.

A job script records what ran inside it (ctapipe's provenance logs; the job-side
module's :func:`workers.jobside.activity` for gammapy and pyirf steps, which have no
provenance API of their own). When the job ends the service reads those records with
:func:`workers.jobside.read_activities`, links every file a step used or generated to
the job's entities by SHA-256 (:func:`resolve`), and keeps the result as JSON next to
the job's provenance files (:func:`save` / :func:`load`), because the job directory
may be gone when a ProvSAP query asks for the job later.

How they enter the ProvenanceDM document (:func:`add_steps`). ProvenanceDM 1.0
composes activities with ``ActivityFlow`` and ``hadStep`` (section 2.3.2), which
voprov does not implement and PROV has no record for. Each step is therefore a
``voprov:Activity`` (``job:<jobname>/<job_id>/steps/<n>``) and the job's activity is
linked to it by ``wasInformedBy`` (job informed by step: what the job generated came
from its steps) typed ``prov:type = voprov:hadStep``; the job's activity gets
``prov:type = voprov:ActivityFlow``. Every PROV tool reads that, the W3C projection
keeps it, and a reader that knows ProvenanceDM sees the flow and its steps.

A step carries its start/stop, status, configuration (one ``voprov:Parameter`` per
setting, ``wasConfiguredBy``), system context (Python, host, executable, package
versions as ``uwsp:package``) and its used and generated files. A file whose SHA-256
is one of the job's entities *is* that entity (``ent:<entity_id>``); a file that only
lived inside the job (an intermediate product) is an entity of the job
(``job:<jobname>/<job_id>/files/<path>``) with its hash when it was still there.

ProvSAP: steps belong to their job's record, so any answer that includes a job (at
any ``DEPTH``) includes its steps; they do not count as a level of ``DEPTH``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from prov.constants import PROV_LABEL, PROV_TYPE
from prov.identifier import Namespace
from voprov.models.model import VOPROV

STEPS_FILE = "subactivities.json"  # in the job's provenance directory
_MAX_CONFIG = 200


@dataclass(frozen=True)
class StepFile:
    """A file a step used or generated: the job's entity (``entity_id``) or its own."""

    path: str
    role: str = ""
    sha256: str | None = None
    entity_id: str | None = None


@dataclass(frozen=True)
class SubActivityRecord:
    """One tool run inside a job (a ctapipe tool, a gammapy fit...)."""

    step_id: str
    name: str
    start: str | None = None
    stop: str | None = None
    status: str = ""
    config: dict[str, str] = field(default_factory=dict)
    used: list[StepFile] = field(default_factory=list)
    generated: list[StepFile] = field(default_factory=list)
    python: str | None = None
    host: str | None = None
    executable: str | None = None
    packages: dict[str, str] = field(default_factory=dict)


def resolve(
    records: Iterable[dict[str, object]],
    job_dir: Path,
    known: dict[str, str],
    hash_file: Callable[[str], tuple[int, str] | None],
    readable: Iterable[Path] = (),
) -> list[SubActivityRecord]:
    """Steps from the job-side records, files linked to entities by SHA-256.

    ``known`` maps SHA-256 to the entity id of the job's used and generated entities.
    A file inside the job directory or one of the ``readable`` roots (the DL3 store) is
    hashed now (ctapipe logs give no hash; a product may have been stamped since);
    other files keep the hash the step recorded, if any, and are never read.
    """
    root = os.path.realpath(job_dir)
    roots = [root, *(os.path.realpath(r) for r in readable)]
    cache: dict[str, str | None] = {}

    def digest(path: str, given: object) -> str | None:
        """The file's hash now (a product stamped after the step recorded it has
        changed), else the hash the step recorded (an intermediate file removed since)."""
        recorded = given if isinstance(given, str) and len(given) == 64 else None
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(root, path))
        if not any(os.path.commonpath([full, r]) == r for r in roots):
            return recorded
        if full not in cache:
            hashed = hash_file(full)
            cache[full] = hashed[1] if hashed else None
        return cache[full] or recorded

    def files(items: object) -> list[StepFile]:
        out = []
        for f in items if isinstance(items, list) else []:
            path = str(f["path"])
            sha = digest(path, f.get("sha256"))
            shown = path
            full = os.path.realpath(path if os.path.isabs(path) else os.path.join(root, path))
            if os.path.commonpath([full, root]) == root:
                shown = os.path.relpath(full, root)
            out.append(
                StepFile(
                    path=shown[:500],
                    role=str(f.get("role") or "")[:64],
                    sha256=sha,
                    entity_id=known.get(sha) if sha else None,
                )
            )
        return out

    steps = []
    for n, r in enumerate(records, start=1):
        system = r.get("system") if isinstance(r.get("system"), dict) else {}
        assert isinstance(system, dict)
        config = r.get("config") if isinstance(r.get("config"), dict) else {}
        assert isinstance(config, dict)
        packages = system.get("packages") if isinstance(system.get("packages"), dict) else {}
        assert isinstance(packages, dict)
        steps.append(
            SubActivityRecord(
                step_id=str(n),
                name=str(r["name"])[:200],
                start=_text(r.get("start")),
                stop=_text(r.get("stop")),
                status=str(r.get("status") or "")[:32],
                config={str(k)[:200]: str(v)[:1000] for k, v in list(config.items())[:_MAX_CONFIG]},
                used=files(r.get("used")),
                generated=files(r.get("generated")),
                python=_text(system.get("python")),
                host=_text(system.get("host")),
                executable=_text(system.get("executable")),
                packages={str(k)[:100]: str(v)[:100] for k, v in list(packages.items())[:100]},
            )
        )
    return steps


def _text(value: object) -> str | None:
    return str(value)[:500] if value not in (None, "") else None


def save(outdir: Path, steps: list[SubActivityRecord]) -> None:
    """Keep a job's steps beside its provenance files (nothing when it has none)."""
    path = outdir / STEPS_FILE
    if not steps:
        path.unlink(missing_ok=True)
        return
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(s) for s in steps]))
    tmp.replace(path)


def load(outdir: Path) -> list[SubActivityRecord]:
    """A job's saved steps ([] when it has none or the file is unreadable)."""
    try:
        data = json.loads((outdir / STEPS_FILE).read_text())
    except (OSError, ValueError):
        return []
    steps = []
    for item in data if isinstance(data, list) else []:
        try:
            item["used"] = [StepFile(**f) for f in item.get("used", [])]
            item["generated"] = [StepFile(**f) for f in item.get("generated", [])]
            steps.append(SubActivityRecord(**item))
        except (TypeError, AttributeError):
            continue
    return steps


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def add_steps(
    builder: object,
    job: object,
    activity: object,
    act_id: str,
    uwsp: Namespace,
    local: Callable[[str], str],
) -> None:
    """Add ``job``'s steps to the document ``builder`` builds (see the module docstring).

    ``builder`` is the document builder of :mod:`.document` (its ``doc``, ``_new`` and
    ``_entity``), which hands over its namespace and id encoding (no import back).
    """
    UWSP = uwsp  # noqa: N806 - the document module's name for it

    steps: list[SubActivityRecord] = getattr(job, "subactivities", None) or []
    if not steps:
        return
    doc = builder.doc  # type: ignore[attr-defined]
    activity.add_attributes([(PROV_TYPE, VOPROV["ActivityFlow"])])  # type: ignore[attr-defined]
    entity_ids = {e.entity_id for e in job.entities}  # type: ignore[attr-defined]
    for step in steps:
        sid = f"{act_id}/steps/{local(step.step_id)}"
        attrs: list[tuple[object, object]] = [(PROV_LABEL, step.name)]
        if step.status:
            attrs.append((UWSP["status"], step.status))
        for key in ("python", "host", "executable"):
            value = getattr(step, key)
            if value:
                attrs.append((UWSP[key], value))
        attrs.extend((UWSP["package"], f"{n}=={v}") for n, v in sorted(step.packages.items()))
        start, stop = _time(step.start), _time(step.stop)
        sub = doc.activity(sid, name=step.name, startTime=start, endTime=stop)
        sub.add_attributes(attrs)
        doc.communication(act_id, sid, other_attributes={PROV_TYPE: VOPROV["hadStep"]})
        for name, value in step.config.items():
            pid = f"{sid}/parameters/{local(name)}"
            doc.parameter(pid, name, value)
            doc.configuration(sub, pid, "Parameter")
        for kind, files in (("used", step.used), ("generated", step.generated)):
            for f in files:
                if f.entity_id and f.entity_id in entity_ids:
                    eid = builder._entity(f.entity_id)  # type: ignore[attr-defined]
                else:
                    eid = f"{act_id}/files/{local(f.path.lstrip('/'))}"
                    if builder._new(eid):  # type: ignore[attr-defined]
                        eattrs: dict[object, object] = {PROV_LABEL: os.path.basename(f.path)}
                        if f.sha256:
                            eattrs[UWSP["sha256"]] = f.sha256
                        doc.entity(eid, name=os.path.basename(f.path), other_attributes=eattrs)
                if kind == "used":
                    doc.usage(sub, eid, role=f.role or None, time=start)
                else:
                    doc.generation(eid, sub, role=f.role or None, time=stop)
