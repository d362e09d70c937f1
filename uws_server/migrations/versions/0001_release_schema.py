"""The schema of the last release without migrations (commit a59c169): jobs, users,
entities, usages. A database made by that release is stamped with this revision.

Revision ID: 0001_release_schema
Revises: <base>
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_release_schema"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("jobname", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=True),
        sa.Column("creation_time", sa.DateTime(), nullable=False),
        sa.Column("destruction_time", sa.DateTime(), nullable=False),
        sa.Column("execution_duration", sa.Integer(), nullable=False),
        sa.Column("quote", sa.DateTime(), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=True),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("manager", sa.String(length=16), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("callback_token_hash", sa.String(length=64), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_jobs_destruction", "jobs", ["destruction_time"], unique=False)
    op.create_index("ix_jobs_list_all", "jobs", ["jobname", "creation_time"], unique=False)
    op.create_index(
        "ix_jobs_list_owner", "jobs", ["jobname", "owner", "creation_time"], unique=False
    )
    op.create_index("ix_jobs_owner_phase", "jobs", ["owner", "phase"], unique=False)
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("max_active_jobs", sa.Integer(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "entities",
        sa.Column("entity_id", sa.String(length=48), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("entity_id"),
    )
    op.create_index("ix_entities_job", "entities", ["job_id", "name"], unique=False)
    op.create_index("ix_entities_sha256", "entities", ["sha256"], unique=False)
    op.create_table(
        "usages",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=48), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "entity_id", "role"),
    )
    op.create_index("ix_usages_entity", "usages", ["entity_id"], unique=False)


def downgrade() -> None:
    for table in ("usages", "entities", "users", "jobs"):
        op.drop_table(table)
