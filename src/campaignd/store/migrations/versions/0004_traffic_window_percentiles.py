"""traffic_stats p50/p90/p99/max in ms: reports read them instead of decoding histograms

Rows written before this revision have them NULL; the repository fills them in once, from
the row's histogram, the first time a report or series reads that campaign.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


def upgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
