"""Provenance as a Workflow Run RO-Crate (a zip with ``ro-crate-metadata.json``).

The workflow world exchanges runs as RO-Crates (https://w3id.org/ro/wfrun/): a data
package whose JSON-LD metadata says which workflow ran (``instrument``), on what
(``object``), producing what (``result``), by whom (``agent``) and when. A UWS job maps
onto it one to one:

- the job definition (ActivityDescription): a ``ComputationalWorkflow`` at
  ``<base>/jdl/<name>``, its parameters ``FormalParameter``s;
- the job (activity): a ``CreateAction`` ``#<job id>`` with start and end times, status
  and error;
- a parameter value: a ``PropertyValue`` in the action's ``object``, whose
  ``exampleOfWork`` is its formal parameter;
- a used or generated entity: a ``File`` by its URL, with ``sha256``, size, media type
  and the service's entity id (``identifier``);
- the owner and the definition's contact: ``Person`` agents.

One job gives a Workflow Run Crate (its definition is the crate's ``mainEntity``). A
chain of jobs (a ProvSAP answer) gives a Process Run Crate: several actions, each with
its definition as instrument, linked through the files one generated and the next used.
Files are referenced by URL, never copied into the crate: the crate is the record, the
service keeps the data (and the SHA-256 lets anyone check a copy found elsewhere).

Built with ``rocrate`` (ro-crate-py, the maintained implementation), on the plain
records of :mod:`uws_server.provenance.records` alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rocrate.model.computationalworkflow import ComputationalWorkflow
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from uws_server.provenance.records import EntityRecord, JobProvenance

PROCESS_RUN = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW_RUN = "https://w3id.org/ro/wfrun/workflow/0.5"
WORKFLOW_CRATE = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
PROFILE_NAMES = {
    PROCESS_RUN: "Process Run Crate 0.5",
    WORKFLOW_RUN: "Workflow Run Crate 0.5",
    WORKFLOW_CRATE: "Workflow RO-Crate 1.0",
}
# RO-Crate names an action's outcome with schema.org's ActionStatusType
_STATUS = {
    "COMPLETED": "http://schema.org/CompletedActionStatus",
    "ERROR": "http://schema.org/FailedActionStatus",
    "ABORTED": "http://schema.org/FailedActionStatus",
}
_TYPES = {
    "xs:integer": "Integer",
    "xs:long": "Integer",
    "xs:double": "Float",
    "xs:float": "Float",
    "xs:boolean": "Boolean",
    "file": "File",
    "xs:anyURI": "URL",
}
JDL_LANGUAGE_ID = "#opus-votable-jdl"
MEDIA_TYPE = "application/zip"
RESPONSE_FORMAT = "RO-CRATE"  # ProvSAP's RESPONSEFORMAT for one crate of the whole answer
FORMAL_PARAMETER = "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat().replace("+00:00", "Z")


class _Builder:
    def __init__(self, base_url: str, chain: bool) -> None:
        self.base = base_url.rstrip("/")
        self.crate = ROCrate()
        self.chain = chain
        self.files: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}
        self.workflows: dict[tuple[str, str], Any] = {}
        self.language = self.crate.add(
            ContextEntity(
                self.crate,
                JDL_LANGUAGE_ID,
                properties={
                    "@type": "ComputerLanguage",
                    "name": "IVOA UWS job definition (OPUS VOTable JDL) with a bash script",
                    "url": "https://www.ivoa.net/documents/ProvenanceDM/",
                },
            )
        )
        profiles = [PROCESS_RUN] if chain else [PROCESS_RUN, WORKFLOW_RUN, WORKFLOW_CRATE]
        refs = []
        for uri in profiles:
            entity = self.crate.add(
                ContextEntity(
                    self.crate,
                    uri,
                    properties={"@type": "CreativeWork", "name": PROFILE_NAMES[uri]},
                )
            )
            refs.append(entity)
        self.crate.root_dataset["conformsTo"] = refs

    def agent(self, name: str, email: str = "", role: str = "") -> Any:
        key = f"#agent-{name}"
        if key not in self.agents:
            props: dict[str, Any] = {"@type": "Person", "name": name}
            if email:
                props["email"] = email
            if role:
                props["description"] = role
            self.agents[key] = self.crate.add(ContextEntity(self.crate, key, properties=props))
        return self.agents[key]

    def workflow(self, job: JobProvenance) -> Any:
        act = job.activity
        key = (act.jobname, act.version)
        if key in self.workflows:
            return self.workflows[key]
        url = f"{self.base}/jdl/{act.jobname}"
        props: dict[str, Any] = {
            "name": act.jobname,
            "description": act.description,
            "version": act.version,
            "encodingFormat": "application/x-votable+xml",
        }
        if self.chain:
            entity = self.crate.add_file(url, properties={**props, "@type": "SoftwareApplication"})
        else:
            entity = self.crate.add(ComputationalWorkflow(self.crate, url, properties=props))
            entity["programmingLanguage"] = self.language
            self.crate.mainEntity = entity
        if act.contact_name:
            entity["maintainer"] = self.agent(act.contact_name, act.contact_email, "contact")
        inputs = []
        for p in job.parameters:
            fp = self.crate.add(
                ContextEntity(
                    self.crate,
                    f"#{act.jobname}-param-{p.name}",
                    properties={
                        "@type": "FormalParameter",
                        "name": p.name,
                        "additionalType": _TYPES.get(p.datatype, "Text"),
                        "description": p.description,
                        "conformsTo": {"@id": FORMAL_PARAMETER},
                    },
                )
            )
            inputs.append(fp)
        entity["input"] = inputs
        self.workflows[key] = entity
        return entity

    def file(self, e: EntityRecord) -> Any:
        if e.entity_id in self.files:
            return self.files[e.entity_id]
        location = e.location or f"#entity-{e.entity_id}"
        props: dict[str, Any] = {"name": e.name or e.entity_id, "identifier": e.entity_id}
        if e.sha256:
            props["sha256"] = e.sha256
        if e.size is not None:
            props["contentSize"] = str(e.size)
        if e.content_type:
            props["encodingFormat"] = e.content_type
        if location.startswith(("http://", "https://")):
            entity = self.crate.add_file(location, properties=props)
        else:
            entity = self.crate.add(
                ContextEntity(self.crate, location, properties={"@type": "File", **props})
            )
        self.files[e.entity_id] = entity
        return entity

    def action(self, job: JobProvenance) -> Any:
        act = job.activity
        instrument = self.workflow(job)
        values = []
        for p in job.parameters:
            values.append(
                self.crate.add(
                    ContextEntity(
                        self.crate,
                        f"#{act.job_id}-param-{p.name}",
                        properties={
                            "@type": "PropertyValue",
                            "name": p.name,
                            "value": p.value,
                            "exampleOfWork": {"@id": f"#{act.jobname}-param-{p.name}"},
                            **({"unitText": p.unit} if p.unit else {}),
                        },
                    )
                )
            )
        by_id = {e.entity_id: e for e in job.entities}
        used = [self.file(by_id[i]) for i in job.used_ids() if i in by_id]
        made = [self.file(e) for e in job.generated_entities()]
        props: dict[str, Any] = {
            "name": f"{act.jobname} job {act.job_id}",
            "url": f"{self.base}/rest/{act.jobname}/{act.job_id}",
            "identifier": act.job_id,
            "agent": self.agent(act.owner, role="owner of the job"),
            "actionStatus": _STATUS.get(act.phase, "http://schema.org/ActiveActionStatus"),
        }
        start, end = _iso(act.start_time), _iso(act.end_time)
        if start:
            props["startTime"] = start
        if end:
            props["endTime"] = end
        if act.error_summary:
            props["error"] = act.error_summary
        if job.context and job.context.host:
            props["description"] = f"ran on {job.context.host}" + (
                f" (Python {job.context.python})" if job.context.python else ""
            )
        action = self.crate.add_action(
            instrument,
            identifier=f"#{act.job_id}",
            object=[*used, *values],
            result=made,
            properties=props,
        )
        return action


def build_crate(jobs: Sequence[JobProvenance], base_url: str, title: str) -> ROCrate:
    """The crate of one job (a Workflow Run Crate) or of a chain (a Process Run Crate)."""
    if not jobs:
        raise ValueError("a crate needs at least one job")
    builder = _Builder(base_url, chain=len(jobs) > 1)
    for job in jobs:
        builder.action(job)
    crate = builder.crate
    crate.name = title
    crate.description = (
        "Provenance of UWS jobs of " + builder.base + ", as recorded by the service "
        "(IVOA ProvenanceDM documents at …/provenance/<format>)."
    )
    crate.datePublished = datetime.now(UTC).replace(microsecond=0)
    crate.license = "https://creativecommons.org/publicdomain/zero/1.0/"
    return crate


def crate_zip(jobs: Sequence[JobProvenance], base_url: str, title: str) -> bytes:
    """:func:`build_crate` written as a zip (what ``…/provenance/rocrate`` serves)."""
    crate = build_crate(jobs, base_url, title)
    with tempfile.TemporaryDirectory(prefix="uws-rocrate-") as tmp:
        path = crate.write_zip(str(Path(tmp) / "crate.zip"))
        return Path(path).read_bytes()

