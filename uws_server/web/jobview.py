"""What the job page shows of a job: results with previews, logs, provenance files.

Reading files is bounded (a preview is the first 64 KB, a log the last 32 KB) so a job
that wrote gigabytes cannot make its page slow or huge. Provenance documents are looked
for under ``settings.provenance_dir/<job_id>/`` with the file names the provenance
module writes; the page lists the formats that exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from uws_server.common import within
from uws_server.errors import UWSError
from uws_server.models import Job, Phase, Result
from uws_server.served_files import PREVIEW_IMAGES
from uws_server.service import UWSService
from uws_server.web.common import iso, url_part
from uws_server.web.provgraph import DEPTHS, GraphView, graph_view
from uws_server.web.quicklook import is_fits

PREVIEW_BYTES = 64 * 1024
SUMMARY_BYTES = 1024 * 1024  # a summary JSON larger than this is not read
COLLAPSE_LINES = 25  # a text preview longer than this starts folded
LOG_BYTES = 32 * 1024
MAX_TEXT_PREVIEWS = 4

# format -> (file name, label, media type); the REST route is
# /rest/<jobname>/<job_id>/provenance/<format>.
PROVENANCE_FILES: dict[str, tuple[str, str, str]] = {
    "svg": ("provenance.svg", "SVG graph", "image/svg+xml"),
    "json": ("provenance.json", "PROV-JSON", "application/json"),
    "xml": ("provenance.xml", "PROV-XML", "application/xml"),
    "provn": ("provenance.provn", "PROV-N", "text/plain"),
    "votable": ("provenance.vot.xml", "VOTable", "application/x-votable+xml"),
}

# Previews show only what cannot act: raster images in an <img>, and text as escaped
# text in a <pre> (the source of an XML or JSON file). An SVG, HTML or anything else is
# a link; opened, it is served sandboxed (uws_server.served_files).
_IMAGE_TYPES = PREVIEW_IMAGES
_TEXT_TYPES = {"application/json", "application/xml", "application/x-votable+xml", "text/xml"}
_EXTENSIONS = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".txt": "text",
    ".log": "text",
    ".csv": "text",
    ".ecsv": "text",
    ".json": "text",
    ".xml": "text",
    ".yaml": "text",
    ".yml": "text",
}


def preview_kind(content_type: str, path: str) -> str:
    """'image', 'text' or '' (no inline preview) for a result."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _IMAGE_TYPES:
        return "image"
    if media in ("text/html", "image/svg+xml", "application/xhtml+xml"):
        return ""  # its source as text would be safe, but a preview suggests a rendering
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+xml", "+json")):
        return "text"
    if media in ("", "application/octet-stream"):
        return _EXTENSIONS.get(Path(path).suffix.lower(), "")
    return ""


