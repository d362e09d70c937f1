"""The OPUS job definition format: a VOTable 1.3 file with one ActivityDescription RESOURCE.

Operators already have definitions written by OPUS, so the reader accepts what OPUS
writes (its ``xs:`` datatype spellings, ``type="no_query"`` for optional parameters,
``xtype="application/octet-stream"`` for files, CR-LF scripts, an older layout of the
Used/Generated groups) and the writer produces the same layout, so that files move
between the two servers both ways.

Reading only turns XML into a :class:`JobDefinition`; whether its content is acceptable
is :func:`uws_server.jdl.validate.validate`'s job, so that every problem of a file is
reported together. The parser never loads DTDs, entities or anything from the network.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from uws_server.errors import DefinitionError
from uws_server.jdl.validate import STRING_TYPES, validate
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
VOTABLE_CONTENT_TYPE = "application/x-votable+xml"
MAX_DEFINITION_BYTES = 4 * 1024 * 1024

# VOTable datatypes (and the xs: names OPUS also writes) -> the service's datatypes.
_DATATYPES_IN = {
    "char": "xs:string",
    "unicodechar": "xs:string",
    "string": "xs:string",
    "int": "xs:integer",
    "integer": "xs:integer",
    "short": "xs:integer",
    "unsignedbyte": "xs:integer",
    "long": "xs:long",
    "double": "xs:double",
    "float": "xs:float",
    "boolean": "xs:boolean",
    "anyuri": "xs:anyURI",
    "file": "file",
}
_DATATYPES_OUT = {
    "xs:string": "char",
    "xs:integer": "int",
    "xs:long": "long",
    "xs:double": "double",
    "xs:float": "float",
    "xs:boolean": "boolean",
    "xs:anyURI": "char",
    "file": "char",
}
_FILE_XTYPES = {"application/octet-stream", "file"}
_URI_XTYPES = {"anyuri", "xs:anyuri", "uri"}
FILE_XTYPE = "application/octet-stream"  # what OPUS writes for a file parameter
URI_XTYPE = "xs:anyURI"

# Top-level PARAMs: (name, utype). Names are matched case-insensitively on reading
# because older OPUS files spell "executionduration".
_TEXT_PARAMS = (
    ("doculink", "voprov:ActivityDescription.doculink"),
    ("type", "voprov:ActivityDescription.type"),
    ("subtype", "voprov:ActivityDescription.subtype"),
    ("version", "voprov:ActivityDescription.version"),
    ("contact_name", "voprov:Agent.name"),
    ("contact_email", "voprov:Agent.email"),
)
SBATCH_PARAM = "sbatch_options"
_ENTITY_PARAMS = ("role", "multiplicity", "default", "content_type", "url")
# Catalogue markers of a generated entity (written only when set, so that a definition
# without them is written exactly as OPUS writes it).
_DATASET_PARAMS = (
    ("dataproduct_type", "obscore:ObsDataset.dataProductType", "char"),
    ("calib_level", "obscore:ObsDataset.calibLevel", "int"),
    ("preview", "", "char"),
    ("summary", "", "char"),
)
_ENTITY_UTYPES = {
    "used": {
        "role": "voprov:UsedDescription.role",
        "multiplicity": "voprov:UsedDescription.multiplicity",
    },
    "generated": {
        "role": "voprov:WasGeneratedByDescription.role",
        "multiplicity": "voprov:WasGeneratedByDescription.multiplicity",
    },
    "any": {
        "default": "voprov:Entity.id",
        "content_type": "voprov:EntityDescription.content_type",
        "url": "voprov:EntityDescription.url",
    },
}


def _local(element: etree._Element) -> str:
    """Tag name without namespace: VOTable 1.1 to 1.4 (or none) are read alike."""
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in element if _local(c) == name]


def _description(element: etree._Element) -> str:
    for child in _children(element, "DESCRIPTION"):
        return (child.text or "").strip()
    return ""


def _optional(element: etree._Element, attr: str) -> str | None:
    """An attribute whose absence and empty value mean the same: not set."""
    value = element.get(attr)
    return value if value else None


def _parse_xml(data: bytes, source: str | None) -> etree._Element:
    # A new parser per call: lxml parsers are not shared safely between threads.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DefinitionError([("xml", f"not well-formed XML: {exc}")], source) from None
    if root.getroottree().docinfo.doctype:
        raise DefinitionError([("xml", "a DOCTYPE is not allowed")], source)
    return root


def _find_resource(root: etree._Element, source: str | None) -> etree._Element:
    if _local(root) != "VOTABLE":
        raise DefinitionError([("xml", f"root element is {_local(root)!r}, not VOTABLE")], source)
    resources = [e for e in root.iter() if _local(e) == "RESOURCE"]
    if not resources:
        raise DefinitionError([("xml", "no RESOURCE element")], source)
    for resource in resources:
        if (resource.get("utype") or "").endswith("ActivityDescription"):
            return resource
    return resources[0]


def _read_int(text: str | None, field: str, problems: list[tuple[str, str]]) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        problems.append((field, f"{text!r} is not an integer"))
        return None


def _read_parameter(element: etree._Element) -> ParameterDef:
    raw_type = element.get("datatype") or "char"
    xtype = (element.get("xtype") or "").lower()
    key = raw_type.lower().removeprefix("xs:")
    if xtype in _FILE_XTYPES or key == "file":
        datatype = "file"
    elif xtype in _URI_XTYPES:
        datatype = "xs:anyURI"
    else:
        # An unknown datatype is kept as written so that validation names it.
        datatype = _DATATYPES_IN.get(key, raw_type)
    arraysize = _optional(element, "arraysize")
    if arraysize == "*" and datatype in STRING_TYPES:
        arraysize = None  # plain text: implied by the writer
    param = ParameterDef(
        name=element.get("name") or element.get("ID") or "",
        datatype=datatype,
        default=_optional(element, "value"),
        required=(element.get("type") or "").lower() != "no_query",
        description=_description(element),
        unit=_optional(element, "unit"),
        ucd=_optional(element, "ucd"),
        utype=_optional(element, "utype"),
        arraysize=arraysize,
    )
    for values in _children(element, "VALUES"):
        for child in values:
            kind = _local(child)
            if kind == "MIN":
                param.min = _optional(child, "value")
            elif kind == "MAX":
                param.max = _optional(child, "value")
        param.options.extend(o.get("value", "") for o in values.iter() if _local(o) == "OPTION")
    return param


def _read_entity(element: etree._Element) -> EntityDef:
    entity = EntityDef(name=element.get("name") or "", description=_description(element))
    if _local(element) == "PARAM":
        # Older OPUS layout: one PARAM per entity, content type in xtype, URL in a LINK.
        entity.default = element.get("value") or ""
        entity.content_type = element.get("xtype") or ""
        for link in _children(element, "LINK"):
            entity.url = link.get("href") or ""
        return entity
    for param in _children(element, "PARAM"):
        name = param.get("name") or ""
        if name in _ENTITY_PARAMS:
            setattr(entity, name, param.get("value") or "")
        elif any(name == p[0] for p in _DATASET_PARAMS):
            setattr(entity, name, (param.get("value") or "").strip())
    return entity


def read_votable(
    data: bytes | str, source: str | None = None, *, check: bool = True
) -> JobDefinition:
    """Read an OPUS VOTable job definition.

    Raises :class:`DefinitionError` for XML that is not a job definition, and with
    ``check`` (the default) also for every validation problem, so that a definition
    this returns can be used as it is. ``source`` names the file in messages.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_DEFINITION_BYTES:
        raise DefinitionError([("xml", f"larger than {MAX_DEFINITION_BYTES} bytes")], source)
    resource = _find_resource(_parse_xml(data, source), source)
    problems: list[tuple[str, str]] = []
    defn = JobDefinition(
        name=resource.get("name") or resource.get("ID") or "",
        description=_description(resource),
        source_file=source,
    )
    params = {(p.get("name") or "").lower(): p for p in _children(resource, "PARAM")}
    for field, _utype in _TEXT_PARAMS:
        if field in params:
            setattr(defn, field, params[field].get("value") or "")
    if not defn.doculink:
        for link in _children(resource, "LINK"):
            if link.get("content-role") in (None, "doc") and link.get("href"):
                defn.doculink = link.get("href") or ""
                break
    if not defn.description and "annotation" in params:
        defn.description = (params["annotation"].get("value") or "").strip()
    duration = params.get("executionduration")
    if duration is not None:
        defn.execution_duration = (
            _read_int(duration.get("value"), "execution_duration", problems) or 0
        )
    quote = params.get("quote")
    if quote is not None:
        defn.quote = _read_int(quote.get("value"), "quote", problems)
    script = params.get("script")
    if script is not None:
        defn.script = (script.get("value") or "").replace("\r\n", "\n").replace("\r", "\n")
    sbatch = params.get(SBATCH_PARAM)
    if sbatch is not None:
        # Only \n separates options (not every Unicode line break splitlines knows).
        lines = (sbatch.get("value") or "").replace("\r", "\n").split("\n")
        defn.sbatch_options = [line.strip() for line in lines if line.strip()]
    for group in _children(resource, "GROUP"):
        kind = (group.get("name") or "").lower()
        if kind == "inputparams":
            defn.parameters.extend(_read_parameter(p) for p in _children(group, "PARAM"))
        elif kind in ("used", "generated"):
            entities = [_read_entity(e) for e in group if _local(e) in ("GROUP", "PARAM")]
            (defn.used if kind == "used" else defn.generated).extend(entities)
    if check:
        problems.extend(validate(defn))
    if problems:
        raise DefinitionError(problems, source)
    return defn


