"""TAP result and error documents: VOTable (TABLEDATA), CSV, TSV, JSON.

Written directly rather than through astropy: a result is a flat list of rows whose
FIELDs are known, and the sync cone query's budget is a few milliseconds. Errors are
the TAP 1.1 / DALI error document: a VOTable whose RESOURCE carries
``<INFO name="QUERY_STATUS" value="ERROR">why</INFO>``; a result cut at MAXREC ends
with ``<INFO name="QUERY_STATUS" value="OVERFLOW"/>`` after its TABLE.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from uws_server.vo.tap_schema import Field

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def esc(value: str) -> str:
    return _ILLEGAL.sub("\ufffd", value).translate(_ESC)


@dataclass(frozen=True)
class Format:
    name: str  # csv, tsv, json, votable
    mime: str
    extension: str


VOTABLE = Format("votable", "application/x-votable+xml", "xml")
FORMATS: dict[str, Format] = {
    "votable": VOTABLE,
    "application/x-votable+xml": VOTABLE,
    "application/x-votable+xml;serialization=tabledata": VOTABLE,
    "text/xml": VOTABLE,
    "application/xml": VOTABLE,
    "votable/td": VOTABLE,
    "csv": Format("csv", "text/csv", "csv"),
    "text/csv": Format("csv", "text/csv", "csv"),
    "text/csv;header=present": Format("csv", "text/csv", "csv"),
    "tsv": Format("tsv", "text/tab-separated-values", "tsv"),
    "text/tab-separated-values": Format("tsv", "text/tab-separated-values", "tsv"),
    "json": Format("json", "application/json", "json"),
    "application/json": Format("json", "application/json", "json"),
}
# What /tap/capabilities lists: (mime, aliases, TAPRegExt ivo-id or None).
OUTPUT_FORMATS = (
    ("application/x-votable+xml", ("votable",), "ivo://ivoa.net/std/TAPRegExt#output-votable-td"),
    ("text/csv", ("csv",), None),
    ("text/tab-separated-values", ("tsv",), None),
    ("application/json", ("json",), None),
)


def find_format(value: str | None) -> Format | None:
    """The format a RESPONSEFORMAT/FORMAT value names (None: not supported)."""
    if not value:
        return VOTABLE
    key = value.strip().lower().replace(" ", "")
    return FORMATS.get(key)


def _text(value: object) -> str:
    """A value as text for TABLEDATA/CSV ('' is NULL)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, (dt.date, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _field_xml(f: Field) -> str:
    attrs = [f'name="{esc(f.name)}"', f'datatype="{f.datatype}"']
    if f.arraysize:
        attrs.append(f'arraysize="{esc(f.arraysize)}"')
    for key, value in (("xtype", f.xtype), ("unit", f.unit), ("ucd", f.ucd), ("utype", f.utype)):
        if value:
            attrs.append(f'{key}="{esc(value)}"')
    desc = f"<DESCRIPTION>{esc(f.description)}</DESCRIPTION>" if f.description else ""
    return f"<FIELD {' '.join(attrs)}>{desc}</FIELD>\n"


_NEEDS_ESCAPE = re.compile('[&<>"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')


def _td_text(v: object) -> str:
    if v is None:
        return ""
    text = v if isinstance(v, str) else _text(v)
    return esc(text) if _NEEDS_ESCAPE.search(text) else text


def _td_int(v: object) -> str:
    return "" if v is None else str(int(v))  # type: ignore[call-overload]


def _td_double(v: object) -> str:
    if v is None:
        return ""
    if type(v) is float and v - v == 0:  # finite (NaN and infinities fail v - v == 0)
        return repr(v)
    return _text(v)


def _cell(f: Field) -> Callable[[object], str]:
    """How one column's values become TD text (empty: NULL), cheapest first: a cone of
    a few hundred rows of fifty columns is most of a sync query's time."""
    if f.datatype in ("int", "long", "short"):
        return _td_int
    if f.datatype in ("double", "float"):
        return _td_double
    return _td_text


def votable(
    fields: list[Field],
    rows: list[tuple[object, ...]],
    overflow: bool,
    infos: dict[str, str] | None = None,
) -> str:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n',
        '<RESOURCE type="results">\n<INFO name="QUERY_STATUS" value="OK"/>\n',
    ]
    for name, value in (infos or {}).items():
        out.append(f'<INFO name="{esc(name)}" value="{esc(value)}"/>\n')
    out.append("<TABLE>\n")
    out.extend(_field_xml(f) for f in fields)
    out.append("<DATA><TABLEDATA>\n")
    cells = [_cell(f) for f in fields]
    join = "</TD><TD>".join
    for row in rows:
        out.append(f"<TR><TD>{join([c(v) for c, v in zip(cells, row, strict=True)])}</TD></TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n")
    if overflow:
        out.append('<INFO name="QUERY_STATUS" value="OVERFLOW"/>\n')
    out.append("</RESOURCE>\n</VOTABLE>\n")
    return "".join(out)


def error_votable(message: str) -> str:
    """The TAP 1.1 error document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{esc(message)}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    )


def delimited(fields: list[Field], rows: list[tuple[object, ...]], delimiter: str) -> str:
    buf = io.StringIO()
    if delimiter == ",":
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow([f.name for f in fields])
        writer.writerows([_text(v) for v in row] for row in rows)
    else:  # TSV: no quoting; tabs and newlines inside values become spaces
        clean = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
        buf.write("\t".join(f.name for f in fields) + "\n")
        for row in rows:
            buf.write("\t".join(_text(v).translate(clean) for v in row) + "\n")
    return buf.getvalue()


def _json_value(value: object) -> object:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    return _text(value)


def as_json(fields: list[Field], rows: list[tuple[object, ...]], overflow: bool) -> str:
    meta = [
        {k: v for k, v in vars(f).items() if v not in (None, "", False)} | {"name": f.name}
        for f in fields
    ]
    data = [[_json_value(v) for v in row] for row in rows]
    return json.dumps({"metadata": meta, "data": data, "overflow": overflow})


def render(
    fmt: Format,
    fields: list[Field],
    rows: list[tuple[object, ...]],
    overflow: bool,
    infos: dict[str, str] | None = None,
) -> str:
    if fmt.name == "csv":
        return delimited(fields, rows, ",")
    if fmt.name == "tsv":
        return delimited(fields, rows, "\t")
    if fmt.name == "json":
        return as_json(fields, rows, overflow)
    return votable(fields, rows, overflow, infos)
