"""Small helpers every layer of the service shares: the clock, ids, ownership, paths.

They were stranded in domain modules (``inputs``, ``lifecycle``, ``service``) and made
other modules import those, which is how import cycles start. This module imports
nothing of the service but :mod:`uws_server.errors`, so anything may import it.
"""

from __future__ import annotations

import errno
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from dateutil import parser as dateparser

from uws_server.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uws_server.models import User

# Where the repository is: job scripts, the default settings, ``workers`` for remote
# runners are found from it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# --- the clock -----------------------------------------------------------------------


def utcnow() -> datetime:
    """Now as naive UTC: the service's convention for every stored time."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_time(name: str, text: str) -> datetime:
    """ISO 8601 to naive UTC; a clear 400 naming the parameter otherwise."""
    try:
        dt = dateparser.isoparse(text.strip())
    except (ValueError, OverflowError):
        raise BadRequest(f"{name}: '{text[:64]}' is not an ISO 8601 date and time") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


# --- identifiers ---------------------------------------------------------------------


def new_job_id() -> str:
    """96 random bits, URL-safe: unguessable, so ids leak nothing and cannot be forged."""
    return secrets.token_urlsafe(12)


def new_entity_id() -> str:
    """A provenance entity's id: unguessable like a job's, told apart by its prefix."""
    return "ent_" + secrets.token_urlsafe(12)


# --- ownership -----------------------------------------------------------------------


def can_read(user: User, owner: str) -> bool:
    """The one ownership rule: a user reads what they own; an administrator, anything."""
    return user.is_admin or user.name == owner


# --- path safety ---------------------------------------------------------------------


def within(path: Path | str, root: Path | str) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root`` (or is ``root``).

    ``os.path`` on strings rather than ``Path.resolve().is_relative_to()``, with the
    same answers (and the same ``RuntimeError`` for a symlink loop): this runs for every
    result of every job.
    """
    return real_path_within(path, root) is not None


def real_path_within(path: Path | str, root: Path | str) -> str | None:
    """The real path of ``path`` when it lies inside ``root`` (or is ``root``), else
    None (also when either cannot be resolved)."""
    try:
        real, top = resolved(path), resolved(root)
    except (OSError, ValueError):
        return None
    if real == top or real.startswith(top if top == "/" else top + "/"):
        return real
    return None


def resolved(path: Path | str) -> str:
    """``str(Path(path).resolve())`` without the Path objects: the real path, with a
    ``RuntimeError`` for a symlink loop, as ``Path.resolve`` gives in Python 3.12."""
    real = os.path.realpath(path)
    try:
        os.stat(real)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RuntimeError(f"Symlink loop from {exc.filename!r}") from None
    return real
