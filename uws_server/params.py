"""Checking a client's parameters against the job definition.

Every rejection names the parameter and the reason, so a script author can fix the
call without reading server logs. Values are only ever strings here: they reach the
job through the environment and ``parameters.json``, never through shell text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from uws_server.errors import BadRequest
from uws_server.jdl.validate import value_problem
from uws_server.jobdef import JobDefinition, ParameterDef

# UWS job-control parameters, accepted in any letter case (IVOA convention).
CONTROL_NAMES = ("PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "ACTION", "QUOTE")

_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRUE = {"true", "1", "yes", "on"}


@dataclass
class ParsedRequest:
    """A creation or update request split into control values and job parameters."""

    control: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, object] = field(default_factory=dict)  # name -> bottle FileUpload


def _short(name: str) -> str:
    """A parameter name as it may appear in a message (bounded, printable)."""
    shown = _CONTROL_CHARS.sub("?", name)
    return shown if len(shown) <= 64 else shown[:61] + "..."


def split_request(
    pairs: list[tuple[str, str]], uploads: dict[str, object], max_length: int
) -> ParsedRequest:
    """Separate control parameters from job parameters; refuse repeats and junk."""
    parsed = ParsedRequest(uploads=dict(uploads))
    for name, value in pairs:
        upper = name.upper()
        if upper in CONTROL_NAMES:
            parsed.control[upper] = value.strip()
            continue
        if name in parsed.parameters or name in uploads:
            raise BadRequest(f"parameter '{_short(name)}' is given more than once")
        if len(value) > max_length:
            raise BadRequest(
                f"parameter '{_short(name)}': value is {len(value)} characters long, "
                f"the limit is {max_length}"
            )
        if _CONTROL_CHARS.search(value):
            raise BadRequest(f"parameter '{_short(name)}': value contains control characters")
        parsed.parameters[name] = value
    return parsed


def check_value(p: ParameterDef, value: str) -> str:
    """Validate one value against its definition; returns the normalised value.

    The rules (datatype per item, MIN/MAX, OPTIONs) are the job definitions' own
    :func:`~uws_server.jdl.validate.value_problem`, so a default and a submitted value
    are judged alike.
    """
    if p.datatype not in ("xs:string", "file"):
        value = value.strip()
    problem = value_problem(p, value)
    if problem:
        raise BadRequest(f"parameter '{p.name}': {_short(problem)}")
    if p.datatype == "xs:boolean":
        return "true" if value.lower() in _TRUE else "false"
    return value


def resolve_name(defn: JobDefinition, name: str) -> str | None:
    """The definition's spelling of a parameter or used-entity name (exact, else any case)."""
    known = [p.name for p in defn.parameters] + [e.name for e in defn.used]
    if name in known:
        return name
    matches = [k for k in known if k.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def validate_parameters(
    defn: JobDefinition, given: dict[str, str], upload_names: set[str], complete: bool = True
) -> dict[str, str]:
    """Check names, types, ranges and options; fill defaults when ``complete``.

    Used entities (``defn.used``) are accepted as parameters too: their value is an
    entity id or URL, or the name of an uploaded file (resolved by the service).
    """
    out: dict[str, str] = {}
    for raw_name, value in given.items():
        name = resolve_name(defn, raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = defn.parameter(name)
        if p is None or defn.used_entity(name) is not None:
            out[name] = value.strip()  # a used entity: an id or URL, resolved when staged
        else:
            out[name] = check_value(p, value)
    for raw_name in upload_names:
        name = resolve_name(defn, raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = defn.parameter(name)
        if p is not None and p.datatype != "file" and defn.used_entity(name) is None:
            raise BadRequest(f"parameter '{name}' does not accept a file upload")
    if not complete:
        return out
    uploaded = {resolve_name(defn, n) for n in upload_names}
    for p in defn.parameters:
        if p.name in out or p.name in uploaded:
            continue
        if p.default not in (None, ""):
            out[p.name] = check_value(p, p.default)  # type: ignore[arg-type]
        elif p.required:
            raise BadRequest(f"parameter '{p.name}' is required")
    return out
