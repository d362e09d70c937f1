"""Database tables and engine set-up (SQLAlchemy Core).

Core, not the ORM: the hot paths (create a job, read a job, list the last 100) are a
handful of statements each, and Core keeps them cheap and visible. Every statement
lives in the :mod:`uws_server.storage` package. These tables are the one declaration
of the schema: the storage layer's statements and row mappings are derived from them,
and a change to them needs a migration (uws_server/migrations; tests/test_migrations.py
fails until the migrations and these tables agree).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.pool import StaticPool  # noqa: F401 - re-exported for tests

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("roles", String(255), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("max_active_jobs", Integer, nullable=True),
    Column("created", DateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("jobname", String(64), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("run_id", String(255), nullable=True),
    Column("creation_time", DateTime, nullable=False),
    Column("destruction_time", DateTime, nullable=False),
    Column("execution_duration", Integer, nullable=False),
    Column("quote", DateTime, nullable=True),
    Column("start_time", DateTime, nullable=True),
    Column("end_time", DateTime, nullable=True),
    Column("error_summary", Text, nullable=True),
    # Parameters as one JSON object: a job is read far more often than searched by
    # parameter, and one column keeps GET job to a single row read.
    Column("parameters", Text, nullable=False, default="{}"),
    Column("manager", String(16), nullable=True),
    Column("external_id", String(64), nullable=True),
    Column("callback_token_hash", String(64), nullable=True),
    Column("context", Text, nullable=True),
    Column("version", Integer, nullable=False, default=0),
)
# The job list: per definition, per owner, newest first (LAST, AFTER).
Index("ix_jobs_list_owner", jobs.c.jobname, jobs.c.owner, jobs.c.creation_time)
Index("ix_jobs_list_all", jobs.c.jobname, jobs.c.creation_time)
Index("ix_jobs_destruction", jobs.c.destruction_time)
# Active jobs per owner (the per-user limit) and, through its second column, recovery.
Index("ix_jobs_owner_phase", jobs.c.owner, jobs.c.phase)

# Entities are first-class: a file a job generated, an uploaded input, a fetched URL.
# A result of one job used by a later job is the same row, so provenance chains.
entities = Table(
    "entities",
    metadata,
    Column("entity_id", String(48), primary_key=True),
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="SET NULL"), nullable=True),
    Column("name", String(255), nullable=False),  # result id within its job
    Column("path", Text, nullable=True),  # absolute path on disk
    Column("location", Text, nullable=True),  # URL
    Column("content_type", String(255), nullable=True),
    Column("size", Integer, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("owner", String(64), nullable=False),
    Column("role", String(64), nullable=True),
    Column("kind", String(16), nullable=False, default="result"),  # result|upload|provenance
    Column("created", DateTime, nullable=False),
)
Index("ix_entities_job", entities.c.job_id, entities.c.name)
# Files scripts report reading (e.g. from the DL3 store) are matched by content.
Index("ix_entities_sha256", entities.c.sha256)

usages = Table(
    "usages",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("entity_id", String(48), primary_key=True),
    Column("role", String(64), primary_key=True),
)
Index("ix_usages_entity", usages.c.entity_id)


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL and pragmas that make it safe under threads."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=40,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only a power
            # loss can drop the last transactions. It makes commits much cheaper.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
