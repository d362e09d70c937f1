"""The UWS 1.1 XML documents: job, job list, results, parameters.

Written as escaped string templates rather than through an XML library: the
documents are small and fixed in shape, and GET job is the hottest path of the
service. Every document validates against the official schema (tested).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from uws_server.models import Job
from uws_server.storage import JobRef

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
_NS = (
    f'xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
# A job's (cache key, ``<uws:jobInfo>`` element or ""): see DocumentCache.
JobInfo = Callable[[Job], tuple[str, str]]

# Characters XML 1.0 cannot carry at all, even escaped.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return escape(_ILLEGAL.sub("\ufffd", value))


def _attr(value: str) -> str:
    return quoteattr(_ILLEGAL.sub("\ufffd", value), {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def iso(dt: datetime | None) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as the standard's examples write it."""
    if dt is None:
        return ""
    return dt.isoformat(timespec="milliseconds") + "Z"  # C-implemented; faster than strftime


def _time_el(name: str, dt: datetime | None) -> str:
    if dt is None:
        return f'<uws:{name} xsi:nil="true"/>'
    return f"<uws:{name}>{iso(dt)}</uws:{name}>"


def job_url(base: str, job: Job | JobRef, jobname: str) -> str:
    return f"{base}/rest/{jobname}/{job.job_id}"


def parameters_body(job: Job, base: str, by_reference: Iterable[str] = ()) -> str:
    refs = set(by_reference)
    out = ["<uws:parameters>"]
    for name, value in job.parameters.items():
        if name in refs:
            url = f"{job_url(base, job, job.jobname)}/parameters/{quote(name)}"
            out.append(
                f'<uws:parameter id={_attr(name)} byReference="true">{_text(url)}</uws:parameter>'
            )
        else:
            out.append(f"<uws:parameter id={_attr(name)}>{_text(value)}</uws:parameter>")
    out.append("</uws:parameters>")
    return "".join(out)


def results_body(job: Job, base: str) -> str:
    out = ["<uws:results>"]
    url = job_url(base, job, job.jobname)
    for r in job.results:
        size = f' size="{r.size}"' if r.size is not None else ""
        href = _attr(f"{url}/results/{quote(r.name)}")
        out.append(
            f'<uws:result id={_attr(r.name)} xlink:type="simple" xlink:href={href}{size}'
            f" mime-type={_attr(r.content_type)}/>"
        )
    out.append("</uws:results>")
    return "".join(out)


class DocumentCache:
    """Rendered job documents by (job id, version, base URL, by-reference names).

    Every change to a job bumps its version, so an entry can never be stale; it saves
    the rendering for clients polling a job and for the hundreds of WAIT requests a
    phase change wakes at once. Bounded: cleared when full.
    """

    def __init__(self, size: int = 4096, job_info: JobInfo | None = None) -> None:
        self.size = size
        # (key, element) of a job's ``jobInfo`` (its progress): the key joins the
        # version in the cache key, since progress does not bump the job's version.
        self.job_info = job_info
        self._docs: dict[tuple[str, int, str, tuple[str, ...], str], str] = {}

    def job_document(self, job: Job, base: str, by_reference: Iterable[str] = ()) -> str:
        info_key, info = self.job_info(job) if self.job_info is not None else ("", "")
        key = (job.job_id, job.version, base, tuple(by_reference), info_key)
        doc = self._docs.get(key)
        if doc is None:
            doc = job_document(job, base, key[3], info)
            if len(self._docs) >= self.size:
                self._docs.clear()
            self._docs[key] = doc
        return doc


def job_document(job: Job, base: str, by_reference: Iterable[str] = (), info: str = "") -> str:
    """The job document; ``info`` is a whole ``<uws:jobInfo>`` element (or "")."""
    parts = [
        _HEAD,
        f'<uws:job {_NS} version="1.1">',
        f"<uws:jobId>{_text(job.job_id)}</uws:jobId>",
    ]
    if job.run_id:
        parts.append(f"<uws:runId>{_text(job.run_id)}</uws:runId>")
    parts.append(f"<uws:ownerId>{_text(job.owner)}</uws:ownerId>")
    parts.append(f"<uws:phase>{job.phase.value}</uws:phase>")
    parts.append(_time_el("quote", job.quote))
    parts.append(f"<uws:creationTime>{iso(job.creation_time)}</uws:creationTime>")
    parts.append(_time_el("startTime", job.start_time))
    parts.append(_time_el("endTime", job.end_time))
    parts.append(f"<uws:executionDuration>{job.execution_duration}</uws:executionDuration>")
    parts.append(_time_el("destruction", job.destruction_time))
    parts.append(parameters_body(job, base, by_reference))
    parts.append(results_body(job, base))
    if job.error_summary:
        parts.append(
            '<uws:errorSummary type="fatal" hasDetail="true">'
            f"<uws:message>{_text(job.error_summary)}</uws:message></uws:errorSummary>"
        )
    if info:
        parts.append(info)
    parts.append("</uws:job>\n")
    return "".join(parts)


def jobs_document(refs: Iterable[JobRef], base: str, jobname: str) -> str:
    parts = [_HEAD, f'<uws:jobs {_NS} version="1.1">']
    for r in refs:
        href = _attr(f"{base}/rest/{jobname}/{r.job_id}")
        parts.append(f'<uws:jobref id={_attr(r.job_id)} xlink:type="simple" xlink:href={href}>')
        parts.append(f"<uws:phase>{r.phase.value}</uws:phase>")
        if r.run_id:
            parts.append(f"<uws:runId>{_text(r.run_id)}</uws:runId>")
        parts.append(f"<uws:ownerId>{_text(r.owner)}</uws:ownerId>")
        parts.append(f"<uws:creationTime>{iso(r.creation_time)}</uws:creationTime>")
        parts.append("</uws:jobref>")
    parts.append("</uws:jobs>\n")
    return "".join(parts)


def results_document(job: Job, base: str) -> str:
    body = results_body(job, base).replace("<uws:results>", f"<uws:results {_NS}>", 1)
    return _HEAD + body + "\n"


def parameters_document(job: Job, base: str, by_reference: Iterable[str] = ()) -> str:
    body = parameters_body(job, base, by_reference)
    return _HEAD + body.replace("<uws:parameters>", f"<uws:parameters {_NS}>", 1) + "\n"
