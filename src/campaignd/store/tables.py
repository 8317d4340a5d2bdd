"""SQLAlchemy Core tables: the whole data model of ARCHITECTURE.md."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

Id = BigInteger().with_variant(Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(name, DateTime(timezone=True), nullable=nullable)


traffic_profiles = Table(
    "traffic_profiles",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("requests", JSON, nullable=False),
    Column("headers", JSON, nullable=False, default=dict),
    Column("think_time_ms", Integer, nullable=False, default=0),
    _ts("archived_at"),
    # A journey: ordered steps (then `requests` is empty) and the rows users take data from.
    Column("steps", JSON, nullable=True),
    Column("data", JSON, nullable=True),
    _ts("created_at", False),
    _ts("updated_at", False),
)

traffic_campaigns = Table(
    "traffic_campaigns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("target_url", Text, nullable=False),
    Column("user_profile_ids", JSON, nullable=False),
    Column("requests_per_minute", Float, nullable=False),
    Column("duration_minutes", Float, nullable=False),
    Column("total_users", Integer, nullable=False),
    Column("stages", JSON, nullable=True),
    Column("request_timeout_seconds", Float, nullable=False, default=30.0),
    Column("status", String(20), nullable=False, default="draft"),
    Column("version", Integer, nullable=False, default=1),
    Column("shards", Integer, nullable=False, default=1),
    # Runner bookkeeping: the database is the truth, so a restart knows what was generating.
    Column("generating", Boolean, nullable=False, default=False),
    Column("runner_id", String(64), nullable=True),
    _ts("start_time"),
    Column("active_seconds", Float, nullable=False, default=0.0),
    Column("last_error", Text, nullable=True),
    _ts("archived_at"),
    _ts("created_at", False),
    _ts("updated_at", False),
)

traffic_stats = Table(
    "traffic_stats",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "campaign_id", Id, ForeignKey("traffic_campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("window_start", False),
    Column("window_seconds", Float, nullable=False),
    Column("requests_succeeded", Integer, nullable=False),
    Column("requests_failed", Integer, nullable=False),
    Column("requests_dropped", Integer, nullable=False, default=0),
    Column("target_rpm", Float, nullable=False, default=0.0),
    Column("latency_sum_us", BigInteger, nullable=False, default=0),
    Column("histogram", Text, nullable=True),
    # Latency percentiles of the window, from its histogram when written (NULL: no requests,
    # or a row from before revision 0004 not read yet); p99_ms <= max_ms.
    Column("p50_ms", Float, nullable=True),
    Column("p90_ms", Float, nullable=True),
    Column("p99_ms", Float, nullable=True),
    Column("max_ms", Float, nullable=True),
    # The lease shard and epoch that wrote the window (NULL: written before revision 0008).
    Column("shard", Integer, nullable=True),
    Column("epoch", Integer, nullable=True),
    # Failures by reason in the window (NULL: none, or written before revision 0008): the
    # reasons outlive the runner, and every node's view adds them up.
    Column("errors", JSON, nullable=True),
    # The most users with a request in flight at once in the window (NULL before 0005).
    Column("busy_users", Integer, nullable=True),
    # Per step (or request name): counts and encoded HDR histogram; checks; iterations.
    Column("step_stats", JSON, nullable=True),
    Index("ix_traffic_stats_campaign_window", "campaign_id", "window_start"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("config", JSON, nullable=False),
    # Fernet token of the JSON of the secret fields.
    Column("secrets", Text, nullable=True),
    Column("rate_per_minute", Float, nullable=True),
    _ts("archived_at"),
    # {"gmail.com": 600}: messages per minute at most to addresses at that domain.
    Column("domain_limits", JSON, nullable=True),
    _ts("created_at", False),
    _ts("updated_at", False),
)

audiences = Table(
    "audiences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    _ts("archived_at"),
    _ts("created_at", False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("audience_id", Id, ForeignKey("audiences.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("address", String(500), nullable=False),
    Column("attributes", JSON, nullable=False, default=dict),
    _ts("created_at", False),
    UniqueConstraint("audience_id", "external_id", name="uq_contacts_audience_external"),
    Index("ix_contacts_audience_id", "audience_id", "id"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(500), primary_key=True),
    Column("reason", String(200), nullable=True),
    _ts("created_at", False),
)

message_campaigns = Table(
    "message_campaigns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("audience_id", Id, ForeignKey("audiences.id"), nullable=False),
    Column("message", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("recipient_limit", Integer, nullable=False),
    Column("rate_per_minute", Float, nullable=True),
    Column("segment", JSON, nullable=True),
    Column("variants", JSON, nullable=True),
    Column("ab_test", JSON, nullable=True),
    Column("ab_winner", String(100), nullable=True),
    _ts("ab_sample_done_at"),
    _ts("start_at"),
    Column("send_window", JSON, nullable=True),
    Column("track_links", Boolean, nullable=False, default=False),
    Column("session", Text, nullable=True),
    Column("status", String(20), nullable=False, default="draft"),
    Column("version", Integer, nullable=False, default=1),
    Column("shards", Integer, nullable=False, default=1),
    Column("sending", Boolean, nullable=False, default=False),
    Column("runner_id", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    _ts("started_at"),
    _ts("completed_at"),
    _ts("archived_at"),
    Column("max_consecutive_failures", Integer, nullable=True),
    Column("pause_reason", Text, nullable=True),
    _ts("created_at", False),
    _ts("updated_at", False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "campaign_id", Id, ForeignKey("message_campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("variant", String(100), nullable=True),
    _ts("claimed_at", False),
    _ts("finished_at"),
    Column("last_error", Text, nullable=True),
    # The lease shard and epoch of the claim: a 'sending' row of an epoch that is no longer
    # held is in doubt; one of a live holder's epoch never is.
    Column("shard", Integer, nullable=True),
    Column("epoch", Integer, nullable=True),
    PrimaryKeyConstraint("campaign_id", "contact_id", name="pk_deliveries"),
    Index("ix_deliveries_campaign_state", "campaign_id", "state"),
    Index("ix_deliveries_campaign_state_contact", "campaign_id", "state", "contact_id"),
)

# What recipients did with a message: clicks and conversions reported by the operator's
# systems, unsubscribes from our own link. Once per kind per recipient per campaign.
engagements = Table(
    "engagements",
    metadata,
    Column(
        "campaign_id", Id, ForeignKey("message_campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    _ts("at", False),
    PrimaryKeyConstraint("campaign_id", "contact_id", "kind", name="pk_engagements"),
)

campaign_events = Table(
    "campaign_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("campaign_kind", String(10), nullable=False),
    Column("campaign_id", Id, nullable=False),
    Column("event", String(40), nullable=False),
    Column("from_status", String(20), nullable=True),
    Column("to_status", String(20), nullable=True),
    Column("actor", String(20), nullable=True),
    Column("details", JSON, nullable=True),
    _ts("at", False),
    Index("ix_campaign_events_campaign", "campaign_kind", "campaign_id", "id"),
)

# The cluster (docs/deploy.md): every process that serves or runs campaigns, with heartbeats.
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("engine", Boolean, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    _ts("started_at", False),
    _ts("last_seen", False),
)

# One row per campaign shard (and one `leader` row): who runs it, under which epoch, until
# when. Epochs only grow, so a claim or a write can be fenced on (holder, epoch).
leases = Table(
    "leases",
    metadata,
    Column("kind", String(10), nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("holder", String(200), nullable=True),
    Column("epoch", Integer, nullable=False, default=0),
    _ts("expires_at"),
    Column("finished", Boolean, nullable=False, default=False),
    Column("active_seconds", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("kind", "campaign_id", "shard", name="pk_leases"),
)

# Send slots shared by every node (a GCRA in SQL): the next free instant, in epoch seconds.
rate_slots = Table(
    "rate_slots",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("next_free", Float, nullable=False),
)

# Tracked links: each distinct URL a campaign's messages carried, by id (tokens name the id).
links = Table(
    "links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "campaign_id", Id, ForeignKey("message_campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    Column("url_hash", String(64), nullable=False),
    Column("url", Text, nullable=False),
    UniqueConstraint("campaign_id", "url_hash", name="uq_links_campaign_url"),
)

# Clicks per recipient per link: one row (unique) with a count (total).
clicks = Table(
    "clicks",
    metadata,
    Column(
        "campaign_id", Id, ForeignKey("message_campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("link_id", Id, ForeignKey("links.id", ondelete="CASCADE"), nullable=False),
    Column("variant", String(100), nullable=True),
    Column("clicks", Integer, nullable=False),
    _ts("first_at", False),
    _ts("last_at", False),
    PrimaryKeyConstraint("campaign_id", "link_id", "contact_id", name="pk_clicks"),
)

bounces = Table(
    "bounces",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("address", String(500), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("campaign_id", Id, nullable=True),
    _ts("at", False),
    Index("ix_bounces_address_at", "address", "at"),
    Index("ix_bounces_campaign", "campaign_id", "kind"),
)
