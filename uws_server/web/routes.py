"""The web pages' entry point: sign-in and sign-out, the home page, static files.

``register_web_routes(app, service)`` is the only name the rest of the service uses
(called once from ``uws_server.app.build_app``). The pages themselves live in
:mod:`.jobs` (scientists), :mod:`.find` (Find data), :mod:`.operator` (job
definitions) and :mod:`.admin`.
"""

from __future__ import annotations

from typing import Any

import bottle
from bottle import request, response

from uws_server.errors import BadRequest, UWSError
from uws_server.request_guard import rules_of
from uws_server.service import UWSService
from uws_server.web.admin import register_admin_routes
from uws_server.web.common import (
    STATIC,
    Ctx,
    NeedSignIn,
    WebApp,
    form_value,
    safe_next,
    see_other,
)
from uws_server.web.find import register_find_routes
from uws_server.web.jobs import list_jobs, register_job_routes
from uws_server.web.live import register_live_routes
from uws_server.web.operator import register_operator_routes
from uws_server.web.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_NONCE_SECONDS,
    new_login_nonce,
    nonce_ok,
)

RECENT_JOBS = 5
MAX_TOKEN_LENGTH = 512


def register_web_routes(app: bottle.Bottle, service: UWSService) -> None:
    """Add every ``/ui`` page to ``app``."""
    web = WebApp(service)
    rules_of(app).signed_in = web.signed_in  # large bodies from signed-in browsers

    @app.get("/ui")
    def ui_root() -> Any:
        return see_other("/ui/")

    @app.get("/ui/static/<filename:re:[a-z][a-z0-9_.-]{0,63}>")
    def static(filename: str) -> Any:
        res = bottle.static_file(filename, root=str(STATIC))
        res.set_header("X-Content-Type-Options", "nosniff")
        res.set_header("Cache-Control", "no-cache")
        return res

    def show_login(error: str = "", status: int = 200) -> str:
        nonce = new_login_nonce()
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            path=COOKIE_PATH,
            max_age=LOGIN_NONCE_SECONDS,
            httponly=True,
            samesite="Lax",
            secure=web.secure_cookies(),
        )
        return web.render(
            None,
            "login.tpl",
            status,
            title="Sign in",
            nonce=nonce,
            next=safe_next(request.query.get("next") or form_value("next") or None),
            error=error,
        )

    @app.get("/ui/login")
    @web.page(public=True)
    def login_form(_: None) -> Any:
        try:
            web.current()
        except (NeedSignIn, UWSError):
            return show_login()
        return see_other(safe_next(request.query.get("next")))

    @app.post("/ui/login")
    @web.page(public=True)
    def login(_: None) -> Any:
        if not nonce_ok(request.get_cookie(LOGIN_COOKIE), form_value("_nonce")):
            return show_login("The sign-in form expired: please try again.", 403)
        token = form_value("token").strip()
        if not token:
            return show_login("Enter your token.", 400)
        if len(token) > MAX_TOKEN_LENGTH:
            raise BadRequest("token too long")
        user = service.auth.user_for_token(token)
        if user is None:
            return show_login("Unknown token.", 401)
        if user.disabled:
            return show_login(f"User {user.name} is disabled.", 403)
        web.set_session_cookie(user)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return see_other(safe_next(form_value("next")))

    @app.post("/ui/logout")
    @web.page()
    def logout(ctx: Ctx) -> Any:
        if ctx.session is not None:
            web.sessions.revoke(ctx.session)
        web.clear_session_cookie()
        return see_other("/ui/login")

    @app.get("/ui/")
    @web.page()
    def home(ctx: Ctx) -> Any:
        recent = list_jobs(service, ctx.user, [])[:RECENT_JOBS]
        return web.render(
            ctx,
            "home.tpl",
            title="Job definitions",
            definitions=service.registry.all(),
            recent=recent,
        )

    finder = register_find_routes(app, web)
    register_job_routes(app, web, finder.picker)
    register_live_routes(app, web)
    register_operator_routes(app, web)
    register_admin_routes(app, web)
