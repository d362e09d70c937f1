"""The job definition editor's form, to and from the JSON form of a definition.

Input names are the JSON paths the validator reports (``name``, ``parameters[2].default``,
``generated[0].name``), so every problem lands next to the input it concerns without a
mapping table, both when the page is rendered again after a failed save and in the live
validation done by the page's script. The rows are numbered 0..n-1 in page order (the
script renumbers them after adding or removing one).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import fields as dc_fields
from typing import Any

from uws_server.errors import DefinitionError
from uws_server.jdl.json_form import from_json, to_json
from uws_server.jdl.validate import TEXT_FIELDS, validate
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef

TOP_TEXT = TEXT_FIELDS
PARAMETER_KEYS = tuple(f.name for f in dc_fields(ParameterDef))
ENTITY_KEYS = tuple(f.name for f in dc_fields(EntityDef))
GROUPS = {"parameters": PARAMETER_KEYS, "used": ENTITY_KEYS, "generated": ENTITY_KEYS}
MAX_ROWS = 500

_ROW_RE = re.compile(r"^(parameters|used|generated)\[([0-9]{1,4})\]\.([a-z_]+)$")
_INDEX_SUFFIX = re.compile(r"(\.[a-z_]+)\[[0-9]+\]$")
_ROW_ONLY = re.compile(r"^(parameters|used|generated)\[[0-9]+\]$")

Problem = tuple[str, str]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _int_field(name: str, text: str, optional: bool, problems: list[Problem]) -> int | None:
    text = text.strip()
    if text == "" and optional:
        return None
    try:
        return int(text or "0")
    except ValueError:
        problems.append((name, "must be an integer number of seconds"))
        return None


def json_from_form(form: Any) -> tuple[dict[str, Any], list[Problem]]:
    """The JSON form of the definition in the editor's fields, and typing problems."""
    problems: list[Problem] = []
    data: dict[str, Any] = {k: str(form.get(k, "") or "") for k in TOP_TEXT}
    data["script"] = data["script"].replace("\r\n", "\n")
    duration = _int_field(
        "execution_duration", str(form.get("execution_duration", "")), False, problems
    )
    data["execution_duration"] = duration or 0
    data["quote"] = _int_field("quote", str(form.get("quote", "")), True, problems)
    data["sbatch_options"] = _lines(str(form.get("sbatch_options", "") or ""))
    rows: dict[str, dict[int, dict[str, str]]] = {g: defaultdict(dict) for g in GROUPS}
    for key in form.keys():
        match = _ROW_RE.match(key)
        if not match:
            continue
        group, index, attr = match.group(1), int(match.group(2)), match.group(3)
        if attr in GROUPS[group] and index < MAX_ROWS:
            rows[group][index][attr] = str(form.get(key, "") or "")
    for group, keys in GROUPS.items():
        items = []
        for index in sorted(rows[group]):
            raw = rows[group][index]
            item: dict[str, Any] = {k: raw.get(k, "") for k in keys}
            if group == "parameters":
                item["required"] = raw.get("required", "").lower() in ("on", "true", "1")
                item["options"] = _lines(raw.get("options", ""))
                item["datatype"] = item["datatype"] or "xs:string"
            items.append(item)
        data[group] = items
    return data, problems


def definition_from_form(form: Any) -> tuple[JobDefinition | None, list[Problem]]:
    """The definition typed in the editor and every problem it has (empty when valid)."""
    data, problems = json_from_form(form)
    try:
        defn = from_json(data, "editor")
    except DefinitionError as exc:
        return None, problems + list(exc.problems)
    return defn, problems + validate(defn)


def editor_values(defn: JobDefinition | None) -> dict[str, Any]:
    """What the editor shows for ``defn`` (a new, empty definition when None)."""
    if defn is None:
        defn = JobDefinition(name="", script="", execution_duration=60)
    return form_data(to_json(defn, include_operator=True))


def form_data(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON form with list fields as text (one item a line), as the inputs hold them."""
    out = dict(data)
    out["sbatch_options"] = "\n".join(data.get("sbatch_options") or [])
    out["quote"] = "" if data.get("quote") is None else str(data["quote"])
    out["execution_duration"] = str(data.get("execution_duration") or 0)
    params = []
    for p in data.get("parameters") or []:
        row = {k: ("" if v is None else v) for k, v in p.items()}
        row["options"] = "\n".join(p.get("options") or [])
        params.append(row)
    out["parameters"] = params
    for group in ("used", "generated"):
        out[group] = [{k: ("" if v is None else v) for k, v in e.items()} for e in data[group]]
    return out


def input_of(path: str) -> str:
    """The editor input a problem's field path refers to ("" when it is not one input).

    ``parameters[1].options[2]`` is the ``parameters[1].options`` text area;
    ``sbatch_options[0]`` the ``sbatch_options`` one.
    """
    path = _INDEX_SUFFIX.sub(r"\1", path)
    if path.startswith("sbatch_options"):
        return "sbatch_options"
    if _ROW_ONLY.match(path) or path in ("body", "definition", "file"):
        return ""
    return path


def problems_by_input(problems: list[Problem]) -> tuple[dict[str, list[str]], list[str]]:
    """Problems grouped by editor input, and those that belong to no single input."""
    by_input: dict[str, list[str]] = defaultdict(list)
    general: list[str] = []
    for path, reason in problems:
        target = input_of(path)
        if target:
            by_input[target].append(reason)
        else:
            general.append(f"{path}: {reason}")
    return dict(by_input), general
