"""The job definition (ActivityDescription, "JDL") as plain data.

Operators author these as OPUS VOTable files in ``job_definitions/``; the readers and
writers live in :mod:`uws_server.jdl`. The rest of the service only sees these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Datatypes a parameter may have, in the xs: spelling OPUS uses on its forms, mapped from
# the VOTable datatypes found in JDL files.
DATATYPES = (
    "xs:string",
    "xs:integer",
    "xs:long",
    "xs:double",
    "xs:float",
    "xs:boolean",
    "xs:anyURI",
    "file",
)


@dataclass
class ParameterDef:
    """One input parameter of a job definition."""

    name: str
    datatype: str = "xs:string"  # one of DATATYPES
    default: str | None = None
    required: bool = True
    description: str = ""
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    min: str | None = None
    max: str | None = None
    options: list[str] = field(default_factory=list)
    # VOTable arraysize for a list-valued parameter (e.g. "*", "3"): the value is then
    # whitespace-separated items. None for a single value (and for plain text, whose
    # VOTable "char" arraysize="*" is implied).
    arraysize: str | None = None


@dataclass
class EntityDef:
    """A used (input) or generated (output) entity of a job definition.

    For a used entity the job parameter of the same name carries its value: an uploaded
    file, a URL, or an entity id resolved through ``url`` (a template with ``$ID``).
    For a generated entity ``default`` is the file name the script writes.
    """

    name: str
    description: str = ""
    role: str = ""
    multiplicity: str = ""  # "", "1", "*" ...
    default: str = ""
    content_type: str = ""
    url: str = ""
    # A generated entity that is a catalogued data set (a row of ivoa.obscore, found by
    # cone search, TAP and DataLink) says so with its ObsCore dataproduct_type (event,
    # image, cube, spectrum, timeseries) and calib_level (0-4); ``preview`` names the
    # generated entity holding its PNG quick-look. Empty: not catalogued.
    dataproduct_type: str = ""
    calib_level: str = ""
    preview: str = ""
    # A generated JSON object whose key numbers the job page shows as a table at the top
    # of the results: the keys to show, comma-separated, in order; ``a+-b`` shows key
    # ``a`` with ``b`` as its error (e.g. "index+-index_err, significance"). Empty: none.
    summary: str = ""


@dataclass
class JobDefinition:
    """Everything the service needs to validate, run and describe one kind of job."""

    name: str
    description: str = ""
    doculink: str = ""
    type: str = ""
    subtype: str = ""
    version: str = "1"
    contact_name: str = ""
    contact_email: str = ""
    execution_duration: int = 0  # seconds, 0 = service default
    quote: int | None = None  # seconds
    script: str = ""
    parameters: list[ParameterDef] = field(default_factory=list)
    used: list[EntityDef] = field(default_factory=list)
    generated: list[EntityDef] = field(default_factory=list)
    # Chosen by the operator, never by the job's submitter.
    sbatch_options: list[str] = field(default_factory=list)
    source_file: str | None = None  # where it was read from, for error messages

    def parameter(self, name: str) -> ParameterDef | None:
        for p in self.parameters:
            if p.name == name:
                return p
        return None

    def used_entity(self, name: str) -> EntityDef | None:
        for e in self.used:
            if e.name == name:
                return e
        return None