def read_votable_file(path: str | Path, *, check: bool = True) -> JobDefinition:
    """Read a definition file; ``source_file`` is set to its path for messages."""
    path = Path(path)
    with path.open("rb") as f:
        data = f.read(MAX_DEFINITION_BYTES + 1)
    return read_votable(data, str(path), check=check)


def _sub(parent: etree._Element, tag: str, **attrib: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{VOTABLE_NS}}}{tag}", attrib)


def _text_param(
    parent: etree._Element, name: str, value: str, utype: str | None = None
) -> etree._Element:
    attrib = {"name": name, "value": value, "arraysize": "*", "datatype": "char"}
    if utype:
        attrib["utype"] = utype
    return _sub(parent, "PARAM", **attrib)


def _write_parameter(group: etree._Element, p: ParameterDef, taken_ids: set[str]) -> None:
    attrib: dict[str, str] = {}
    if p.name not in taken_ids:  # XML IDs must be unique in the document
        attrib["ID"] = p.name
        taken_ids.add(p.name)
    attrib["name"] = p.name
    attrib["datatype"] = _DATATYPES_OUT.get(p.datatype, p.datatype)
    attrib["value"] = p.default or ""
    if p.datatype == "file":
        attrib["xtype"] = FILE_XTYPE
    elif p.datatype == "xs:anyURI":
        attrib["xtype"] = URI_XTYPE
    if p.arraysize is not None:
        attrib["arraysize"] = p.arraysize
    elif p.datatype in STRING_TYPES:
        attrib["arraysize"] = "*"
    if not p.required:
        attrib["type"] = "no_query"
    for attr in ("unit", "ucd", "utype"):
        value = getattr(p, attr)
        if value is not None:
            attrib[attr] = value
    element = _sub(group, "PARAM", **attrib)
    _sub(element, "DESCRIPTION").text = p.description
    if p.min is not None or p.max is not None or p.options:
        values = _sub(element, "VALUES")
        if p.min is not None:
            _sub(values, "MIN", value=p.min)
        if p.max is not None:
            _sub(values, "MAX", value=p.max)
        for option in p.options:
            _sub(values, "OPTION", value=option)


