"""The catalogue's table (ObsCore rows of the DL3 store and of job products), added
this session (uws_server/vo/obscore.py).

Revision ID: 0002_obscore
Revises: 0001_release_schema
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_obscore"
down_revision = "0001_release_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "obscore",
        sa.Column("dataproduct_type", sa.String(length=255), nullable=True),
        sa.Column("calib_level", sa.Integer(), nullable=True),
        sa.Column("obs_collection", sa.String(length=255), nullable=False),
        sa.Column("obs_id", sa.String(length=255), nullable=True),
        sa.Column("obs_publisher_did", sa.String(length=255), nullable=True),
        sa.Column("access_url", sa.Text(), nullable=True),
        sa.Column("access_format", sa.Text(), nullable=True),
        sa.Column("access_estsize", sa.BigInteger(), nullable=True),
        sa.Column("target_name", sa.Text(), nullable=True),
        sa.Column("s_ra", sa.Double(), nullable=True),
        sa.Column("s_dec", sa.Double(), nullable=True),
        sa.Column("s_fov", sa.Double(), nullable=True),
        sa.Column("s_region", sa.Text(), nullable=True),
        sa.Column("s_resolution", sa.Double(), nullable=True),
        sa.Column("s_xel1", sa.BigInteger(), nullable=True),
        sa.Column("s_xel2", sa.BigInteger(), nullable=True),
        sa.Column("t_min", sa.Double(), nullable=True),
        sa.Column("t_max", sa.Double(), nullable=True),
        sa.Column("t_exptime", sa.Double(), nullable=True),
        sa.Column("t_resolution", sa.Double(), nullable=True),
        sa.Column("t_xel", sa.BigInteger(), nullable=True),
        sa.Column("em_min", sa.Double(), nullable=True),
        sa.Column("em_max", sa.Double(), nullable=True),
        sa.Column("em_res_power", sa.Double(), nullable=True),
        sa.Column("em_xel", sa.BigInteger(), nullable=True),
        sa.Column("o_ucd", sa.Text(), nullable=True),
        sa.Column("pol_states", sa.Text(), nullable=True),
        sa.Column("pol_xel", sa.BigInteger(), nullable=True),
        sa.Column("facility_name", sa.Text(), nullable=True),
        sa.Column("instrument_name", sa.Text(), nullable=True),
        sa.Column("obs_release_date", sa.DateTime(), nullable=True),
        sa.Column("obs_creation_date", sa.DateTime(), nullable=True),
        sa.Column("proposal_id", sa.Text(), nullable=True),
        sa.Column("data_rights", sa.Text(), nullable=True),
        sa.Column("energy_min", sa.Double(), nullable=True),
        sa.Column("energy_max", sa.Double(), nullable=True),
        sa.Column("ev_xel", sa.BigInteger(), nullable=True),
        sa.Column("pointing_mode", sa.Text(), nullable=True),
        sa.Column("messenger_name", sa.Text(), nullable=True),
        sa.Column("alt_pnt", sa.Double(), nullable=True),
        sa.Column("az_pnt", sa.Double(), nullable=True),
        sa.Column("zen_pnt", sa.Double(), nullable=True),
        sa.Column("livetime", sa.Double(), nullable=True),
        sa.Column("ontime", sa.Double(), nullable=True),
        sa.Column("n_tels", sa.Integer(), nullable=True),
        sa.Column("telescopes", sa.Text(), nullable=True),
        sa.Column("irf_name", sa.Text(), nullable=True),
        sa.Column("offset", sa.Double(), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("entity_id", sa.String(length=48), nullable=True),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("pos_x", sa.Double(), nullable=True),
        sa.Column("pos_y", sa.Double(), nullable=True),
        sa.Column("pos_z", sa.Double(), nullable=True),
        sa.Column("updated", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
    )
    op.create_index("ix_obscore_did", "obscore", ["obs_publisher_did"], unique=True)
    op.create_index("ix_obscore_job", "obscore", ["job_id"], unique=False)
    op.create_index("ix_obscore_obsid", "obscore", ["obs_id"], unique=False)
    op.create_index("ix_obscore_radec", "obscore", ["s_dec", "s_ra"], unique=False)
    op.create_index("ix_obscore_tmin", "obscore", ["t_min"], unique=False)


def downgrade() -> None:
    op.drop_table("obscore")
