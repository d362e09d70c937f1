"""The job submission form, generated from a job definition.

One :class:`Field` per parameter or used entity says which widget to draw and with what
constraints; :func:`parse_submission` turns the posted form back into the service's
``(name, value)`` pairs and uploads, checking every value with the definitions' own
:func:`~uws_server.jdl.validate.value_problem` first, so that all field errors come back
at once rather than one per attempt. :func:`field_of_error` maps a message the service
raises (``parameter 'n': ...``) to the field it concerns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from uws_server.dl3 import OBS_IDS_PARAMETER
from uws_server.jdl.validate import NUMERIC_TYPES, value_problem
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef

# Form field names that cannot be parameters (those start with a letter).
ACTION_FIELD = "_action"
RUNID_FIELD = "_runid"
CSRF_FIELD = "_csrf"
FILE_PREFIX = "file."  # the file input of a used entity; its text input is the entity name

_OPTIONAL_MULTIPLICITY = ("*", "?", "0..1", "0..*", "0")
_ERROR_NAME = re.compile(r"^(?:parameter|input) '([^']{1,80})'")
_TRUE = ("true", "1", "on", "yes")

DATATYPE_LABELS = {
    "xs:string": "text",
    "xs:integer": "integer",
    "xs:long": "integer",
    "xs:double": "number",
    "xs:float": "number",
    "xs:boolean": "yes/no",
    "xs:anyURI": "URI",
    "file": "file name",
}


PICK_PREFIX = "pick."  # checkboxes offering values for a parameter (obs_ids)
_ID_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class ObsChoice:
    """One observation the obs_ids picker offers, with what a scientist chooses by."""

    obs_id: int
    target: str = ""
    date: str = ""  # start, UTC, as shown
    livetime: str = ""  # as shown, with its unit
    zenith: str = ""  # degrees, as shown


@dataclass
class Field:
    """One widget of the form."""

    name: str
    widget: str  # number | select | checkbox | entity | text
    value: str = ""
    required: bool = False
    description: str = ""
    unit: str = ""
    datatype: str = ""
    min: str = ""
    max: str = ""
    step: str = ""
    options: list[str] = field(default_factory=list)
    accept: str = ""
    hint: str = ""
    error: str = ""
    rows: list[ObsChoice] = field(default_factory=list)  # the observations widget's table
    ticked: set[str] = field(default_factory=set)  # its ticked ids (options)
    more: int = 0  # observations not offered in the table (use Find data)

    @property
    def checked(self) -> bool:
        return self.value.strip().lower() in _TRUE


def _param_field(p: ParameterDef, value: str | None) -> Field:
    f = Field(
        name=p.name,
        widget="text",
        value=(p.default or "") if value is None else value,
        required=p.required and not p.default,
        description=p.description,
        unit=p.unit or "",
        datatype=DATATYPE_LABELS.get(p.datatype, p.datatype),
        options=list(p.options),
    )
    if p.options:
        f.widget = "select"
    elif p.datatype == "xs:boolean":
        f.widget = "checkbox"
    elif p.datatype in NUMERIC_TYPES and not p.arraysize:
        f.widget = "number"
        f.min, f.max = p.min or "", p.max or ""
        f.step = "1" if p.datatype in ("xs:integer", "xs:long") else "any"
    if p.arraysize and p.datatype in NUMERIC_TYPES:
        f.hint = "values separated by spaces"
    if p.datatype in NUMERIC_TYPES and (p.min or p.max) and f.widget != "number":
        f.hint = " ".join(filter(None, [f.hint, f"range {p.min or '…'} to {p.max or '…'}"]))
    return f


def _entity_field(e: EntityDef, p: ParameterDef | None, value: str | None) -> Field:
    return Field(
        name=e.name,
        widget="entity",
        value=value or "",
        required=e.multiplicity not in _OPTIONAL_MULTIPLICITY,
        description=e.description or (p.description if p else ""),
        datatype="input file",
        accept=",".join(t.strip() for t in e.content_type.split(",") if t.strip()),
        hint="upload a file, or give an entity id or a result URL",
    )


def split_ids(value: str, offered: set[str]) -> tuple[list[str], str]:
    """The ids of ``value`` that the table offers (ticked), and the rest as text.

    A value is whatever the form sent back or a link pre-filled (``1001 1002, 1005-1007``):
    plain ids the table shows become ticks again, ranges and unknown ids stay typed.
    """
    ticked: list[str] = []
    rest: list[str] = []
    for token in filter(None, _ID_SEPARATORS.split(value)):
        plain = (token.lstrip("0") or "0") if token.isdigit() else token
        if plain in offered and plain not in ticked:
            ticked.append(plain)
        elif plain not in offered:
            rest.append(token)
    return ticked, " ".join(rest)


def _observations_field(f: Field, choices: Sequence[ObsChoice | int], more: int) -> None:
    rows = [c if isinstance(c, ObsChoice) else ObsChoice(int(c)) for c in choices]
    f.widget = "observations"
    f.rows = rows
    f.options = [str(r.obs_id) for r in rows]
    f.more = more
    ticked, f.value = split_ids(f.value, set(f.options))
    f.ticked = set(ticked)
    f.hint = "tick observations of the DL3 store, or type ids separated by spaces"


def build_fields(
    defn: JobDefinition,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    obs_ids: Sequence[ObsChoice | int] | None = None,
    more_observations: int = 0,
) -> list[Field]:
    """The widgets of ``defn``'s form, with submitted values and errors if any.

    ``obs_ids``, the observations of the DL3 store the user may see (with their target,
    date, livetime and zenith when known), are offered as a table of ticks for the
    parameter named ``obs_ids``; ids already in the value come back ticked, so a form
    shown again after a validation error, or pre-filled from "Find data", keeps them.
    """
    values = values or {}
    errors = errors or {}
    used = {e.name for e in defn.used}
    fields = [_param_field(p, values.get(p.name)) for p in defn.parameters if p.name not in used]
    for f in fields:
        if f.name == OBS_IDS_PARAMETER and obs_ids and f.widget == "text":
            _observations_field(f, obs_ids, more_observations)
    fields += [_entity_field(e, defn.parameter(e.name), values.get(e.name)) for e in defn.used]
    for f in fields:
        f.error = errors.get(f.name, "")
    return fields


MAX_PREFILL = 4000  # characters of one pre-filled value


def prefill(defn: JobDefinition, query: Any) -> dict[str, str]:
    """Form values given in a link's query string (``?obs_ids=1 2&RA=83.6``): only the
    definition's own parameters, as text; checked like typed values on submission."""
    values: dict[str, str] = {}
    for p in defn.parameters:
        value = query.get(p.name)
        if value is not None and p.name not in {e.name for e in defn.used}:
            values[p.name] = str(value)[:MAX_PREFILL]
    return values


