"""archived_at on campaigns, profiles, accounts and audiences; message campaigns' auto-pause

`archived_at` hides a row from lists (and the editor's choices) without losing its history.
`max_consecutive_failures` (NULL: the service's setting) pauses a message campaign after that
many failed deliveries in a row; `pause_reason` says why the engine paused it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ARCHIVABLE = ("traffic_profiles", "traffic_campaigns", "accounts", "audiences", "message_campaigns")


def upgrade() -> None:
    for table in ARCHIVABLE:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("message_campaigns") as batch:
        batch.add_column(sa.Column("max_consecutive_failures", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pause_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message_campaigns") as batch:
        batch.drop_column("pause_reason")
        batch.drop_column("max_consecutive_failures")
    for table in reversed(ARCHIVABLE):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("archived_at")
