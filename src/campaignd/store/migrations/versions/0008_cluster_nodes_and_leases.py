"""Cluster: nodes with heartbeats, leases per campaign shard, shared rate slots, shards

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("engine", sa.Boolean(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("active_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("kind", "campaign_id", "shard", name="pk_leases"),
    )
    op.create_table(
        "rate_slots",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("next_free", sa.Float(), nullable=False),
    )
    for table in ("traffic_campaigns", "message_campaigns"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("shards", sa.Integer(), nullable=False, server_default="1"))
    for table in ("deliveries", "traffic_stats"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("shard", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
    with op.batch_alter_table("traffic_stats") as batch:
        batch.add_column(sa.Column("errors", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        batch.drop_column("errors")
    for table in ("deliveries", "traffic_stats"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("epoch")
            batch.drop_column("shard")
    for table in ("traffic_campaigns", "message_campaigns"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("shards")
    op.drop_table("rate_slots")
    op.drop_table("leases")
    op.drop_table("nodes")
