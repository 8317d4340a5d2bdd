"""Journeys: profile steps and data rows; per-step stats and busy users per stats window

`traffic_stats.step_stats` holds, per window, the counts and encoded HDR histogram of each
step (or request name), the checks' passes and fails, and the iterations, so `info` after a
restart and every report still have them. `busy_users` is the most users with a request in
flight at once in the window.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("traffic_profiles") as batch:
        batch.add_column(sa.Column("steps", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("data", sa.JSON(), nullable=True))
    with op.batch_alter_table("traffic_stats") as batch:
        batch.add_column(sa.Column("busy_users", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step_stats", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("traffic_stats") as batch:
        batch.drop_column("step_stats")
        batch.drop_column("busy_users")
    with op.batch_alter_table("traffic_profiles") as batch:
        batch.drop_column("data")
        batch.drop_column("steps")
