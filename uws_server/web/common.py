"""What every web page shares: who is asking, rendering, errors, security headers.

Each route is wrapped by :func:`WebApp.page`, which authenticates (session cookie or the
API's ``Authorization`` header), checks the role and, for POSTs, the CSRF token; turns
errors into an HTML page (or JSON for ``/ui/api``) with a clear message and never a
traceback; and adds the security headers to whatever the route returns.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bottle
from bottle import HTTPResponse, request, response

from uws_server.cross_site import is_cross_site
from uws_server.errors import (
    AuthenticationRequired,
    BadRequest,
    DefinitionError,
    Forbidden,
    UWSError,
)
from uws_server.http_errors import NOT_UTF8, SLOW_BODY, RequestTimeout
from uws_server.models import User
from uws_server.served_files import FILE_CSP, file_headers
from uws_server.service import UWSService
from uws_server.web.session import (
    COOKIE_PATH,
    SESSION_COOKIE,
    Session,
    SessionManager,
    load_secret,
)

log = logging.getLogger("uws_server.web")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
HTML = "text/html; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
OPERATOR = "operator"
ADMIN = "admin"  # not a role: only users with the admin flag

HEADINGS = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Not found",
    408: "Too slow",
    409: "Conflict",
    413: "Too large",
    429: "Too many jobs",
    500: "Server error",
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Job outputs are whatever a script wrote: served sandboxed (an opaque origin), so an
# SVG or HTML result opened directly cannot run script with the service's cookies
# (FILE_CSP and the other headers: uws_server.served_files).


class NeedSignIn(Exception):
    """No valid session or credentials: pages redirect to sign-in, the API answers 401."""


@dataclass
class Ctx:
    """The current request's user and how they were authenticated."""

    user: User
    session: Session | None  # None when authenticated by an Authorization header
    csrf: str  # the token forms must carry ("" for header-authenticated requests)

    @property
    def is_operator(self) -> bool:
        return self.user.has_role(OPERATOR)


def iso(dt: datetime | None) -> str:
    """A naive-UTC time as shown on the pages (seconds, with a Z)."""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + "Z" if dt else ""


def url_part(text: str) -> str:
    """One path segment, percent-encoded (names come from definitions and jobs)."""
    return quote(text, safe="")


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a path of these pages (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        if not any(c in target for c in "\\\r\n\t"):
            return target
    return "/ui/"


def form_values() -> bottle.FormsDict:
    """The form fields decoded as UTF-8 (bottle hands urlencoded values over as latin-1)."""
    try:
        values = request.forms.decode()
    except UnicodeError:
        raise BadRequest("form values must be UTF-8") from None
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"malformed form: {exc}") from None
    if any(not isinstance(key, str) for key in values):  # a multipart part without a name
        raise BadRequest("every form field needs a name")
    return values


def form_value(name: str, default: str = "") -> str:
    value = form_values().get(name)
    return default if value is None else str(value)


def see_other(url: str) -> HTTPResponse:
    """A 303 keeping the cookies set on ``bottle.response`` during this request."""
    res = response.copy(cls=HTTPResponse)
    res.status = 303
    res.body = ""
    res.set_header("Location", url)
    return res


def json_response(data: Any, status: int = 200) -> HTTPResponse:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return HTTPResponse(body, status=status, headers={"Content-Type": JSON_TYPE})