def read_head(path: Path, limit: int = PREVIEW_BYTES) -> tuple[str, bool]:
    """The start of a text file (decoded leniently) and whether it was cut."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return "", False
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def read_tail(path: Path | None, limit: int = LOG_BYTES) -> tuple[str, bool]:
    """The end of a log file and whether earlier lines were left out."""
    if path is None:
        return "", False
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return "", False
    return data.decode("utf-8", errors="replace"), size > limit


@dataclass
class ResultView:
    name: str
    url: str
    content_type: str
    size: int | None
    preview: str  # image | fits | text | ""
    text: str = ""
    cut: bool = False
    quicklook_url: str = ""
    folded: bool = False  # start folded whatever its length (a summary's source)

    @property
    def lines(self) -> int:
        return self.text.count("\n") + 1 if self.text else 0

    @property
    def collapsed(self) -> bool:
        return self.lines > COLLAPSE_LINES or self.cut or self.folded


@dataclass
class SummaryRow:
    """One key number of a summary result: its name, value and error as text."""

    key: str
    value: str
    error: str = ""


@dataclass
class Summary:
    """The key numbers of a result the job definition marks as its summary."""

    name: str
    url: str
    rows: list[SummaryRow] = field(default_factory=list)
    problem: str = ""


@dataclass
class ProvenanceView:
    format: str
    label: str
    url: str
    rest_url: str


def job_base(job: Job) -> str:
    return f"/ui/jobs/{url_part(job.jobname)}/{url_part(job.job_id)}"


def provenance_files(service: UWSService, job: Job) -> list[ProvenanceView]:
    """The provenance documents written for ``job`` so far."""
    folder = service.settings.provenance_dir / job.job_id
    found = []
    for fmt, (filename, label, _media) in PROVENANCE_FILES.items():
        if (folder / filename).is_file():
            found.append(
                ProvenanceView(
                    fmt,
                    label,
                    f"{job_base(job)}/provenance/{fmt}",
                    f"/rest/{url_part(job.jobname)}/{url_part(job.job_id)}/provenance/{fmt}",
                )
            )
    return found


def provenance_path(service: UWSService, job: Job, fmt: str) -> tuple[Path, str] | None:
    entry = PROVENANCE_FILES.get(fmt)
    if entry is None:
        return None
    folder = service.settings.provenance_dir / job.job_id
    path = folder / entry[0]
    if not within(path, folder) or not path.is_file():
        return None
    return path, entry[2]


def _plot_first(view: ResultView) -> int:
    return {"image": 0, "fits": 1}.get(view.preview, 2)


def own_results(service: UWSService, job: Job) -> list[Result]:
    """The job's results but its provenance documents (listed among the results by the
    final hook; the page shows them in their own section)."""
    provdir = service.settings.provenance_dir / job.job_id
    return [r for r in job.results if not within(Path(r.path), provdir)]


def results(service: UWSService, job: Job) -> list[ResultView]:
    """The job's outputs, plots first; provenance documents have their own section.

    Raster images are shown as ``<img>``, a FITS file as its quick-look PNG, the first
    few text files as escaped text; SVG, HTML and the rest are links.
    """
    out = []
    jdir = service.job_dir(job.job_id)
    texts = 0
    for r in own_results(service, job):
        path = Path(r.path)
        kind = preview_kind(r.content_type, r.path)
        # SVG stays a link (docs/security.md class 7): only raster images are shown
        if is_fits(r.content_type, r.path):
            kind = "fits"
        view = ResultView(
            r.name, f"{job_base(job)}/results/{url_part(r.name)}", r.content_type, r.size, kind
        )
        available = within(path, jdir) and path.is_file()
        if not available:
            view.preview = ""
        elif kind == "fits":
            view.quicklook_url = f"{job_base(job)}/quicklook/{url_part(r.name)}"
        elif kind == "text" and texts < MAX_TEXT_PREVIEWS:
            texts += 1
            view.text, view.cut = read_head(path)
        elif kind == "text":
            view.preview = ""
        out.append(view)
    out.sort(key=_plot_first)  # stable: the job's order within each group
    try:  # a summary result's numbers are on top: its full text starts folded
        marked = {e.name for e in service.definition(job.jobname).generated if e.summary}
    except UWSError:
        marked = set()
    for view in out:
        view.folded = view.name in marked
    return out


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        items = [_number(v) for v in value[:12] if not isinstance(v, dict | list)]
        return ", ".join(items) + (" …" if len(value) > 12 else "")
    if isinstance(value, dict):
        return "…"
    return str(value)[:200]


def summaries(service: UWSService, job: Job) -> list[Summary]:
    """The key numbers of the results the definition marks with ``summary``.

    The marker lists keys (``index+-index_err`` pairs a value with its error); a key the
    file lacks is left out, a file that is not a JSON object gives a one-line problem.
    """
    try:
        defn = service.definition(job.jobname)
    except UWSError:
        return []
    by_name = {r.name: r for r in job.results}
    jdir = service.job_dir(job.job_id)
    out = []
    for e in defn.generated:
        if not e.summary or e.name not in by_name:
            continue
        path = Path(by_name[e.name].path)
        summary = Summary(e.name, f"{job_base(job)}/results/{url_part(e.name)}")
        out.append(summary)
        try:
            if not within(path, jdir) or path.stat().st_size > SUMMARY_BYTES:
                raise ValueError("too large or not in the job's directory")
            data = json.loads(path.read_text("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            summary.problem = f"cannot be read: {exc}"[:200]
            continue
        for spec in e.summary.split(","):
            key, _, err = (part.strip() for part in spec.replace("±", "+-").partition("+-"))
            if key in data:
                error = _number(data[err]) if err and err in data else ""
                summary.rows.append(SummaryRow(key, _number(data[key]), error))
    return out


def duration(job: Job) -> str:
    if job.start_time and job.end_time:
        seconds = (job.end_time - job.start_time).total_seconds()
        return f"{seconds:.1f} s"
    return ""


def rerun_url(job: Job) -> str:
    """The submit form pre-filled with this job's parameters ("run again")."""
    query = [(k, v) for k, v in job.parameters.items()]
    if job.run_id:
        query.append(("_runid", job.run_id))
    return f"/ui/submit/{url_part(job.jobname)}?{urlencode(query)}"