def _write_entity(group: etree._Element, kind: str, e: EntityDef) -> None:
    utype = "voprov:UsedDescription" if kind == "used" else "voprov:WasGeneratedBy"
    element = _sub(group, "GROUP", name=e.name, utype=utype)
    _sub(element, "DESCRIPTION").text = e.description
    utypes = {**_ENTITY_UTYPES[kind], **_ENTITY_UTYPES["any"]}
    for attr in _ENTITY_PARAMS:
        value = getattr(e, attr)
        if attr == "url" and kind == "generated" and not value:
            continue  # OPUS writes no url for results
        _text_param(element, attr, value, utypes[attr])
    if kind == "generated":
        for attr, utype, datatype in _DATASET_PARAMS:
            value = getattr(e, attr)
            if value:
                attrs = {"name": attr, "value": value, "datatype": datatype}
                if datatype == "char":
                    attrs["arraysize"] = "*"
                if utype:
                    attrs["utype"] = utype
                _sub(element, "PARAM", **attrs)


def write_votable(defn: JobDefinition) -> bytes:
    """The definition as an OPUS-style VOTable 1.3 document (UTF-8 bytes).

    Raises :class:`DefinitionError` if a text cannot be put in XML (control characters);
    a definition that passed validation always can.
    """
    root = etree.Element(
        f"{{{VOTABLE_NS}}}VOTABLE",
        {"version": "1.3", f"{{{XSI_NS}}}schemaLocation": f"{VOTABLE_NS} {VOTABLE_NS}"},
        nsmap={None: VOTABLE_NS, "xsi": XSI_NS},
    )
    try:
        resource = _sub(
            root,
            "RESOURCE",
            ID=defn.name,
            name=defn.name,
            type="meta",
            utype="voprov:ActivityDescription",
        )
        if defn.description:
            _sub(resource, "DESCRIPTION").text = defn.description
        for field, utype in _TEXT_PARAMS:
            _text_param(resource, field, getattr(defn, field), utype)
        _sub(
            resource,
            "PARAM",
            name="executionDuration",
            value=str(defn.execution_duration),
            datatype="int",
            utype="uws:Job.executionDuration",
        )
        if defn.quote is not None:
            _sub(
                resource,
                "PARAM",
                name="quote",
                value=str(defn.quote),
                datatype="int",
                utype="uws:Job.quote",
            )
        _text_param(resource, "script", defn.script)
        if defn.sbatch_options:
            _text_param(resource, SBATCH_PARAM, "\n".join(defn.sbatch_options))
        inputs = _sub(resource, "GROUP", name="InputParams")
        taken_ids = {defn.name}
        for p in defn.parameters:
            _write_parameter(inputs, p, taken_ids)
        for kind, entities in (("used", defn.used), ("generated", defn.generated)):
            group = _sub(resource, "GROUP", name=kind.capitalize())
            for e in entities:
                _write_entity(group, kind, e)
    except (ValueError, TypeError) as exc:
        # lxml refuses strings XML cannot hold; say which definition, not a traceback.
        raise DefinitionError([("xml", f"cannot be written as XML: {exc}")], defn.name) from None
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
