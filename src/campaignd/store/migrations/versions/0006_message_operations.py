"""Message operations: tracked links and clicks, bounces, per-domain limits, the delivery log

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    with op.batch_alter_table("message_campaigns") as batch:
        batch.add_column(
            sa.Column("track_links", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("domain_limits", sa.JSON(), nullable=True))
    # The delivery log pages by contact within one state.
    op.create_index(
        "ix_deliveries_campaign_state_contact",
        "deliveries",
        ["campaign_id", "state", "contact_id"],
    )
    op.create_table(
        "links",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column(
            "campaign_id",
            id_type,
            sa.ForeignKey("message_campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.UniqueConstraint("campaign_id", "url_hash", name="uq_links_campaign_url"),
    )
    op.create_table(
        "clicks",
        sa.Column(
            "campaign_id",
            id_type,
            sa.ForeignKey("message_campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id", id_type, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "link_id", id_type, sa.ForeignKey("links.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("variant", sa.String(100), nullable=True),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "link_id", "contact_id", name="pk_clicks"),
    )
    op.create_table(
        "bounces",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("campaign_id", id_type, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bounces_address_at", "bounces", ["address", "at"])
    op.create_index("ix_bounces_campaign", "bounces", ["campaign_id", "kind"])


def downgrade() -> None:
    op.drop_table("bounces")
    op.drop_table("clicks")
    op.drop_table("links")
    op.drop_index("ix_deliveries_campaign_state_contact", table_name="deliveries")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("domain_limits")
    with op.batch_alter_table("message_campaigns") as batch:
        batch.drop_column("track_links")
