"""The one place where exceptions become HTTP responses.

A ``UWSError`` becomes its status with a plain-text message; a ``DefinitionError``
a 400 with the JSON list of problems; anything unexpected a bare 500, logged with its
traceback on the server and never sent to the client.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from bottle import HTTPResponse

from uws_server.errors import DefinitionError, UWSError

log = logging.getLogger("uws_server")
TEXT = "text/plain; charset=utf-8"
# bottle decodes headers, the query and form values lazily, when a handler first reads
# them, and raises UnicodeDecodeError for bytes that are not UTF-8: the client's error.
NOT_UTF8 = "request text (a header, the query string or a form value) must be UTF-8"


class RequestTimeout(TimeoutError):
    """The request's body stopped coming (raised by the server's reader, see
    :mod:`uws_server.server`): a 408, not an error of the service. Its text is the
    socket's own ("timed out"), which cheroot also recognises."""

    def __init__(self) -> None:
        super().__init__("timed out")


SLOW_BODY = "the request body did not arrive in time"


def definition_error_body(exc: DefinitionError) -> dict[str, Any]:
    """The JSON body for a rejected definition: ``{"errors": [{"field", "reason"}]}``."""
    return {"errors": [{"field": f, "reason": r} for f, r in exc.problems]}


def error_response(exc: BaseException) -> HTTPResponse:
    if isinstance(exc, DefinitionError):
        body = json.dumps(definition_error_body(exc), ensure_ascii=False).encode("utf-8")
        return HTTPResponse(body, status=400, headers={"Content-Type": "application/json"})
    if isinstance(exc, RequestTimeout):
        headers = {"Content-Type": TEXT, "Connection": "close"}
        return HTTPResponse(SLOW_BODY + "\n", status=408, headers=headers)
    if isinstance(exc, UnicodeDecodeError):
        return HTTPResponse(NOT_UTF8 + "\n", status=400, headers={"Content-Type": TEXT})
    if isinstance(exc, UWSError):
        headers = {"Content-Type": TEXT}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="uws-server"'
        return HTTPResponse(exc.message + "\n", status=exc.status, headers=headers)
    log.error("unexpected error", exc_info=exc)
    return HTTPResponse("internal server error\n", status=500, headers={"Content-Type": TEXT})


def error_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Bottle plugin (``app.install(error_plugin)``) applying :func:`error_response`."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except HTTPResponse:  # bottle's own control flow (redirects, aborts)
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a response, never leaked
            return error_response(exc)

    return wrapper
