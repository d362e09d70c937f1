"""What a request must pass before any handler reads it, and what is cleaned after it.

Before (a bottle ``before_request`` hook, so before bottle reads a byte of the body):

- **Bodies.** Every route has a body limit, declared in one small table
  (:class:`RouteRules`; a route nobody declared gets :data:`DEFAULT_BODY`). A
  ``Content-Length`` over the route's limit is a 413; a body over
  :data:`ANONYMOUS_BODY` is read only from a caller already authenticated (401
  otherwise), so that nobody unknown makes the service write a byte to disk. A chunked
  body is refused (411): its size is not known before reading it (and bottle under
  cheroot could not read one anyway). Bodies up to :data:`ANONYMOUS_BODY` stay in memory
  and arrived with the head, without holding a thread (:mod:`uws_server.server`).
- **Cross-site requests.** A POST, PUT, PATCH or DELETE that a browser marks as coming
  from another site (:mod:`uws_server.cross_site`) is refused (403) unless it carries a
  Bearer token, which a browser never adds by itself (cached Basic credentials it does).
  ``/ui`` applies the same rule in its own pages, next to its CSRF tokens.

After (``after_request``): the temporary files bottle spooled a large body or upload to
are closed (they are unnamed, so closing frees them; a crash frees them too), and
results, logs and uploaded parameters under ``/rest`` get the headers of
:mod:`uws_server.served_files`.

Other modules declare their routes' limits with :func:`rules_of` (``rules_of(app).add(
RouteRule("/tap/", max_body=...))``); without that they get the safe default.

Relies on bottle internals: bottle spools a body over ``MEMFILE_MAX`` (and a multipart
part) to ``bottle.NamedTemporaryFile``, looked up in its module at each call; this
module points that name at an unnamed, tracked temporary file. setup.py pins bottle,
and tests/test_hardening_http.py checks both the pin and the spooling.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import bottle
from bottle import HTTPResponse, request, response

from uws_server.cross_site import is_cross_site
from uws_server.errors import UWSError
from uws_server.served_files import file_headers
from uws_server.service import UWSService

log = logging.getLogger("uws_server")

BOTTLE_VERSION = "0.13.5"
TEXT = "text/plain; charset=utf-8"
# Read from anyone (a sign-in form, a worker event, a small query): in memory only.
ANONYMOUS_BODY = 64 * 1024
# A route nobody declared: enough for any form of parameters, not for files.
DEFAULT_BODY = 1024 * 1024
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SPOOLED = "uws.spooled"
RULES_KEY = "uws.route_rules"
# /rest paths that serve a job's files (results, logs, uploaded parameters, provenance).
FILE_PATH = re.compile(r"/rest/[^/]+/[^/]+/(?:results/|parameters/|stdout$|stderr$|provenance/)")


@dataclass(frozen=True)
class RouteRule:
    """What requests under ``prefix`` may send.

    ``max_body``: the largest body, in bytes. ``authenticate``: how a caller sending
    more than :data:`ANONYMOUS_BODY` proves who they are, from the WSGI environ before
    anything is read (None: the service's users, by Authorization header or web
    session). ``own_cross_site_check``: the routes refuse cross-site requests
    themselves (the web pages, with their CSRF tokens), so the hook leaves them alone.
    """

    prefix: str
    max_body: int = DEFAULT_BODY
    authenticate: Callable[[dict[str, Any]], bool] | None = None
    own_cross_site_check: bool = False


class RouteRules:
    """The table of :class:`RouteRule`: the longest matching prefix wins."""

    def __init__(self, default: RouteRule | None = None) -> None:
        self.default = default or RouteRule("/")
        self._rules: list[RouteRule] = []
        # Whether this request carries a signed-in session of the web pages: they
        # register their check (uws_server.web.routes), so that this module, below
        # them, needs nothing of theirs. None: sessions prove nothing.
        self.signed_in: Callable[[], bool] | None = None

    def add(self, rule: RouteRule) -> None:
        self._rules = sorted([*self._rules, rule], key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> RouteRule:
        for rule in self._rules:
            if path.startswith(rule.prefix):
                return rule
        return self.default


def rules_of(app: bottle.Bottle) -> RouteRules:
    """The app's table (created by :func:`install_guard`, which runs first)."""
    rules = app.config.get(RULES_KEY)
    if not isinstance(rules, RouteRules):
        rules = RouteRules()
        app.config[RULES_KEY] = rules
    return rules


