"""Jobs' latest progress (issue 13: ``$UWS_PROGRESS_FILE`` relayed by the runners),
declared in uws_server/storage/progress.py.

Revision ID: 0003_job_progress
Revises: 0002_obscore
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_job_progress"
down_revision = "0002_obscore"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_progress",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("job_progress")
