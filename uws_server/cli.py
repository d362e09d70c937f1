"""The ``uws-server`` command: ``serve``, ``user`` management, ``db upgrade``."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from uws_server.auth import check_user_name, hash_token, new_token, parse_roles
from uws_server.common import utcnow
from uws_server.config import Settings, load_settings
from uws_server.db import make_engine
from uws_server.errors import BadRequest
from uws_server.models import User
from uws_server.storage import Store
from uws_server.storage.schema import create_schema


def _store(settings: Settings) -> Store:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    return Store(engine)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from uws_server.server import serve

    serve(settings)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """``db upgrade``: bring the database to the current schema (the service does it at
    start too); ``db current``: print its revision and the newest one."""
    from uws_server.storage import schema

    try:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
    except OSError as exc:
        print(f"uws-server db {args.action}: cannot open the database: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "upgrade":
            before = schema.upgrade(engine)
            print(f"database at {schema.head()} (was {before or 'empty'})")
        else:
            with engine.connect() as conn:
                print(
                    f"database at {schema.current(conn) or 'no revision'}; newest {schema.head()}"
                )
    except SQLAlchemyError as exc:
        print(f"uws-server db {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """``user ...``: a clear message and a non-zero status for every refusal, never a
    traceback (a bad name or role, a name taken meanwhile by a concurrent ``add``, a
    database that cannot be written)."""
    try:
        return _user(args, settings)
    except BadRequest as exc:
        print(f"uws-server user {args.action}: {exc.message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(
            f"uws-server user {args.action}: the database refused the change "
            f"({type(getattr(exc, 'orig', None) or exc).__name__}: {getattr(exc, 'orig', exc)})",
            file=sys.stderr,
        )
        return 1


def _user(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    if args.action == "list":
        for u in store.list_users():
            flags = ["admin"] if u.is_admin else []
            flags += ["disabled"] if u.disabled else []
            print(f"{u.name}\troles={','.join(u.roles) or '-'}\t{' '.join(flags)}")
        return 0
    if not args.name:
        print(f"uws-server user {args.action}: a NAME is required", file=sys.stderr)
        return 2
    if args.action == "add":
        name = check_user_name(args.name)  # the admin page's rule (uws_server.auth)
        roles = parse_roles(args.roles or "")
        exists = f"user {name} exists already (use 'user token' for a new token)"
        if store.user_by_name(name) is not None:
            print(exists, file=sys.stderr)
            return 1
        token = new_token()
        try:
            store.add_user(
                User(name, hash_token(token), is_admin=args.admin, roles=roles), utcnow()
            )
        except IntegrityError:  # added meanwhile (a concurrent `user add` of that name)
            print(exists, file=sys.stderr)
            return 1
        print(token)
        return 0
    if store.user_by_name(args.name) is None:
        print(f"no user {args.name}", file=sys.stderr)
        return 1
    if args.action == "disable":
        store.set_disabled(args.name, True)
    elif args.action == "enable":
        store.set_disabled(args.name, False)
    elif args.action == "token":
        token = new_token()
        store.set_token_hash(args.name, hash_token(token))
        print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uws-server", description="IVOA UWS 1.1 job service")
    parser.add_argument("--config", help="settings file (default: settings.yml of the project)")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--config", dest="config_sub", help="settings file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    user = sub.add_parser("user", help="manage users and their tokens")
    user.add_argument("--config", dest="config_sub", help="settings file")
    user.add_argument("action", choices=["add", "list", "disable", "enable", "token"])
    user.add_argument("name", nargs="?")
    user.add_argument("--admin", action="store_true", help="(add) make the user an admin")
    user.add_argument("--roles", help="(add) comma-separated roles, e.g. operator")
    user.set_defaults(func=cmd_user)
    database = sub.add_parser("db", help="the database's schema (migrations)")
    database.add_argument("--config", dest="config_sub", help="settings file")
    database.add_argument("action", choices=["upgrade", "current"])
    database.set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv or [])])
    config = getattr(args, "config_sub", None) or args.config
    try:
        settings = load_settings(
            config, host=getattr(args, "host", None), port=getattr(args, "port", None)
        )
    except (OSError, ValueError) as exc:
        print(f"uws-server: {exc}", file=sys.stderr)
        return 2
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main())
