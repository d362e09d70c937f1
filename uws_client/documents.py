"""UWS 1.1 documents (job, job list) read into plain dataclasses.

The standard library's ElementTree is enough: UWS documents are small, and a client that
needs no XML library beyond Python's installs anywhere. Namespaces are matched by local
name so that a UWS 1.0 service (the same elements in the same namespace URI) reads too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
FINAL_PHASES = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})
ACTIVE_PHASES = frozenset({"QUEUED", "EXECUTING"})


class DocumentError(ValueError):
    """The service sent something that is not a UWS document."""


@dataclass(frozen=True)
class ResultRef:
    """One ``uws:result``: its id, where to fetch it, and what the service says of it."""

    id: str
    href: str
    size: int | None = None
    mime_type: str | None = None


@dataclass
class JobInfo:
    """A job document's content."""

    job_id: str
    phase: str
    run_id: str | None = None
    owner: str | None = None
    quote: str | None = None
    creation_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    execution_duration: int | None = None
    destruction: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    results: list[ResultRef] = field(default_factory=list)
    error: str | None = None
    job_info: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES


@dataclass(frozen=True)
class JobRef:
    """One ``uws:jobref`` of a job list."""

    job_id: str
    href: str
    phase: str
    run_id: str | None = None
    owner: str | None = None
    creation_time: str | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(text: bytes | str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise DocumentError(f"not XML: {exc}") from None


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            if child.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true":
                return None
            return (child.text or "").strip()
    return None


def parse_job(text: bytes | str) -> JobInfo:
    """A ``uws:job`` document as a :class:`JobInfo`."""
    root = _parse(text)
    if _local(root.tag) != "job":
        raise DocumentError(f"expected a uws:job document, got <{_local(root.tag)}>")
    job_id = _child_text(root, "jobId")
    phase = _child_text(root, "phase")
    if not job_id or not phase:
        raise DocumentError("a uws:job without jobId or phase")
    duration = _child_text(root, "executionDuration")
    info = JobInfo(
        job_id=job_id,
        phase=phase,
        run_id=_child_text(root, "runId") or None,
        owner=_child_text(root, "ownerId") or None,
        quote=_child_text(root, "quote") or None,
        creation_time=_child_text(root, "creationTime") or None,
        start_time=_child_text(root, "startTime") or None,
        end_time=_child_text(root, "endTime") or None,
        execution_duration=int(duration) if duration and duration.isdigit() else None,
        destruction=_child_text(root, "destruction") or None,
    )
    for child in root:
        name = _local(child.tag)
        if name == "parameters":
            for p in child:
                pid = p.get("id")
                if pid is not None:
                    info.parameters[pid] = (p.text or "").strip()
        elif name == "results":
            for r in child:
                size = r.get("size")
                info.results.append(
                    ResultRef(
                        id=r.get("id", ""),
                        href=r.get(XLINK_HREF, ""),
                        size=int(size) if size and size.isdigit() else None,
                        mime_type=r.get("mime-type"),
                    )
                )
        elif name == "errorSummary":
            info.error = (_child_text(child, "message") or "").strip() or None
        elif name == "jobInfo":
            for item in child.iter():
                if item is not child and item.text and item.text.strip():
                    info.job_info[_local(item.tag)] = item.text.strip()
    return info


def parse_job_list(text: bytes | str) -> list[JobRef]:
    """A ``uws:jobs`` document as a list of :class:`JobRef`."""
    root = _parse(text)
    if _local(root.tag) != "jobs":
        raise DocumentError(f"expected a uws:jobs document, got <{_local(root.tag)}>")
    refs = []
    for ref in root:
        if _local(ref.tag) != "jobref":
            continue
        refs.append(
            JobRef(
                job_id=ref.get("id", ""),
                href=ref.get(XLINK_HREF, ""),
                phase=_child_text(ref, "phase") or "",
                run_id=_child_text(ref, "runId") or None,
                owner=_child_text(ref, "ownerId") or None,
                creation_time=_child_text(ref, "creationTime") or None,
            )
        )
    return refs
