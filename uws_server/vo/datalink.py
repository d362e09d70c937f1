"""DataLink 1.1 links of a catalogued data set, and the service descriptors of the job
definitions that accept it.

One ``{links}`` table per request: ``#this`` (the file), ``#preview`` (PNG),
``#auxiliary`` (a DL3 observation's IRFs; a product's sibling results), ``#progenitor``
(ProvSAP BACK from the data set's entity), ``#documentation`` (the UWS job that made
it) and ``#proc`` rows pointing at service descriptors. A job definition is a service
descriptor (as in OPUS): its input parameters become the descriptor's PARAMs, with
the data set pre-set in ``obs_ids``, and its access URL is the job creation endpoint
``/rest/<definition>`` (POST; ``PHASE=RUN`` starts the job).

An ID that is unknown, or that the caller may not see, gets the same error row
(``NotFoundFault``): the answer never tells the two apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from uws_server.dl3 import OBS_IDS_PARAMETER
from uws_server.jobdef import JobDefinition, ParameterDef
from uws_server.vo.votable_out import Field, attr, table, xml_escape

DATALINK_MEDIA_TYPE = "application/x-votable+xml;content=datalink"
DATALINK_STANDARD = "ivo://ivoa.net/std/DataLink#links-1.1"
# RESPONSEFORMAT values accepted (lower case); the answer is always the DataLink VOTable.
RESPONSE_FORMATS = frozenset(
    {
        "votable",
        "application/x-votable+xml",
        "application/x-votable+xml;content=datalink",
        "application/x-votable+xml; content=datalink",
        "text/xml",
    }
)

FIELDS = (
    Field("ID", "char", "meta.id;meta.main", arraysize="*"),
    Field("access_url", "char", "meta.ref.url", arraysize="*"),
    Field("service_def", "char", "meta.ref", arraysize="*"),
    Field("error_message", "char", "meta.code.error", arraysize="*"),
    Field("semantics", "char", "meta.code", arraysize="*"),
    Field("description", "char", "meta.note", arraysize="*"),
    Field("content_type", "char", "meta.code.mime", arraysize="*"),
    Field("content_length", "long", "phys.size;meta.file", unit="byte"),
    Field("content_qualifier", "char", "meta.code.class", arraysize="*"),
    Field("local_semantics", "char", "meta.code", arraysize="*"),
    Field("link_auth", "char", "meta.code", arraysize="*"),
    Field("link_authorized", "boolean", "meta.code"),
)


@dataclass
class Link:
    """One row of the links table."""

    id: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    semantics: str = "#this"
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    link_auth: str | None = None
    link_authorized: bool | None = None

    def values(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.access_url,
            self.service_def,
            self.error_message,
            self.semantics,
            self.description,
            self.content_type,
            self.content_length,
            self.content_qualifier,
            self.local_semantics,
            self.link_auth,
            self.link_authorized,
        )


def not_found(did: str) -> Link:
    """The one answer for an unknown ID and for one the caller may not see."""
    return Link(
        id=did,
        semantics="#this",
        error_message=f"NotFoundFault: {did}",
        description="no data set with this identifier is visible to you",
    )


# JDL datatypes -> VOTable datatypes of a descriptor PARAM.
_PARAM_TYPES = {
    "xs:string": ("char", "*"),
    "xs:anyURI": ("char", "*"),
    "file": ("char", "*"),
    "xs:integer": ("int", None),
    "xs:long": ("long", None),
    "xs:double": ("double", None),
    "xs:float": ("float", None),
    "xs:boolean": ("boolean", None),
}


def accepts_datasets(defn: JobDefinition) -> bool:
    """A definition analyses DL3 observations when ``obs_ids`` is a required parameter
    without a default (``simulate_dl3``'s optional one names ids to create; the web
    page's "Analyse with" list uses the same rule)."""
    p = defn.parameter(OBS_IDS_PARAMETER)
    return p is not None and p.required and not p.default


def _descriptor_param(p: ParameterDef, preset: dict[str, str]) -> str:
    datatype, arraysize = _PARAM_TYPES.get(p.datatype, ("char", "*"))
    if p.arraysize:
        datatype, arraysize = "char", "*"
    value = preset.get(p.name, p.default or "")
    parts = [f"name={attr(p.name)}", f"datatype={attr(datatype)}", f"value={attr(value)}"]
    if arraysize:
        parts.append(f"arraysize={attr(arraysize)}")
    for key, v in (("unit", p.unit), ("ucd", p.ucd), ("utype", p.utype)):
        if v:
            parts.append(f"{key}={attr(v)}")
    inner = ""
    if p.description:
        inner += f"<DESCRIPTION>{xml_escape(p.description)}</DESCRIPTION>"
    if p.min is not None or p.max is not None or p.options:
        inner += "<VALUES>"
        if p.min is not None:
            inner += f"<MIN value={attr(p.min)}/>"
        if p.max is not None:
            inner += f"<MAX value={attr(p.max)}/>"
        inner += "".join(f"<OPTION value={attr(o)}/>" for o in p.options)
        inner += "</VALUES>"
    return f"<PARAM {' '.join(parts)}>{inner}</PARAM>\n"


def descriptor_id(defn: JobDefinition) -> str:
    return f"proc_{defn.name}"


def service_descriptor(defn: JobDefinition, base: str, preset: dict[str, str]) -> str:
    """The ``adhoc:service`` RESOURCE of a job definition, ``preset`` values filled in."""
    out = [
        f'<RESOURCE type="meta" utype="adhoc:service" ID={attr(descriptor_id(defn))} '
        f"name={attr(defn.name)}>\n",
    ]
    if defn.description:
        out.append(f"<DESCRIPTION>{xml_escape(defn.description)}</DESCRIPTION>\n")
    out.append(
        f'<PARAM name="accessURL" datatype="char" arraysize="*" ucd="meta.ref.url" '
        f"value={attr(f'{base}/rest/{quote(defn.name)}')}/>\n"
    )
    out.append(
        '<PARAM name="standardID" datatype="char" arraysize="*" '
        'value="ivo://ivoa.net/std/UWS#rest-1.1"/>\n'
    )
    out.append(
        '<PARAM name="contentType" datatype="char" arraysize="*" '
        'value="application/x-www-form-urlencoded"/>\n'
    )
    out.append('<GROUP name="inputParams">\n')
    for p in defn.parameters:
        out.append(_descriptor_param(p, preset))
    out.append(
        '<PARAM name="PHASE" datatype="char" arraysize="*" value="RUN">'
        "<DESCRIPTION>UWS: RUN starts the job when it is created</DESCRIPTION>"
        '<VALUES><OPTION value="RUN"/></VALUES></PARAM>\n'
    )
    out.append("</GROUP>\n</RESOURCE>\n")
    return "".join(out)


def links_document(links: Sequence[Link], descriptors: Sequence[str] = ()) -> str:
    """The DataLink response: the links table plus the service descriptors."""
    return table(
        FIELDS,
        (link.values() for link in links),
        resource_attrs='type="results"',
        extra_resources="".join(descriptors),
        table_name="links",
    )


def error_document(message: str) -> str:
    """A DataLink error for the whole request (no ID, too many IDs)."""
    return table(
        FIELDS,
        (),
        infos=(("QUERY_STATUS", "ERROR", message),),
        table_name="links",
    )
