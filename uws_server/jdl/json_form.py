"""A job definition as a JSON object, for web forms, scripts and ``GET /jdl/<name>/json``.

The JSON keys are the dataclass field names of :mod:`uws_server.jobdef` (``parameters``
is a list, in order), derived from the dataclasses themselves so that a field added there
appears here without a second list to keep in step. Reading is strict: an unknown key or
a wrong type is reported with its path (``parameters[2].default``) rather than ignored,
because a misspelt key silently dropped would give a job definition its author did not
write.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from uws_server.errors import DefinitionError
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef

# Server-side details: never shown, never accepted.
HIDDEN_FIELDS = frozenset({"source_file"})
# Chosen by operators; shown to operators only.
OPERATOR_FIELDS = frozenset({"sbatch_options"})

_CLASSES: tuple[type, ...] = (JobDefinition, ParameterDef, EntityDef)
_HINTS: dict[type, dict[str, Any]] = {cls: typing.get_type_hints(cls) for cls in _CLASSES}
_REQUIRED: dict[type, frozenset[str]] = {
    cls: frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    for cls in _CLASSES
}
_KIND = {str: "a string", int: "an integer", bool: "true or false"}


def _dump(value: Any) -> Any:
    names = _dumped_fields(type(value))
    if names is not None:
        return {name: _dump(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


# type -> the fields _dump writes for its instances, or None when they are not dataclass
# instances; looked up once per type rather than through dataclasses.fields() per value
_DUMPED_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _dumped_fields(cls: type) -> tuple[str, ...] | None:
    try:
        return _DUMPED_FIELDS[cls]
    except KeyError:
        pass
    names = None
    # what dataclasses.is_dataclass(value) and not isinstance(value, type) say
    if dataclasses.is_dataclass(cls) and not issubclass(cls, type):
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in HIDDEN_FIELDS)
    _DUMPED_FIELDS[cls] = names
    return names


def to_json(defn: JobDefinition, *, include_operator: bool = True) -> dict[str, Any]:
    """The definition as a JSON-ready dict; ``include_operator=False`` for non-operators."""
    out: dict[str, Any] = _dump(defn)
    if not include_operator:
        for key in OPERATOR_FIELDS:
            out.pop(key, None)
    return out


def _describe(hint: Any) -> str:
    if hint in _KIND:
        return _KIND[hint]
    if typing.get_origin(hint) is list:
        return "a list"
    if hint in _CLASSES:
        return "an object"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(_describe(a) for a in args) + " or null"


def _convert(hint: Any, value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """``value`` as the type ``hint`` names, or a problem appended (and None returned)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":
            return None  # "" and null both mean "not set", as in the VOTable form
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{path}: unsupported field type {hint!r}")
        start = len(problems)
        converted = _convert(inner[0], value, path, problems)
        if len(problems) > start:
            problems[start:] = [(path, f"must be {_describe(hint)}")]
        return converted
    elif origin is list:
        if not isinstance(value, list):
            problems.append((path, "must be a list"))
            return None
        (item_hint,) = typing.get_args(hint)
        return [_convert(item_hint, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    elif hint in _CLASSES:
        return _load(hint, value, path, problems)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint in (str, bool):
        if isinstance(value, hint):
            return value
    else:  # a field type this module does not know: fail loudly in tests, not quietly
        raise TypeError(f"{path}: unsupported field type {hint!r}")
    problems.append((path, f"must be {_describe(hint)}"))
    return None


def _load(cls: type, data: Any, where: str, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(data, dict):
        problems.append((where or "definition", "must be a JSON object"))
        return None
    start = len(problems)
    hints = _HINTS[cls]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints or key in HIDDEN_FIELDS:
            problems.append((path, "unknown field"))
            continue
        kwargs[key] = _convert(hints[key], value, path, problems)
    for key in sorted(_REQUIRED[cls] - data.keys()):
        problems.append((f"{where}.{key}" if where else key, "missing"))
    if len(problems) > start:
        return None
    return cls(**kwargs)


def from_json(data: Any, source: str | None = None) -> JobDefinition:
    """Build a definition from its JSON form (parsed). Raises :class:`DefinitionError`
    listing every key with a wrong type, unknown or missing.

    Only the shape is checked here; :func:`uws_server.jdl.validate.validate` checks the
    content.
    """
    problems: list[tuple[str, str]] = []
    defn = _load(JobDefinition, data, "", problems)
    if problems or defn is None:
        raise DefinitionError(problems, source)
    return defn
