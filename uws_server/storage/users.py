"""Users: accounts, their token hashes, roles and limits (the Store's methods for
them, mixed into :class:`uws_server.storage.Store`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from uws_server import db
from uws_server.models import User

US = db.users


def _user(row: Any) -> User:  # noqa: ANN401 - a Row of the users table
    return User(
        name=row.name,
        token_hash=row.token_hash,
        is_admin=row.is_admin,
        roles=tuple(r for r in row.roles.split(",") if r),
        disabled=row.disabled,
        max_active_jobs=row.max_active_jobs,
    )


class UserStore:
    """Users (mixed into Store)."""

    engine: Engine
    _write: Callable[..., contextlib.AbstractContextManager[Connection]]

    def add_user(self, user: User, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                insert(US).values(
                    name=user.name,
                    token_hash=user.token_hash,
                    is_admin=user.is_admin,
                    roles=",".join(user.roles),
                    disabled=user.disabled,
                    max_active_jobs=user.max_active_jobs,
                    created=now,
                )
            )

    def _find(self, cond) -> User | None:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            row = conn.execute(select(US).where(cond)).first()
        return None if row is None else _user(row)

    def user_by_token_hash(self, token_hash: str) -> User | None:
        return self._find(US.c.token_hash == token_hash)

    def user_by_name(self, name: str) -> User | None:
        return self._find(US.c.name == name)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(US).order_by(US.c.name))]

    def _set_user(self, name: str, **values: object) -> bool:
        with self._write() as conn:
            res = conn.execute(update(US).where(US.c.name == name).values(**values))
        return res.rowcount == 1

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (or enable again) an account; False when there is no such user."""
        return self._set_user(name, disabled=disabled)

    def set_token_hash(self, name: str, token_hash: str) -> bool:
        """A new token for the user (its hash): the old one stops working."""
        return self._set_user(name, token_hash=token_hash)

    def set_roles(self, name: str, roles: Iterable[str]) -> bool:
        return self._set_user(name, roles=",".join(roles))