def refusal(status: int, message: str) -> HTTPResponse:
    return HTTPResponse(message + "\n", status=status, headers={"Content-Type": TEXT})


class Guard:
    """The two hooks, with what they need of the service."""

    def __init__(self, service: UWSService, rules: RouteRules) -> None:
        self.service = service
        self.rules = rules

    # ------------------------------------------------------------------ before
    def before(self) -> None:
        env = request.environ
        method = env.get("REQUEST_METHOD", "GET")
        length = env.get("CONTENT_LENGTH")
        state_changing = method in STATE_CHANGING
        if not (length or state_changing or "HTTP_TRANSFER_ENCODING" in env):
            return  # the common GET: nothing to check
        rule = self.rules.match(env.get("PATH_INFO", ""))
        if state_changing and not rule.own_cross_site_check and not _bearer(env):
            if is_cross_site(env, self.service.settings.base_url):
                raise refusal(
                    403,
                    f"cross-site {method} refused: a request from another site's page needs"
                    " Authorization: Bearer <token> (cached browser credentials are not enough)",
                )
        if "HTTP_TRANSFER_ENCODING" in env:
            raise refusal(411, "chunked request bodies are not accepted: send Content-Length")
        if not length:
            return
        if not (length.isascii() and length.isdigit()):
            raise refusal(400, "Content-Length must be a number of bytes")
        size = int(length)
        if size > rule.max_body:
            raise refusal(
                413,
                f"request body of {size} bytes: {method} {rule.prefix}... takes at most "
                f"{rule.max_body} bytes",
            )
        if size > ANONYMOUS_BODY and not self._authenticated(rule, env):
            raise refusal(
                401,
                f"a request body over {ANONYMOUS_BODY} bytes is read only from an "
                "authenticated caller (HTTP Basic name:token, Bearer, or a signed-in session)",
            )

    def _authenticated(self, rule: RouteRule, env: dict[str, Any]) -> bool:
        try:
            if rule.authenticate is not None:
                return bool(rule.authenticate(env))
            header = request.get_header("Authorization")
            if header:
                self.service.auth.authenticate(header, True)
                return True
            signed_in = self.rules.signed_in
            return signed_in is not None and signed_in()
        except (UWSError, UnicodeError, ValueError):
            return False

    # ------------------------------------------------------------------ after
    def after(self) -> None:
        env = request.environ
        spooled = env.pop(SPOOLED, None)
        if spooled:
            for f in spooled:
                try:
                    f.close()
                except OSError:
                    log.warning("closing a spooled request body failed", exc_info=True)
        path = env.get("PATH_INFO", "")
        if path.startswith("/rest/") and FILE_PATH.match(path):
            for name, value in file_headers(response.content_type or "").items():
                if name == "Content-Disposition" and response.get_header(name):
                    continue  # already a download, with its file name
                response.set_header(name, value)


def _bearer(env: dict[str, Any]) -> bool:
    header = env.get("HTTP_AUTHORIZATION") or ""
    return header[:7].lower() == "bearer " and bool(header[7:].strip())


def _spool_file(mode: str = "w+b", *args: Any, **kwargs: Any) -> IO[bytes]:
    """What bottle gets for ``NamedTemporaryFile``: an unnamed temporary file (nothing
    left on disk once it is closed or the process ends), closed after the request."""
    kwargs.pop("delete", None)
    f = tempfile.TemporaryFile(mode, *args, **kwargs)
    try:
        env = request.environ
    except RuntimeError:  # not within a request
        return f
    env.setdefault(SPOOLED, []).append(f)
    return f


def install_guard(app: bottle.Bottle, service: UWSService) -> RouteRules:
    """Hook the guard into ``app``; returns its :class:`RouteRules` for the routes of
    this service (other modules add theirs through :func:`rules_of`)."""
    settings = service.settings
    upload = settings.max_upload_bytes + (1 << 20)  # files plus the form around them
    rules = rules_of(app)
    rules.add(RouteRule("/rest/", max_body=upload))
    rules.add(RouteRule("/ui/", own_cross_site_check=True))
    rules.add(RouteRule("/ui/submit/", max_body=upload, own_cross_site_check=True))
    guard = Guard(service, rules)
    app.add_hook("before_request", guard.before)
    app.add_hook("after_request", guard.after)
    bottle.NamedTemporaryFile = _spool_file  # see the module docstring
    return rules
