"""Operator pages: list, create, edit, upload, validate, delete job definitions, history.

Saving goes through the registry, which validates the whole definition before writing
anything and keeps the replaced version in the history; the editor only turns its inputs
into the JSON form (see :mod:`uws_server.web.editor`). A definition is a script that
runs on the service's machines, so every page here needs the operator (or admin) role.
"""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bottle
from bottle import HTTPResponse, request

from uws_server.errors import BadRequest, DefinitionError, PayloadTooLarge
from uws_server.jdl.json_form import from_json
from uws_server.jdl.validate import validate
from uws_server.jdl.votable import MAX_DEFINITION_BYTES, read_votable, write_votable
from uws_server.jobdef import DATATYPES, JobDefinition
from uws_server.web import editor
from uws_server.web.common import (
    OPERATOR,
    Ctx,
    WebApp,
    form_values,
    json_response,
    see_other,
    url_part,
)

NAME = "<name:re:[A-Za-z][A-Za-z0-9_-]{0,63}>"
MESSAGES = {
    "created": "Job definition created.",
    "saved": "Job definition saved.",
    "unchanged": "No change: the saved definition is identical.",
    "deleted": "Job definition deleted (kept in its history).",
}


MAX_DIFF_LINES = 400


@dataclass
class HistoryRow:
    number: int  # 1 = the oldest kept version
    timestamp: str  # the registry's stamp (in links)
    when: str  # readable UTC
    size: int
    version: str  # the definition's own version field
    against: str  # what the diff compares with: "current" or "#n"
    diff: list[str]
    diff_cut: bool


def stamp_text(stamp: str) -> str:
    """``20250101T120000.000000Z-2`` -> ``2025-01-01 12:00:00 UTC``."""
    base = stamp.partition("-")[0]
    try:
        when = datetime.strptime(base, "%Y%m%dT%H%M%S.%fZ")
    except ValueError:
        return stamp
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_upload(data: bytes, filename: str) -> JobDefinition:
    """A definition from an uploaded VOTable (or JSON) file, shape checked only."""
    if filename.lower().endswith(".json") or data.lstrip()[:1] in (b"{", b"["):
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"{filename}: not valid JSON: {exc}") from None
        return from_json(parsed, filename)
    return read_votable(data, filename, check=False)


