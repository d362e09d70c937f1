"""Alembic's environment: the service's own connection and its ``metadata``.

The service (and ``uws-server db upgrade``) hands its connection over in
``config.attributes["connection"]``; the ``alembic`` command line can be used too, with
``-x url=<database URL>`` (see docs/architecture.md, "Storage layer").
"""

from __future__ import annotations

from alembic import context

from uws_server.migrations import target_metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        # SQLite cannot ALTER most things: later revisions' op.batch_alter_table copies
        # the table; render_as_batch makes autogenerate write them that way.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from uws_server.db import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("alembic: give the database with -x url=<database URL>")
    with make_engine(url).begin() as conn:
        _run(conn)
