"""Parameter validation with its per-definition plan (uws_server/params.py) answers as
the plain lookups did: the same values in the same order, the same 400s, on random
definitions and requests; and a replaced definition is validated as it now is."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uws_server.errors import BadRequest
from uws_server.jobdef import DATATYPES, EntityDef, JobDefinition, ParameterDef
from uws_server.params import _short, check_value, validate_parameters


def reference_resolve(defn: JobDefinition, name: str) -> str | None:
    known = [p.name for p in defn.parameters] + [e.name for e in defn.used]
    if name in known:
        return name
    matches = [k for k in known if k.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def reference_validate(
    defn: JobDefinition, given: dict[str, str], upload_names: set[str], complete: bool = True
) -> dict[str, str]:
    """validate_parameters as it was before the plan, walking the definition each time."""
    out: dict[str, str] = {}
    for raw_name, value in given.items():
        name = reference_resolve(defn, raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = defn.parameter(name)
        if p is None or defn.used_entity(name) is not None:
            out[name] = value.strip()
        else:
            out[name] = check_value(p, value)
    for raw_name in upload_names:
        name = reference_resolve(defn, raw_name)
        if name is None:
            raise BadRequest(
                f"unknown parameter '{_short(raw_name)}' for job definition '{defn.name}'"
            )
        p = defn.parameter(name)
        if p is not None and p.datatype != "file" and defn.used_entity(name) is None:
            raise BadRequest(f"parameter '{name}' does not accept a file upload")
    if not complete:
        return out
    uploaded = {reference_resolve(defn, n) for n in upload_names}
    for p in defn.parameters:
        if p.name in out or p.name in uploaded:
            continue
        if p.default not in (None, ""):
            out[p.name] = check_value(p, p.default)
        elif p.required:
            raise BadRequest(f"parameter '{p.name}' is required")
    return out


def outcome(fn, *args) -> object:  # type: ignore[no-untyped-def]
    try:
        return list(fn(*args).items())
    except BadRequest as exc:
        return ("400", exc.message)


# Few names, so that case variants, repeats and parameter/entity clashes come up often.
NAMES = st.sampled_from(["a", "A", "b", "text", "Text", "n", "input"])
VALUES = st.sampled_from(
    ["", " ", "1", " 2 ", "-3", "1.5", "x", "true", "0", "1 2", "red", "f.txt"]
)
PARAMS = st.builds(
    ParameterDef,
    name=NAMES,
    datatype=st.sampled_from(DATATYPES),
    default=st.one_of(st.none(), VALUES),
    required=st.booleans(),
    min=st.sampled_from([None, "0", "-1"]),
    max=st.sampled_from([None, "1", "10"]),
    options=st.sampled_from([[], ["red", "1"], ["true"]]),
    arraysize=st.sampled_from([None, "*"]),
)
DEFINITIONS = st.builds(
    JobDefinition,
    name=st.just("d"),
    parameters=st.lists(PARAMS, max_size=5),
    used=st.lists(st.builds(EntityDef, name=NAMES), max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(
    defn=DEFINITIONS,
    given_=st.dictionaries(NAMES, VALUES, max_size=4),
    uploads=st.sets(NAMES, max_size=2),
    complete=st.booleans(),
)
def test_the_plan_answers_as_the_plain_lookups(
    defn: JobDefinition, given_: dict[str, str], uploads: set[str], complete: bool
) -> None:
    expected = outcome(reference_validate, defn, given_, uploads, complete)
    assert outcome(validate_parameters, defn, given_, uploads, complete) == expected
    # and again, from the cached plan
    assert outcome(validate_parameters, defn, given_, uploads, complete) == expected


def test_a_replaced_definition_is_validated_as_it_now_is() -> None:
    first = JobDefinition(name="d", parameters=[ParameterDef("n", "xs:integer", default="1")])
    assert validate_parameters(first, {}, set()) == {"n": "1"}
    second = copy.deepcopy(first)  # a save replaces the definition object
    second.parameters[0].default = "2"
    assert validate_parameters(second, {}, set()) == {"n": "2"}
    third = copy.deepcopy(second)
    third.parameters[0].default = "two"
    with pytest.raises(BadRequest, match="parameter 'n': 'two' is not an integer"):
        validate_parameters(third, {}, set())
    assert validate_parameters(third, {"n": "3"}, set()) == {"n": "3"}  # not needed
    assert validate_parameters(first, {}, set()) == {"n": "1"}