def editable_parameters(service: UWSService, job: Job) -> list[tuple[str, str, str]]:
    """(name, value, datatype) of the parameters a PENDING job's page lets one change:
    the definition's parameters that are not inputs (inputs are fixed at creation)."""
    if job.phase != Phase.PENDING:
        return []
    try:
        defn = service.definition(job.jobname)
    except UWSError:
        return []
    used = {e.name for e in defn.used}
    return [
        (p.name, job.parameters.get(p.name, p.default or ""), p.datatype)
        for p in defn.parameters
        if p.name not in used and p.datatype != "file"
    ]


def provenance_graph(service: UWSService, job: Job) -> GraphView | None:
    """The job's stored compact picture with its link areas, if it has been drawn."""
    found = provenance_path(service, job, "svg")
    if found is None:
        return None
    try:
        data = found[0].read_bytes()
    except OSError:
        return None
    return graph_view(data, service.provenance.base_url())


def job_details(service: UWSService, job: Job) -> dict[str, Any]:
    """Everything the job page's live section shows."""
    try:
        uploaded = set(service.by_reference(job))
    except OSError:
        uploaded = set()
    stdout, stdout_cut = read_tail(_log(service, job))
    stderr, stderr_cut = read_tail(_log(service, job, "stderr"))
    return {
        "job": job,
        "base": job_base(job),
        "final": job.phase.is_final,
        "pending": job.phase == Phase.PENDING,
        "uploaded": uploaded,
        "results": results(service, job),
        "summaries": summaries(service, job) if job.results else [],
        "provenance": provenance_files(service, job),
        "stdout": stdout,
        "stdout_cut": stdout_cut,
        "stderr": stderr,
        "stderr_cut": stderr_cut,
        "duration": duration(job),
        "rerun_url": rerun_url(job),
        "editable": editable_parameters(service, job),
        "graph": provenance_graph(service, job) if job.phase.is_final else None,
        "depths": DEPTHS,
    }


def _log(service: UWSService, job: Job, stream: str = "stdout") -> Path | None:
    path = service.job_dir(job.job_id) / f"{stream}.log"
    return path if path.is_file() else None


def job_status(service: UWSService, job: Job) -> dict[str, Any]:
    """The JSON the job page polls: enough to know when to refresh its details."""
    return {
        "job_id": job.job_id,
        "jobname": job.jobname,
        "phase": job.phase.value,
        "final": job.phase.is_final,
        "version": job.version,
        "run_id": job.run_id,
        "owner": job.owner,
        "creation_time": iso(job.creation_time),
        "start_time": iso(job.start_time),
        "end_time": iso(job.end_time),
        "error": job.error_summary,
        # what the page counts (data-results): a count that also held the provenance
        # documents differed from the page's on every finished job, which then re-rendered
        # its details once after loading (and lost a choice the user had just made)
        "results": [r.name for r in own_results(service, job)],
        "provenance": [p.format for p in provenance_files(service, job)],
    }
