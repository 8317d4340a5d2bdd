"""traffic_stats.latency_sum_us: the exact sum behind the mean latency

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        batch.add_column(
            sa.Column("latency_sum_us", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        batch.drop_column("latency_sum_us")
