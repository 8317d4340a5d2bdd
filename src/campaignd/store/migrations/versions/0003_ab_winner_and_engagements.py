"""A/B winner mode: the decided winner on the campaign, and recipients' engagements

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message_campaigns") as batch:
        batch.add_column(sa.Column("ab_winner", sa.String(100), nullable=True))
        batch.add_column(sa.Column("ab_sample_done_at", sa.DateTime(timezone=True), nullable=True))
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "engagements",
        sa.Column(
            "campaign_id",
            id_type,
            sa.ForeignKey("message_campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id", id_type, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "contact_id", "kind", name="pk_engagements"),
    )


def downgrade() -> None:
    op.drop_table("engagements")
    with op.batch_alter_table("message_campaigns") as batch:
        batch.drop_column("ab_sample_done_at")
        batch.drop_column("ab_winner")
