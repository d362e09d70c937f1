"""The database's schema brought to the migrations' head (Alembic), at every start.

The tables are declared once (:mod:`uws_server.db`, the progress table in
:mod:`uws_server.storage.progress`, the catalogue's in :mod:`uws_server.vo.obscore`;
all of them gathered by :func:`uws_server.migrations.target_metadata`, above both
storage and vo); the migrations in ``uws_server/migrations/versions`` say how a
database of an earlier release becomes that schema, and tests/test_migrations.py fails
when the two disagree. Running them needs no declared table: this module imports none.

Three cases at start:

- an empty database: the migrations run from the start (they create every table);
- a database of the release before migrations (tables, no ``alembic_version``): it is
  stamped with the baseline revision, whose schema it has, then upgraded;
- a migrated database: upgraded to the head (nothing to do when it is there already).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)
# Alembic announces each of its plugins at INFO on every run: noise in the service log.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The schema of the last release without migrations (commit a59c169): jobs, users,
# entities, usages.
BASELINE = "0001_release_schema"
VERSION_TABLE = "alembic_version"


def _config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(connection: Connection) -> str | None:
    """The database's revision (None: never migrated)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to ``revision``; returns the revision it was at ('' when new)."""
    from alembic import command

    with engine.begin() as conn:
        before = current(conn)
        tables = set(inspect(conn).get_table_names())
        if "jobs" not in tables:
            # Empty, or emptied by a drop_all that left the version table behind.
            if before is not None:
                conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
            before = None
        elif before is None:
            # The release before migrations: it has the baseline's schema.
            command.stamp(_config(conn), BASELINE)
        if before is not None and before == head() and revision == "head":
            return before
        command.upgrade(_config(conn), revision)
    log.info("database schema upgraded from %s to %s", before or "nothing", revision)
    return before or ""


def create_schema(engine: Engine) -> None:
    """The database at the current schema, whatever it was (see :func:`upgrade`)."""
    upgrade(engine)