class WebApp:
    """The web layer's state: the service, the session manager, the templates."""

    def __init__(self, service: UWSService) -> None:
        self.service = service
        self.settings = service.settings
        self.sessions = SessionManager(load_secret(self.settings.var_dir))

    # ------------------------------------------------------------ identity
    def secure_cookies(self) -> bool:
        return self.settings.base_url.startswith("https:") or request.urlparts.scheme == "https"

    def set_session_cookie(self, user: User) -> Session:
        value, session = self.sessions.issue(user.name, user.token_hash)
        response.set_cookie(
            SESSION_COOKIE,
            value,
            path=COOKIE_PATH,
            max_age=self.sessions.lifetime,
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies(),
        )
        return session

    def clear_session_cookie(self) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies(),
        )

    def current(self) -> Ctx:
        """The user behind this request; raises NeedSignIn when there is none."""
        header = request.get_header("Authorization")
        if header:
            user = self.service.auth.authenticate(header, True)
            return Ctx(user, None, "")
        found = self.session_user()
        if found is None:
            raise NeedSignIn()
        user, session = found
        if user.disabled:
            raise Forbidden(f"user {user.name} is disabled")
        return Ctx(user, session, self.sessions.csrf_token(session))

    def session_user(self) -> tuple[User, Session] | None:
        """The request's session and its user: None without a signed, unexpired session
        cookie, for a deleted user, or once a new token was issued (it ends sessions)."""
        session = self.sessions.decode(request.get_cookie(SESSION_COOKIE))
        if session is None:
            return None
        user = self.service.store.user_by_name(session.user)
        if user is None or self.sessions.fingerprint(user.token_hash) != session.fingerprint:
            return None
        return user, session

    def signed_in(self) -> bool:
        """A signed-in session of an enabled user: what the request guard
        (:mod:`uws_server.request_guard`) accepts, before any page reads the body, as
        the sender of a large one (an upload through the pages)."""
        found = self.session_user()
        return found is not None and not found[0].disabled

    def check_post(self, ctx: Ctx) -> None:
        """CSRF: the session's token for cookie requests, same-site for header ones."""
        if ctx.session is None:
            if is_cross_site(request.environ, self.settings.base_url):
                raise Forbidden("cross-site request refused")
            return
        presented = request.get_header("X-CSRF-Token") or form_value("_csrf")
        if not self.sessions.csrf_ok(ctx.session, presented):
            raise Forbidden("missing or invalid CSRF token: reload the page and try again")

    # ----------------------------------------------------------- rendering
    def render(self, ctx: Ctx | None, template: str, status: int = 200, **values: Any) -> str:
        response.status = status
        response.content_type = HTML
        values.setdefault("title", "")
        values.setdefault("message", "")
        return bottle.template(
            template,
            template_lookup=[str(TEMPLATES)],
            ctx=ctx,
            iso=iso,
            q=url_part,
            human_size=human_size,
            **values,
        )

    def error_page(self, ctx: Ctx | None, status: int, message: str, api: bool) -> Any:
        if api:
            return json_response({"error": message}, status)
        heading = HEADINGS.get(status, "Error")
        return self.render(
            ctx, "error.tpl", status, title=heading, error=message, code=status, heading=heading
        )

    # ----------------------------------------------------------- decorator
    def page(
        self, role: str | None = None, *, api: bool = False, public: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Wrap a route: authentication, role, CSRF, errors, security headers.

        The route receives the :class:`Ctx` as its first argument (None when ``public``).
        """

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx: Ctx | None = None
                try:
                    if not public:
                        ctx = self.current()
                        allowed = ctx.user.is_admin if role == ADMIN else ctx.user.has_role(role)
                        if role and not allowed:
                            raise Forbidden(f"this page needs the {role} role")
                        if request.method == "POST":
                            self.check_post(ctx)
                    result = fn(ctx, *args, **kwargs)
                except NeedSignIn:
                    result = self._sign_in_needed(api)
                except DefinitionError as exc:
                    text = "; ".join(f"{f}: {r}" for f, r in exc.problems)
                    result = self.error_page(ctx, 400, text, api)
                except UWSError as exc:
                    if isinstance(exc, AuthenticationRequired) and not api:
                        self.clear_session_cookie()
                    result = self.error_page(ctx, exc.status, exc.message, api)
                except HTTPResponse:
                    raise
                except UnicodeDecodeError:
                    result = self.error_page(ctx, 400, NOT_UTF8, api)
                except RequestTimeout:
                    result = self.error_page(ctx, 408, SLOW_BODY, api)
                except Exception as exc:  # noqa: BLE001 - logged, never shown
                    log.error("web page %s failed", request.path, exc_info=exc)
                    result = self.error_page(ctx, 500, "internal server error", api)
                return self._secure(result, ctx)

            return wrapper

        return decorate

    def _sign_in_needed(self, api: bool) -> Any:
        if api or request.method != "GET":
            self.clear_session_cookie()
            message = "sign in first (or send Authorization: Basic name:token or Bearer)"
            return self.error_page(None, 401, message, api)
        self.clear_session_cookie()
        target = request.path + ("?" + request.query_string if request.query_string else "")
        return see_other("/ui/login?next=" + quote(target, safe=""))

    @staticmethod
    def _secure(result: Any, ctx: Ctx | None) -> Any:
        """Security headers on the response object that will actually be sent."""
        target = result if isinstance(result, HTTPResponse) else response
        ctype = target.headers.get("Content-Type", "") or ""
        if isinstance(result, HTTPResponse) and (
            hasattr(result.body, "read") or result.get_header("Accept-Ranges")
        ):
            # A file (bottle.static_file, whole or a range): whatever its type, never a
            # page of ours.
            for name, value in file_headers(ctype).items():
                if name != "Content-Disposition" or not target.headers.get(name):
                    target.set_header(name, value)
            is_page = False
        else:
            is_page = ctype.startswith("text/html") or ctype.startswith("application/json")
        if not target.headers.get("Content-Security-Policy"):
            target.set_header("Content-Security-Policy", PAGE_CSP if is_page else FILE_CSP)
        target.set_header("X-Content-Type-Options", "nosniff")
        target.set_header("Referrer-Policy", "same-origin")
        target.set_header("X-Frame-Options", "DENY")
        if is_page:
            target.set_header("Cache-Control", "no-store")
        return result
