"""The headers a job's file gets when it is served, so that it can never act as a page
of the service.

A result is whatever a script wrote: an HTML or SVG file served inline, on the
service's origin, would run its script with the viewer's credentials (a browser's
cached Basic credentials, an admin's included). So every file served, under ``/rest``
and ``/ui``, gets ``X-Content-Type-Options: nosniff`` (the browser keeps to the declared
type), ``Content-Security-Policy`` with ``sandbox`` (the document, if shown, runs in an
opaque origin without script), and, unless its type is one of the few known to be
inert when shown inline (:data:`INLINE`), ``Content-Disposition: attachment`` (the
browser saves it instead of showing it). The web pages preview only :data:`PREVIEW_IMAGES`
and text shown as text (:mod:`uws_server.web.jobview`).
"""

from __future__ import annotations

FILE_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
# Inert when a browser shows them (with nosniff): no script, no markup, no plug-in.
INLINE = frozenset(
    {
        "text/plain",
        "text/csv",
        "text/tab-separated-values",
        "application/json",
        "application/octet-stream",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    }
)
PREVIEW_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif"})


def media_type(content_type: str) -> str:
    """``text/html`` of ``Text/HTML; charset=utf-8``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_inline(content_type: str) -> bool:
    """True for a type a browser may show inline without risk (see :data:`INLINE`)."""
    return media_type(content_type) in INLINE


def file_headers(content_type: str) -> dict[str, str]:
    """The headers for a served file of ``content_type`` (see the module docstring)."""
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP}
    if not is_inline(content_type):
        headers["Content-Disposition"] = "attachment"
    return headers
