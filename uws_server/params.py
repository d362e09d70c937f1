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


class _Plan:
    """What validation looks up in one definition, worked out once per definition.

    Every creation validates against the same shared, read-only definition (a change
    replaces the object, see ``JobDefinitionRegistry.get_shared``), so the name lookups
    and the checks of its defaults (part of each creation's GIL time) are done once: the
    names as dicts, and each default's outcome (its normalised value, or the 400 it
    gives) in the definition's order. The answers are those of the plain lookups.
    """

    def __init__(self, defn: JobDefinition) -> None:
        self.defn = defn
        known = [p.name for p in defn.parameters] + [e.name for e in defn.used]
        self.known = frozenset(known)
        self.by_lower: dict[str, list[str]] = {}
        for k in known:  # duplicates kept: a name both parameter and entity is ambiguous
            self.by_lower.setdefault(k.lower(), []).append(k)
        self.params: dict[str, ParameterDef] = {}
        for p in defn.parameters:
            self.params.setdefault(p.name, p)  # defn.parameter(): the first of a name
        self.used = frozenset(e.name for e in defn.used)
        # (parameter, normalised default or None, the 400's message or None, recheck):
        # a check failing otherwise than with a 400 is left to each request, as before.
        self.defaults: list[tuple[ParameterDef, str | None, str | None, bool]] = []
        for p in defn.parameters:
            if p.default in (None, ""):
                self.defaults.append((p, None, None, False))
                continue
            try:
                self.defaults.append((p, check_value(p, p.default), None, False))  # type: ignore[arg-type]
            except BadRequest as exc:
                self.defaults.append((p, None, exc.message, False))
            except Exception:  # noqa: BLE001 - raised again by the request that needs it
                self.defaults.append((p, None, None, True))

    def resolve(self, name: str) -> str | None:
        if name in self.known:
            return name
        matches = self.by_lower.get(name.lower())
        return matches[0] if matches is not None and len(matches) == 1 else None


_PLANS: dict[int, _Plan] = {}  # by id(definition); the entry's own defn confirms it


def _plan(defn: JobDefinition) -> _Plan:
    plan = _PLANS.get(id(defn))
    if plan is None or plan.defn is not defn:
        plan = _Plan(defn)
        if len(_PLANS) >= 256:  # replaced definitions leave stale entries behind
            _PLANS.clear()
        _PLANS[id(defn)] = plan
    return plan


def validate_parameters(
    defn: JobDefinition, given: dict[str, str], upload_names: set[str], complete: bool = True
) -> dict[str, str]:
    """Check names, types, ranges and options; fill defaults when ``complete``.

    Used entities (``defn.used``) are accepted as parameters too: their value is an
    entity id or URL, or the name of an uploaded file (resolved by the service).
    """
    plan = _plan(defn)
    out: dict[str, str] = {}
    for raw_name, value in given.items():
        name = plan.resolve(raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = plan.params.get(name)
        if p is None or name in plan.used:
            out[name] = value.strip()  # a used entity: an id or URL, resolved when staged
        else:
            out[name] = check_value(p, value)
    for raw_name in upload_names:
        name = plan.resolve(raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = plan.params.get(name)
        if p is not None and p.datatype != "file" and name not in plan.used:
            raise BadRequest(f"parameter '{name}' does not accept a file upload")
    if not complete:
        return out
    uploaded = {plan.resolve(n) for n in upload_names} if upload_names else set()
    for p, default, problem, recheck in plan.defaults:
        if p.name in out or p.name in uploaded:
            continue
        if recheck:
            out[p.name] = check_value(p, p.default)  # type: ignore[arg-type]
            continue
        if problem is not None:
            raise BadRequest(problem)
        if default is not None:
            out[p.name] = default
        elif p.required:
            raise BadRequest(f"parameter '{p.name}' is required")
    return out