def register_operator_routes(app: bottle.Bottle, web: WebApp) -> None:
    registry = web.service.registry

    def show_editor(
        ctx: Ctx,
        values: dict[str, Any],
        problems: list[tuple[str, str]],
        *,
        original: str = "",
        status: int | None = None,
        message: str = "",
        error: str = "",
    ) -> str:
        by_input, general = editor.problems_by_input(problems)
        title = f"Edit {values.get('name')}" if original else "New job definition"
        return web.render(
            ctx,
            "jdl_edit.tpl",
            status if status is not None else (400 if problems else 200),
            title=title,
            v=values,
            errors=by_input,
            general=general,
            original=original,
            datatypes=DATATYPES,
            message=message,
            error=error,
            error_reasons=[f"{field}: {reason}" if field else reason for field, reason in problems]
            if error
            else [],
        )

    @app.get("/ui/jdl")
    @web.page(OPERATOR)
    def definitions(ctx: Ctx) -> Any:
        return web.render(
            ctx,
            "jdl_list.tpl",
            title="Job definitions",
            definitions=registry.all(),
            broken=registry.errors,
            message=MESSAGES.get(request.query.get("msg", ""), ""),
        )

    @app.get("/ui/jdl/new")
    @web.page(OPERATOR)
    def new_definition(ctx: Ctx) -> Any:
        return show_editor(ctx, editor.editor_values(None), [])

    @app.get(f"/ui/jdl/{NAME}/edit")
    @web.page(OPERATOR)
    def edit_definition(ctx: Ctx, name: str) -> Any:
        version = request.query.get("version")
        if version:
            defn = read_votable(registry.history_version(name, version), name, check=False)
            note = f"Version {version} loaded from the history: save to restore it."
            return show_editor(ctx, editor.editor_values(defn), validate(defn), message=note)
        defn = registry.get(name)
        message = MESSAGES.get(request.query.get("msg", ""), "")
        return show_editor(ctx, editor.editor_values(defn), [], original=name, message=message)

    @app.post("/ui/jdl/save")
    @web.page(OPERATOR)
    def save(ctx: Ctx) -> Any:
        form = form_values()
        defn, problems = editor.definition_from_form(form)
        original = str(form.get("_original", "") or "")
        if defn is None or problems:
            data, _ = editor.json_from_form(form)
            values = editor.form_data(data)
            values["execution_duration"] = str(form.get("execution_duration", ""))
            values["quote"] = str(form.get("quote", ""))
            return show_editor(ctx, values, problems, original=original)
        try:
            before = write_votable(registry.get(defn.name)) if defn.name in registry else None
            created = registry.save(defn)
        except DefinitionError as exc:  # raced with another change: show it the same way
            return show_editor(ctx, editor.editor_values(defn), exc.problems, original=original)
        unchanged = before is not None and before == write_votable(defn)
        msg = "created" if created else ("unchanged" if unchanged else "saved")
        return see_other(f"/ui/jdl/{url_part(defn.name)}/edit?msg={msg}")

    @app.post("/ui/api/jdl/validate")
    @web.page(OPERATOR, api=True)
    def validate_form(ctx: Ctx) -> Any:
        _, problems = editor.definition_from_form(form_values())
        errors = [{"field": f, "reason": r, "input": editor.input_of(f)} for f, r in problems]
        return json_response({"valid": not problems, "errors": errors})

    @app.post("/ui/jdl/upload")
    @web.page(OPERATOR)
    def upload(ctx: Ctx) -> Any:
        if request.content_length > MAX_DEFINITION_BYTES + 64 * 1024:
            raise PayloadTooLarge(f"upload larger than {MAX_DEFINITION_BYTES} bytes")
        try:
            item = request.files.get("file")
        except (ValueError, KeyError, IndexError) as exc:
            raise BadRequest(f"malformed upload: {exc}") from None
        if item is None:
            raise BadRequest("choose a VOTable file to upload")
        data = item.file.read(MAX_DEFINITION_BYTES + 1)
        if len(data) > MAX_DEFINITION_BYTES:
            raise PayloadTooLarge(f"the file is larger than {MAX_DEFINITION_BYTES} bytes")
        filename = item.raw_filename or "upload"
        try:
            defn = parse_upload(data, filename)
        except DefinitionError as exc:
            note = f"{filename} could not be read:"
            return show_editor(ctx, editor.editor_values(None), exc.problems, error=note)
        except BadRequest as exc:  # not JSON / not UTF-8: the reason is the message
            note = f"{filename} could not be read:"
            return show_editor(
                ctx, editor.editor_values(None), [("", exc.message)], error=note, status=400
            )
        problems = validate(defn)
        if problems:
            note = f"{filename} was not saved: fix these problems, then save."
            return show_editor(ctx, editor.editor_values(defn), problems, error=note)
        created = registry.save(defn)
        return see_other(
            f"/ui/jdl/{url_part(defn.name)}/edit?msg={'created' if created else 'saved'}"
        )

    @app.get(f"/ui/jdl/{NAME}/history")
    @web.page(OPERATOR)
    def history(ctx: Ctx, name: str) -> Any:
        return web.render(
            ctx,
            "jdl_history.tpl",
            title=f"History of {name}",
            name=name,
            entries=history_rows(name),
            current=name in registry,
        )

    def history_rows(name: str) -> list[HistoryRow]:
        """Each earlier version with its number, date, definition version and the diff
        to the version that replaced it (the next newer one, or the current file)."""
        entries = registry.history(name)
        newer = write_votable(registry.get(name)).decode("utf-8") if name in registry else ""
        newer_label = "current"
        rows = []
        for i, e in enumerate(entries):
            text = registry.history_version(name, e.timestamp).decode("utf-8", "replace")
            try:
                version = read_votable(text.encode("utf-8"), name, check=False).version
            except (DefinitionError, BadRequest):
                version = "?"
            diff = (
                difflib.unified_diff(
                    text.splitlines(),
                    newer.splitlines(),
                    f"#{len(entries) - i}",
                    newer_label,
                    lineterm="",
                    n=2,
                )
                if newer
                else iter(())
            )
            lines = list(itertools.islice(diff, MAX_DIFF_LINES + 1))
            rows.append(
                HistoryRow(
                    number=len(entries) - i,
                    timestamp=e.timestamp,
                    when=stamp_text(e.timestamp),
                    size=e.size,
                    version=version,
                    against=newer_label if newer else "",
                    diff=lines[:MAX_DIFF_LINES],
                    diff_cut=len(lines) > MAX_DIFF_LINES,
                )
            )
            newer, newer_label = text, f"#{len(entries) - i}"
        return rows

    @app.get(f"/ui/jdl/{NAME}/history/<timestamp>")
    @web.page(OPERATOR)
    def history_version(ctx: Ctx, name: str, timestamp: str) -> Any:
        data = registry.history_version(name, timestamp)
        return HTTPResponse(data, headers={"Content-Type": "text/plain; charset=utf-8"})

    @app.get(f"/ui/jdl/{NAME}/votable")
    @web.page(OPERATOR)
    def current_votable(ctx: Ctx, name: str) -> Any:
        data = write_votable(registry.get(name))
        return HTTPResponse(data, headers={"Content-Type": "text/plain; charset=utf-8"})

    @app.post(f"/ui/jdl/{NAME}/delete")
    @web.page(OPERATOR)
    def delete(ctx: Ctx, name: str) -> Any:
        registry.delete(name)
        return see_other("/ui/jdl?msg=deleted")
