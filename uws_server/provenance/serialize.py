"""The five serialisations of a provenance document, and writing them for a job.

PROV-JSON, PROV-XML and PROV-N are W3C syntaxes: whatever the document's model, they
are written from its W3C projection (:func:`~.document.to_w3c`), where every IVOA
class is a PROV-DM record carrying ``prov:type voprov:<Class>``. That is what any PROV
reader (``prov``, ProvToolbox) accepts; voprov's own writers produce keys such as
``"parameter"`` that no other reader knows, a PROV-XML that voprov itself cannot read
back, and PROV-N in which a parameter value is not even quoted.

The VOTable and the SVG are written from the document as given: they show the IVOA
classes as tables and node shapes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

from prov.model import ProvDocument

from .document import declare_voprov, to_w3c
from .kinds import xml_safe_document
from .svg import to_svg
from .votable import to_votable

logger = logging.getLogger(__name__)

Format = Literal["json", "xml", "provn", "votable", "svg"]
FORMATS: tuple[Format, ...] = ("json", "xml", "provn", "votable", "svg")

FILENAMES: dict[str, str] = {
    "json": "provenance.json",
    "xml": "provenance.xml",
    "provn": "provenance.provn",
    "votable": "provenance.vot.xml",
    "svg": "provenance.svg",
}

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "xml": "application/xml",
    "provn": "text/provenance-notation",
    "votable": "application/x-votable+xml",
    "svg": "image/svg+xml",
}


def serialize(doc: ProvDocument, fmt: Format | str) -> bytes:
    """The document in one format (``json``, ``xml``, ``provn``, ``votable``, ``svg``)."""
    fmt = str(fmt).lower()
    if fmt in ("json", "xml", "provn"):
        w3c = to_w3c(doc)
        declare_voprov(w3c)
        if fmt == "json":
            return w3c.serialize(format="json", indent=1).encode("utf-8")
        if fmt == "xml":
            safe = xml_safe_document(w3c)
            declare_voprov(safe)
            return safe.serialize(format="xml").encode("utf-8")
        return w3c.get_provn().encode("utf-8")
    if fmt == "votable":
        return to_votable(doc)
    if fmt == "svg":
        return to_svg(doc)
    raise ValueError(f"unknown provenance format {fmt!r}: use one of {', '.join(FORMATS)}")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file, so a reader never sees half a document."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(doc: ProvDocument, outdir: Path) -> dict[str, Path]:
    """Write the five files into ``outdir``; return ``{format: path}`` of those written.

    The SVG is the only one that needs an external program. If Graphviz fails, the
    failure is logged and the four others are still written (and returned): a drawing
    problem must not cost the job its provenance, as it did in OPUS. Any other failure
    raises.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    w3c = to_w3c(doc)  # converted once for the three W3C syntaxes
    for fmt in FORMATS:
        path = outdir / FILENAMES[fmt]
        if fmt == "svg":
            try:
                data = serialize(doc, fmt)
            except RuntimeError:
                logger.exception("provenance SVG not written to %s", path)
                continue
        elif fmt in ("json", "xml", "provn"):
            data = serialize(w3c, fmt)
        else:
            data = serialize(doc, fmt)
        _write_atomic(path, data)
        written[fmt] = path
    return written
