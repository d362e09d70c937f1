"""The database's migrations (Alembic), shipped with the package.

Run by :func:`uws_server.storage.schema.upgrade` when the service starts and by
``uws-server db upgrade``; how to add one is in docs/architecture.md ("Storage layer").

:func:`target_metadata` lives here rather than in the storage package: it gathers the
tables of storage and of the catalogue (:mod:`uws_server.vo`, which reads storage), so
only a package above both may import them all without closing a cycle.
"""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    """Every table of the service, as declared (what autogenerate and
    tests/test_migrations.py compare a migrated database with)."""
    import uws_server.storage.progress  # noqa: F401 - adds job_progress to db.metadata
    import uws_server.vo.obscore  # noqa: F401 - adds the obscore table to db.metadata
    from uws_server.db import metadata

    return metadata
