"""The provenance document as a VOTable: one TABLE per ProvenanceDM class.

voprov has no VOTable serialiser. The layout is ProvTAP's: a table for each class
(activity, entity, agent, used, wasGeneratedBy, wasAssociatedWith, wasAttributedTo,
wasDerivedFrom, wasInformedBy, parameter), one row per record. Those ten tables are
always present, even empty, so a client can rely on them; records of other classes
(activityDescription, isDescribedBy, wasConfiguredBy...) get a table of their own, so
every record of the document is one row somewhere.

Columns are the record's formal attributes (``id`` first) followed by every other
attribute found in that table's records. A column is named after the attribute's local
name (``prefix_local`` when two prefixes share it) and carries the full qualified name
as its utype, so nothing of the PROV-JSON is lost. Values are text, as in PROV-JSON;
times are ISO 8601 with ``xtype="timestamp"``; an attribute with several values (the
context's package list) has them sorted, one per line. The prefixes used in ids are
listed as INFO elements (``prefix:job`` = its URI), so ids can be expanded.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from datetime import datetime

from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile
from prov.constants import PROV_N_MAP, PROV_TYPE
from prov.identifier import QualifiedName
from prov.model import PROV_REC_CLS, ProvDocument, ProvRecord

from .document import VOPROV
from .kinds import is_ivoa_type, record_kind, value_text, xml_safe

# ProvTAP's tables, in this order, always written.
STANDARD_TABLES = (
    "activity",
    "entity",
    "agent",
    "used",
    "wasGeneratedBy",
    "wasAssociatedWith",
    "wasAttributedTo",
    "wasDerivedFrom",
    "wasInformedBy",
    "parameter",
)

_KEYWORD_TYPE: dict[str, QualifiedName] = {}
for _qn, _kw in PROV_N_MAP.items():
    # Prefer the voprov class: its formal attributes are the IVOA ones (Parameter:
    # name, value) where the W3C class has none.
    if _kw not in _KEYWORD_TYPE or _qn.namespace.uri == VOPROV.uri:
        _KEYWORD_TYPE[_kw] = _qn

_NCNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def _formal_names(kind: str) -> list[QualifiedName]:
    """The formal attributes of a ProvenanceDM class, from prov's / voprov's class."""
    qn = _KEYWORD_TYPE.get(kind)
    cls = PROV_REC_CLS.get(qn) if qn is not None else None
    return list(getattr(cls, "FORMAL_ATTRIBUTES", None) or ())


def _column_names(attrs: list[QualifiedName]) -> list[str]:
    """Local names, prefixed only where two attributes share one."""
    counts: dict[str, int] = defaultdict(int)
    for a in attrs:
        counts[a.localpart] += 1
    return [
        a.localpart if counts[a.localpart] == 1 else f"{a.namespace.prefix}_{a.localpart}"
        for a in attrs
    ]


def _prefix_info(prefix: str, uri: str) -> Info:
    return Info(ID=f"prefix_{_NCNAME_BAD.sub('_', prefix)}", name=f"prefix:{prefix}", value=uri)


def _cell(values: list[object]) -> str:
    texts = sorted(xml_safe(value_text(v)) for v in values)
    return "\n".join(texts)


class _TableData:
    """The rows of one table before it becomes a VOTable TABLE."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.formal = _formal_names(kind)
        self.extra: dict[QualifiedName, None] = {}
        self.records: list[ProvRecord] = []
        self.timestamps: set[QualifiedName] = set()

    def add(self, record: ProvRecord) -> None:
        self.records.append(record)
        formal = set(self.formal)
        for name, value in record.attributes:
            if isinstance(value, datetime):
                self.timestamps.add(name)
            if name not in formal and not (name == PROV_TYPE and is_ivoa_type(value)):
                self.extra.setdefault(name, None)
        # A record of another class mapped here (W3C projection): keep its formals too.
        for name, _ in record.formal_attributes:
            if name not in formal:
                self.extra.setdefault(name, None)

    def rows(self, attrs: list[QualifiedName]) -> list[tuple[str, ...]]:
        out = []
        for r in self.records:
            values: dict[QualifiedName, list[object]] = defaultdict(list)
            for name, value in r.attributes:
                if name == PROV_TYPE and is_ivoa_type(value):
                    continue  # the table already says the class
                values[name].append(value)
            ident = str(r.identifier) if r.identifier is not None else ""
            out.append((ident, *(_cell(values.get(a, [])) for a in attrs)))
        return out


def to_votable(doc: ProvDocument) -> bytes:
    """The document as VOTable 1.4 XML (TABLEDATA), one table per ProvenanceDM class."""
    tables: dict[str, _TableData] = {k: _TableData(k) for k in STANDARD_TABLES}
    for record in doc.get_records():
        kind = record_kind(record)
        if kind not in tables:
            tables[kind] = _TableData(kind)
        tables[kind].add(record)

    vot = VOTableFile(version="1.4")
    resource = Resource(type="results")
    vot.resources.append(resource)
    resource.description = "IVOA ProvenanceDM records, one table per class (ProvTAP layout)"
    for ns in sorted(doc.namespaces, key=lambda n: n.prefix):
        resource.infos.append(_prefix_info(ns.prefix, ns.uri))
    if not any(ns.prefix == VOPROV.prefix for ns in doc.namespaces):
        resource.infos.append(_prefix_info(VOPROV.prefix, VOPROV.uri))

    for kind, data in tables.items():
        attrs = [*data.formal, *data.extra]
        names = ["id", *_column_names(attrs)]
        table = TableElement(vot, ID=f"t_{_NCNAME_BAD.sub('_', kind)}", name=kind)
        resource.tables.append(table)
        fields = [
            Field(
                vot,
                name="id",
                ID=f"{table.ID}.id",
                datatype="unicodeChar",
                arraysize="*",
                utype=f"voprov:{kind}.id",
            )
        ]
        for name, qn in zip(names[1:], attrs, strict=True):
            fields.append(
                Field(
                    vot,
                    name=name,
                    ID=f"{table.ID}.{_NCNAME_BAD.sub('_', name)}",
                    datatype="unicodeChar",
                    arraysize="*",
                    utype=f"{qn.namespace.prefix}:{qn.localpart}",
                    xtype="timestamp" if qn in data.timestamps else None,
                )
            )
        table.fields.extend(fields)
        rows = data.rows(attrs)
        table.create_arrays(len(rows))
        for i, row in enumerate(rows):
            table.array[i] = row

    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()
