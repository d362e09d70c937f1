"""The ``/jdl`` HTTP API: list, fetch, upload, validate, delete job definitions.

Anyone the app lets list definitions may read them; only operators (and admins) change
them, because a definition is a script that runs on the service's machines. Every
failure is raised as a :class:`UWSError` or :class:`DefinitionError`; the app turns them
into responses in one place, with :func:`error_response` (also usable as a bottle
plugin, :func:`error_plugin`) so the JSON list of problems looks the same everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import bottle

from uws_server.errors import (
    BadRequest,
    DefinitionError,
    Forbidden,
    PayloadTooLarge,
    UWSError,
)
from uws_server.http_errors import definition_error_body, error_plugin, error_response  # noqa: F401
from uws_server.jdl.json_form import from_json, to_json
from uws_server.jdl.registry import JobDefinitionRegistry
from uws_server.jdl.validate import is_safe_name, validate
from uws_server.jdl.votable import (
    MAX_DEFINITION_BYTES,
    VOTABLE_CONTENT_TYPE,
    read_votable,
    write_votable,
)
from uws_server.jobdef import JobDefinition
from uws_server.models import User

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
OPERATOR_ROLE = "operator"
_XML_TYPES = {
    VOTABLE_CONTENT_TYPE,
    "application/votable+xml",
    "application/xml",
    "text/xml",
}
_SNIFF_TYPES = {"", "application/octet-stream", "text/plain"}

Authenticate = Callable[[bool], User]


class UnsupportedMediaType(UWSError):
    status = 415


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    body = json.dumps(data, ensure_ascii=False)
    return bottle.HTTPResponse(
        body.encode("utf-8"), status=status, headers={"Content-Type": JSON_TYPE, **(headers or {})}
    )


def _check_name(name: str) -> str:
    if not is_safe_name(name):
        raise DefinitionError([("name", f"{name[:80]!r} is not a valid definition name")])
    return name


def _require_operator(user: User) -> None:
    if not user.has_role(OPERATOR_ROLE):
        raise Forbidden("changing job definitions needs the operator role")


def _limited_read(stream: Any, what: str) -> bytes:
    data = stream.read(MAX_DEFINITION_BYTES + 1)
    if len(data) > MAX_DEFINITION_BYTES:
        raise PayloadTooLarge(f"{what} is larger than {MAX_DEFINITION_BYTES} bytes")
    return data


def _parse_definition(data: bytes, kind: str, source: str) -> JobDefinition:
    """A definition from a VOTable or JSON document, unchecked (shape only)."""
    if kind == "sniff":
        head = data.lstrip()[:1]
        kind = "json" if head in (b"{", b"[") else "xml"
    if kind == "json":
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"{source}: not valid JSON: {exc}") from None
        return from_json(parsed, source)
    return read_votable(data, source, check=False)


def _definition_from_request(request: bottle.BaseRequest) -> JobDefinition:
    """The definition in a request: a multipart ``file`` field, or a raw XML/JSON body."""
    length = request.content_length
    media = (request.content_type or "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        # The whole body is parsed at once: bound it before bottle reads it.
        if length < 0:
            raise BadRequest("a multipart upload needs a Content-Length header")
        if length > MAX_DEFINITION_BYTES + 64 * 1024:
            raise PayloadTooLarge(f"upload larger than {MAX_DEFINITION_BYTES} bytes")
        upload = request.files.get("file")
        if upload is not None:
            filename = upload.raw_filename or "upload"
            data = _limited_read(upload.file, "the uploaded file")
            kind = "json" if filename.lower().endswith(".json") else "sniff"
            return _parse_definition(data, kind, filename)
        text = request.forms.getunicode("file")
        if text:
            return _parse_definition(text.encode("utf-8"), "sniff", "file field")
        raise BadRequest("the multipart upload has no 'file' field")
    if length > MAX_DEFINITION_BYTES:
        raise PayloadTooLarge(f"request body larger than {MAX_DEFINITION_BYTES} bytes")
    if media in _XML_TYPES:
        kind = "xml"
    elif media == "application/json":
        kind = "json"
    elif media in _SNIFF_TYPES:
        kind = "sniff"
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media!r}: send a VOTable ({VOTABLE_CONTENT_TYPE}), "
            "JSON (application/json) or a multipart upload in the field 'file'"
        )
    data = _limited_read(request.body, "the request body")
    if not data.strip():
        raise BadRequest("the request body is empty: send a job definition")
    return _parse_definition(data, kind, "request body")


def _summary(defn: JobDefinition) -> dict[str, Any]:
    return {
        "name": defn.name,
        "description": defn.description,
        "version": defn.version,
        "type": defn.type,
        "subtype": defn.subtype,
        "doculink": defn.doculink,
        "contact_name": defn.contact_name,
        "execution_duration": defn.execution_duration,
        "parameters": len(defn.parameters),
        "used": len(defn.used),
        "generated": len(defn.generated),
    }


def _public(defn: JobDefinition, user: User) -> JobDefinition:
    """What ``user`` may see of ``defn``: Slurm options are for operators only."""
    if not user.has_role(OPERATOR_ROLE):
        defn.sbatch_options = []
    return defn


def register_jdl_routes(
    app: bottle.Bottle, registry: JobDefinitionRegistry, authenticate: Authenticate
) -> None:
    """Add the ``/jdl`` routes to ``app``.

    ``authenticate(required)`` returns the current user (the anonymous user if
    ``required`` is False and the settings allow anonymous reads) or raises.
    """

    @app.get("/jdl")
    def list_definitions() -> Any:
        authenticate(False)
        return _json([_summary(d) for d in registry.all()])

    @app.get("/jdl/<name>")
    def get_votable(name: str) -> Any:
        user = authenticate(False)
        defn = _public(registry.get(name), user)
        return bottle.HTTPResponse(
            write_votable(defn),
            headers={
                "Content-Type": f"{VOTABLE_CONTENT_TYPE}; charset=utf-8",
                "Content-Disposition": f'inline; filename="{defn.name}_vot.xml"',
            },
        )

    @app.get("/jdl/<name>/json")
    def get_json(name: str) -> Any:
        user = authenticate(False)
        defn = registry.get(name)
        return _json(to_json(defn, include_operator=user.has_role(OPERATOR_ROLE)))

    @app.get("/jdl/<name>/script")
    def get_script(name: str) -> Any:
        authenticate(False)
        return bottle.HTTPResponse(
            registry.get(name).script, headers={"Content-Type": "text/plain; charset=utf-8"}
        )

    @app.post("/jdl")
    def post_definition() -> Any:
        _require_operator(authenticate(True))
        defn = _definition_from_request(bottle.request)
        created = registry.save(defn)
        location = f"/jdl/{defn.name}"
        return _json(
            {"name": defn.name, "created": created, "href": location},
            201 if created else 200,
            {"Location": location},
        )

    @app.post("/jdl/<name>/validate")
    def validate_definition(name: str) -> Any:
        authenticate(True)
        _check_name(name)
        has_body = bottle.request.content_length > 0 or bool(
            bottle.request.get_header("Transfer-Encoding")
        )
        problems: list[tuple[str, str]]
        if has_body:
            try:
                defn = _definition_from_request(bottle.request)
            except DefinitionError as exc:  # unreadable: same answer as invalid
                problems = list(exc.problems)
            except BadRequest as exc:
                problems = [("body", exc.message)]
            else:
                problems = validate(defn)
                if defn.name != name:
                    problems.insert(0, ("name", f"{defn.name!r} is not {name!r} (the URL)"))
        else:
            problems = validate(registry.get(name))
        if problems:
            body = definition_error_body(DefinitionError(problems))
            return _json({"valid": False, **body}, 400)
        return _json({"valid": True})

    @app.delete("/jdl/<name>")
    def delete_definition(name: str) -> Any:
        _require_operator(authenticate(True))
        registry.delete(name)
        return _json({"name": name, "deleted": True})

    @app.get("/jdl/<name>/history")
    def get_history(name: str) -> Any:
        _require_operator(authenticate(True))
        return _json(
            [
                {
                    "timestamp": e.timestamp,
                    "size": e.size,
                    "href": f"/jdl/{name}/history/{e.timestamp}",
                }
                for e in registry.history(name)
            ]
        )

    @app.get("/jdl/<name>/history/<timestamp>")
    def get_history_version(name: str, timestamp: str) -> Any:
        _require_operator(authenticate(True))
        return bottle.HTTPResponse(
            registry.history_version(name, timestamp),
            headers={"Content-Type": f"{VOTABLE_CONTENT_TYPE}; charset=utf-8"},
        )
