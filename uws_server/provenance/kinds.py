"""What kind of ProvenanceDM record a prov record is, and its attribute values as text.

The VOTable and SVG writers both sort records by their ProvenanceDM class (activity,
entity, parameter, used, ...). A voprov document says it with the record type; its W3C
projection says it with a ``prov:type`` value such as ``voprov:Parameter`` on a plain
entity. Looking at both means the two models give the same tables and the same picture.
"""

from __future__ import annotations

import re
from datetime import datetime

from prov.constants import PROV_N_MAP, PROV_TYPE
from prov.identifier import QualifiedName
from prov.model import Literal, ProvDocument, ProvRecord

from .document import VOPROV


def record_kind(record: ProvRecord) -> str:
    """The PROV-N keyword of the record's ProvenanceDM class (``parameter``, ``used``...)."""
    kind = PROV_N_MAP[record.get_type()]
    for value in record.get_attribute(PROV_TYPE):
        if isinstance(value, QualifiedName) and value.namespace.uri == VOPROV.uri:
            # voprov has put its own classes into prov's PROV_N_MAP.
            ivoa = PROV_N_MAP.get(value)
            if ivoa is not None:
                return ivoa
    return kind


def is_ivoa_type(value: object) -> bool:
    """True for a ``prov:type`` value that only restates the record's voprov class."""
    return isinstance(value, QualifiedName) and value.namespace.uri == VOPROV.uri


def value_text(value: object) -> str:
    """One attribute value as the text a reader of the PROV-JSON would see."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Literal):
        return str(value.value)
    return str(value)


# Characters XML 1.0 cannot carry at all, not even as character references.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with XML-forbidden characters replaced by U+FFFD.

    A parameter value may hold a control character (a pasted terminal colour code);
    the JSON and PROV-N keep it, but an XML document cannot, and refusing to write the
    document would lose the job's whole provenance for one character.
    """
    return XML_INVALID.sub("\ufffd", text)


def _safe_value(value: object) -> object:
    if isinstance(value, str):
        return xml_safe(value)
    if isinstance(value, Literal) and isinstance(value.value, str):
        return Literal(xml_safe(value.value), value.datatype, value.langtag)
    return value


def xml_safe_document(doc: ProvDocument) -> ProvDocument:
    """``doc`` itself when it can be written as XML, else a copy with values made safe."""
    if not any(
        isinstance(v, str | Literal) and XML_INVALID.search(value_text(v))
        for r in doc.get_records()
        for _, v in r.attributes
    ):
        return doc
    copy = ProvDocument(namespaces=doc.namespaces)
    for r in doc.get_records():
        copy.new_record(r.get_type(), r.identifier, [(k, _safe_value(v)) for k, v in r.attributes])
    return copy
