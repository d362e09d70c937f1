"""Errors the service raises on purpose, each carrying its HTTP status.

Handlers never build error responses themselves: the app maps every ``UWSError`` to a
plain-text response in one place (``uws_server.app``), and anything else to a 500 with
no traceback.
"""

from __future__ import annotations


class UWSError(Exception):
    """Base class: a client-visible error with a status code and a plain message."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(UWSError):
    status = 400


class AuthenticationRequired(UWSError):
    status = 401


class Forbidden(UWSError):
    status = 403


class NotFound(UWSError):
    status = 404


class Conflict(UWSError):
    status = 409


class TooManyJobs(UWSError):
    status = 429


class PayloadTooLarge(UWSError):
    status = 413


class DefinitionError(Exception):
    """A job definition is malformed. ``problems`` lists (field, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(f"{f}: {r}" for f, r in problems))
