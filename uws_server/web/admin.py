"""The admin page: users and their roles, active jobs, disabling users, new tokens.

A new token is shown once, in the response to the request that made it, and never
stored in clear; issuing one ends the user's browser sessions (they are bound to the
token hash). The authentication cache is flushed after every change so that a disabled
user is refused at once, not a few seconds later.
"""

from __future__ import annotations

from typing import Any

import bottle
from bottle import request

from uws_server.auth import check_user_name, hash_token, new_token, parse_roles
from uws_server.common import utcnow
from uws_server.errors import BadRequest, Conflict, NotFound
from uws_server.models import User
from uws_server.web.common import ADMIN, Ctx, WebApp, form_values, see_other
from uws_server.web.jobs import LIVE_PHASES

MESSAGES = {
    "disabled": "User disabled.",
    "enabled": "User enabled.",
    "roles": "Roles changed.",
}


def register_admin_routes(app: bottle.Bottle, web: WebApp) -> None:
    service = web.service
    store = service.store

    def show(ctx: Ctx, status: int = 200, **extra: Any) -> str:
        users = store.list_users()
        active = {u.name: store.count_active(u.name) for u in users}
        jobs = sorted(store.jobs_in_phases(LIVE_PHASES), key=lambda j: j.creation_time)
        return web.render(
            ctx,
            "admin.tpl",
            status,
            title="Administration",
            users=users,
            active=active,
            jobs=jobs[::-1],
            **extra,
        )

    def existing(name: str) -> User:
        user = store.user_by_name(name)
        if user is None:
            raise NotFound(f"no user named {name[:64]!r}")
        return user

    def changed() -> None:
        service.auth.invalidate()

    @app.get("/ui/admin")
    @web.page(ADMIN)
    def admin(ctx: Ctx) -> Any:
        return show(ctx, message=MESSAGES.get(request.query.get("msg", ""), ""))

    @app.post("/ui/admin/users")
    @web.page(ADMIN)
    def add_user(ctx: Ctx) -> Any:
        form = form_values()
        name = check_user_name(str(form.get("name", "")).strip())
        if store.user_by_name(name) is not None:
            raise Conflict(f"a user named {name!r} already exists")
        roles = parse_roles(str(form.get("roles", "")))
        is_admin = str(form.get("admin", "")).lower() in ("on", "true", "1")
        token = new_token()
        store.add_user(User(name, hash_token(token), is_admin, roles), utcnow())
        changed()
        return show(ctx, new_token=(name, token), message=f"User {name} created.")

    @app.post("/ui/admin/users/<name>/<action:re:disable|enable>")
    @web.page(ADMIN)
    def set_disabled(ctx: Ctx, name: str, action: str) -> Any:
        existing(name)
        if name == ctx.user.name and action == "disable":
            raise BadRequest("you cannot disable your own account")
        store.set_disabled(name, action == "disable")
        changed()
        return see_other(f"/ui/admin?msg={action}d")

    @app.post("/ui/admin/users/<name>/roles")
    @web.page(ADMIN)
    def set_roles(ctx: Ctx, name: str) -> Any:
        existing(name)
        store.set_roles(name, parse_roles(str(form_values().get("roles", ""))))
        changed()
        return see_other("/ui/admin?msg=roles")

    @app.post("/ui/admin/users/<name>/token")
    @web.page(ADMIN)
    def reset_token(ctx: Ctx, name: str) -> Any:
        user = existing(name)
        token = new_token()
        store.set_token_hash(name, hash_token(token))
        changed()
        if ctx.session is not None and name == ctx.user.name:
            # The old session was bound to the old token: keep the admin signed in.
            user.token_hash = hash_token(token)
            ctx.session = web.set_session_cookie(user)
            ctx.csrf = web.sessions.csrf_token(ctx.session)
        message = f"New token for {name}: the previous one no longer works."
        return show(ctx, new_token=(name, token), message=message)
