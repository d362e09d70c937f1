"""Small VOTable 1.4 documents written directly (cone search, DataLink, their errors).

Written as text rather than through astropy's writer: a cone search answer is a few
hundred rows, and building an astropy table per request costs more than the query
(cone search is a fast service in the VO: see the guide's anchors). Every value goes through
:func:`xml_escape`, and the element structure is fixed here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr

VOTABLE_MEDIA_TYPE = "application/x-votable+xml"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
)
_CONTROL = {i: None for i in range(32) if i not in (9, 10, 13)}


_NEEDS_WORK = re.compile(r"[&<>\x00-\x08\x0b\x0c\x0e-\x1f]")


def xml_escape(text: str) -> str:
    """Escape for element content; characters XML 1.0 forbids are dropped. Most
    values (numbers as text, identifiers) need nothing: returned as they are."""
    if _NEEDS_WORK.search(text) is None:
        return text
    return _escape(text.translate(_CONTROL))


def attr(value: str) -> str:
    return quoteattr(str(value).translate(_CONTROL))


@dataclass(frozen=True)
class Field:
    """A VOTable FIELD (or PARAM) description."""

    name: str
    datatype: str  # VOTable datatype: char, double, long, int, boolean
    ucd: str | None = None
    unit: str | None = None
    utype: str | None = None
    description: str | None = None
    arraysize: str | None = None
    xtype: str | None = None
    id: str | None = None

    def attrs(self) -> str:
        parts = [f"name={attr(self.name)}", f"datatype={attr(self.datatype)}"]
        for key, value in (
            ("ID", self.id),
            ("arraysize", self.arraysize),
            ("ucd", self.ucd),
            ("unit", self.unit),
            ("utype", self.utype),
            ("xtype", self.xtype),
        ):
            if value:
                parts.append(f"{key}={attr(value)}")
        return " ".join(parts)

    def element(self) -> str:
        desc = (
            f"<DESCRIPTION>{xml_escape(self.description)}</DESCRIPTION>" if self.description else ""
        )
        return f"<FIELD {self.attrs()}>{desc}</FIELD>\n"


# ADQL/TAP type names -> VOTable datatypes.
VOTABLE_TYPES = {
    "char": "char",
    "double": "double",
    "bigint": "long",
    "integer": "int",
    "timestamp": "char",
    "boolean": "boolean",
}


def cell(value: Any) -> str:
    """One TD's content: empty for NULL (and NaN), ISO for dates."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return xml_escape(str(value))


def table(
    fields: Sequence[Field],
    rows: Iterable[Sequence[Any]],
    *,
    resource_attrs: str = 'type="results"',
    infos: Sequence[tuple[str, str, str]] = (("QUERY_STATUS", "OK", ""),),
    description: str | None = None,
    extra_resources: str = "",
    table_name: str | None = None,
) -> str:
    """A whole VOTable document: one results RESOURCE with one TABLE (TABLEDATA)."""
    out = [HEAD, f"<RESOURCE {resource_attrs}>\n"]
    if description:
        out.append(f"<DESCRIPTION>{xml_escape(description)}</DESCRIPTION>\n")
    for name, value, content in infos:
        out.append(f"<INFO name={attr(name)} value={attr(value)}>{xml_escape(content)}</INFO>\n")
    out.append(f"<TABLE name={attr(table_name)}>\n" if table_name else "<TABLE>\n")
    out.extend(f.element() for f in fields)
    out.append("<DATA><TABLEDATA>\n")
    for row in rows:
        out.append("<TR>" + "".join(f"<TD>{cell(v)}</TD>" for v in row) + "</TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n")
    out.append(extra_resources)
    out.append("</VOTABLE>\n")
    return "".join(out)