@dataclass
class Submission:
    """A parsed form: what to send to the service, or why not."""

    pairs: list[tuple[str, str]]
    uploads: dict[str, Any]
    values: dict[str, str]  # as typed, to fill the form again
    errors: dict[str, str]  # field name -> message
    run: bool


def parse_submission(defn: JobDefinition, form: Any, files: Any) -> Submission:
    """Check every field against ``defn`` and build the service's request."""
    pairs: list[tuple[str, str]] = []
    uploads: dict[str, Any] = {}
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    used = {e.name for e in defn.used}
    for p in defn.parameters:
        if p.name in used:
            continue
        if p.datatype == "xs:boolean" and not p.options:
            value = "true" if str(form.get(p.name, "")).lower() in _TRUE else "false"
        else:
            value = str(form.get(p.name, "") or "")
            if p.datatype != "xs:string":
                value = value.strip()
            if p.name == OBS_IDS_PARAMETER:  # ticked observations join the typed ids
                typed = _ID_SEPARATORS.split(value.strip()) if value.strip() else []
                ticked = [str(v).strip() for v in form.getall(PICK_PREFIX + p.name)]
                ticked = [t for t in dict.fromkeys(ticked) if t and t not in typed]
                value = " ".join(filter(None, [value.strip(), *ticked]))
        values[p.name] = value
        if value == "":
            if p.required and not p.default:
                errors[p.name] = "a value is required"
            continue  # the definition's default applies
        problem = value_problem(p, value)
        if problem:
            errors[p.name] = problem
        pairs.append((p.name, value))
    for e in defn.used:
        upload = files.get(FILE_PREFIX + e.name)
        ref = str(form.get(e.name, "") or "").strip()
        values[e.name] = ref
        if upload is not None and getattr(upload, "raw_filename", ""):
            uploads[e.name] = upload
        elif ref:
            pairs.append((e.name, ref))
        elif e.multiplicity not in _OPTIONAL_MULTIPLICITY:
            errors[e.name] = "upload a file or give an entity id or URL"
    run_id = str(form.get(RUNID_FIELD, "") or "").strip()
    if run_id:
        pairs.append(("RUNID", run_id))
    run = str(form.get(ACTION_FIELD, "")) == "run"
    if run:
        pairs.append(("PHASE", "RUN"))
    return Submission(pairs, uploads, values, errors, run)


def field_of_error(message: str, names: set[str]) -> str | None:
    """The form field a service error names (``parameter 'n': ...``), if it is one."""
    match = _ERROR_NAME.match(message)
    if match and match.group(1) in names:
        return match.group(1)
    return None
