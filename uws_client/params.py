"""Checking parameters against a job definition's JSON form, before submitting.

The service checks again (it alone decides); checking here turns a typo into a message
before a job exists, with every problem at once instead of the first one. The rules are
the service's: names in any letter case, the datatype of each item of a list-valued
parameter, MIN/MAX, OPTIONs, required parameters without a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

CONTROL_NAMES = frozenset({"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "ACTION", "QUOTE"})
INTEGER_TYPES = frozenset({"xs:integer", "xs:long"})
NUMERIC_TYPES = INTEGER_TYPES | {"xs:double", "xs:float"}
STRING_TYPES = frozenset({"xs:string", "file", "xs:anyURI"})
BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _number(text: Any) -> Decimal | None:
    if text is None:
        return None
    try:
        number = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _scalar_problem(datatype: str, item: str) -> str | None:
    if datatype in INTEGER_TYPES:
        try:
            int(item)
        except ValueError:
            return f"{item!r} is not an integer"
    elif datatype in NUMERIC_TYPES:
        if _number(item) is None:
            return f"{item!r} is not a number"
    elif datatype == "xs:boolean" and item.strip().lower() not in BOOLEANS:
        return f"{item!r} is not true or false"
    return None


def value_problem(param: Mapping[str, Any], value: str) -> str | None:
    """Why ``value`` does not fit ``param`` (a parameter of the definition's JSON form)."""
    datatype = param.get("datatype") or "xs:string"
    if datatype not in STRING_TYPES:
        value = value.strip()
    items = value.split() if param.get("arraysize") and datatype not in STRING_TYPES else [value]
    for item in items:
        problem = _scalar_problem(datatype, item)
        if problem:
            return problem
        if datatype in NUMERIC_TYPES:
            number, low, high = _number(item), _number(param.get("min")), _number(param.get("max"))
            if number is not None and low is not None and number < low:
                return f"{item!r} is below the minimum {param['min']}"
            if number is not None and high is not None and number > high:
                return f"{item!r} is above the maximum {param['max']}"
    options = param.get("options") or []
    if options and not any(_same(datatype, value, str(o)) for o in options):
        return f"{value!r} is not one of the options {list(options)}"
    return None


def _same(datatype: str, a: str, b: str) -> bool:
    if a == b:
        return True
    if datatype in NUMERIC_TYPES:
        x = _number(a)
        return x is not None and x == _number(b)
    if datatype == "xs:boolean":
        x, y = a.strip().lower(), b.strip().lower()
        return x in BOOLEANS and y in BOOLEANS and BOOLEANS[x] == BOOLEANS[y]
    return False


def check_parameters(
    definition: Mapping[str, Any], values: Mapping[str, str], files: Mapping[str, Any]
) -> list[str]:
    """Every problem of ``values`` (and uploaded ``files``) for ``definition``; [] if none."""
    params = {p["name"]: p for p in definition.get("parameters") or []}
    used = {e["name"] for e in definition.get("used") or []}
    by_lower: dict[str, list[str]] = {}
    for name in [*params, *used]:
        by_lower.setdefault(name.lower(), []).append(name)

    def resolve(name: str) -> str | None:
        if name in params or name in used:
            return name
        matches = by_lower.get(name.lower(), [])
        return matches[0] if len(matches) == 1 else None

    problems = []
    given: set[str] = set()
    for raw, value in values.items():
        if raw.upper() in CONTROL_NAMES:
            continue
        name = resolve(raw)
        if name is None:
            problems.append(
                f"unknown parameter '{raw}' for job definition '{definition.get('name')}'"
            )
            continue
        given.add(name)
        if name in params and name not in used:
            problem = value_problem(params[name], value)
            if problem:
                problems.append(f"parameter '{name}': {problem}")
    for raw in files:
        name = resolve(raw)
        if name is None:
            problems.append(
                f"unknown parameter '{raw}' for job definition '{definition.get('name')}'"
            )
            continue
        given.add(name)
        p = params.get(name)
        if p is not None and p.get("datatype") != "file" and name not in used:
            problems.append(f"parameter '{name}' does not accept a file")
    for name, p in params.items():
        if name not in given and p.get("required", True) and p.get("default") in (None, ""):
            problems.append(f"parameter '{name}' is required")
    return problems
