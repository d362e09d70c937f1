"""The database's migrations (Alembic), shipped with the package.

Run by :func:`uws_server.storage.schema.upgrade` when the service starts and by
``uws-server db upgrade``; how to add one is in docs/architecture.md ("Storage layer").
"""
