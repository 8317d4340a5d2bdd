"""Request and response bodies of the message routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from campaignd.api.schemas.common import IdField, NameText, RequestBody, not_blank
from campaignd.domain.contacts import MAX_CONTACTS

Channel = Literal["webhook", "smtp", "telegram", "log"]
RATE = Field(default=None, gt=0, le=6_000_000, description="Messages per minute at most.")
FAILURES_IN_A_ROW = Field(
    default=None,
    ge=0,
    le=1_000_000,
    description="Pause by itself after this many failed deliveries in a row (0: never; "
    "null: the service's CAMPAIGND_MAX_CONSECUTIVE_FAILURES, 50 by default).",
)
DOMAIN_LIMITS = Field(
    default=None,
    description='Messages per minute at most per recipient domain, e.g. {"gmail.com": 600}. '
    "Domains that answer SMTP 421/450/451/452/454 are backed off by themselves.",
)
TRACK_LINKS = Field(
    default=None,
    description="Rewrite each http(s) link in the message to a signed, click-counting redirect.",
)


class AccountCreate(RequestBody):
    name: NameText
    channel: Channel
    config: dict[str, Any] = Field(description="Channel settings; secret fields are write-only.")
    rate_per_minute: float | None = RATE
    domain_limits: dict[str, float] | None = DOMAIN_LIMITS


class AccountPatch(RequestBody):
    name: NameText | None = None
    config: dict[str, Any] | None = Field(default=None, description="Fields to change.")
    rate_per_minute: float | None = RATE
    domain_limits: dict[str, float] | None = DOMAIN_LIMITS


class Account(BaseModel):
    id: int
    name: str
    channel: str
    config: dict[str, Any]
    rate_per_minute: float | None
    archived_at: str | None = None
    domain_limits: dict[str, float] | None = None
    created_at: str
    updated_at: str


class AudienceCreate(RequestBody):
    name: NameText


class Audience(BaseModel):
    id: int
    name: str
    archived_at: str | None = None
    created_at: str
    contact_count: int


class ContactsImport(RequestBody):
    contacts: list[Any] = Field(
        max_length=MAX_CONTACTS,
        description="Objects with external_id, address and optional attributes; bad rows are "
        f"reported, good rows kept. At most {MAX_CONTACTS:,}.",
    )


class Rejected(BaseModel):
    index: int
    reason: str
    external_id: str | None = None


class ImportResult(BaseModel):
    imported: int
    duplicates: int
    rejected: list[Rejected]


class Contact(BaseModel):
    id: int
    external_id: str
    address: str
    attributes: dict[str, Any]


class SuppressionCreate(RequestBody):
    address: str = Field(min_length=1, max_length=500)
    reason: str | None = Field(default=None, max_length=200)


class Suppression(BaseModel):
    address: str
    reason: str | None
    created_at: str


class Variant(RequestBody):
    name: Annotated[str, Field(max_length=100), AfterValidator(not_blank("A variant's name"))]
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    weight: float = Field(default=1.0, gt=0, le=1_000_000)


class ABTest(RequestBody):
    sample_percent: float = Field(
        gt=0, lt=100, description="Share of the audience (in %) that tests the variants."
    )
    metric: Literal["delivery_rate", "click_rate", "conversion_rate", "unsubscribe_rate"] = Field(
        description="The winner has the highest rate (the lowest for unsubscribe_rate)."
    )
    wait_minutes: float = Field(
        default=0,
        ge=0,
        le=10_080,
        description="After the sample is sent, wait this long for results before choosing.",
    )


class EngagementCreate(RequestBody):
    external_id: str = Field(min_length=1, max_length=200)
    kind: Literal["click", "conversion"]


class EngagementRecorded(BaseModel):
    recorded: bool = Field(description="False when this was already noted for the recipient.")


class CampaignCreate(RequestBody):
    name: NameText
    account_id: IdField
    audience_id: IdField
    message: str = Field(min_length=1, max_length=100_000, description="A Jinja template.")
    subject: str | None = Field(default=None, max_length=1000)
    limit: int = Field(ge=0, le=1_000_000_000, description="At most this many recipients.")
    rate_per_minute: float | None = RATE
    shards: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Split the recipients over this many shards, each sent by one node; the "
        "rate and the limit hold for the whole campaign.",
    )
    segment: Any = Field(default=None, description="Conditions over contact attributes.")
    variants: list[Variant] | None = Field(default=None, min_length=1, max_length=20)
    ab_test: ABTest | None = Field(
        default=None, description="Test the variants on a sample, then send the winner."
    )
    start_at: datetime | None = Field(
        default=None, description="Start by itself at this time (ISO-8601; UTC when no offset)."
    )
    send_window: dict[str, Any] | None = Field(
        default=None,
        description='Hours when messages may go out: {"start": "09:00", "end": "18:00", '
        '"timezone": "Europe/Paris"}.',
    )
    max_consecutive_failures: int | None = FAILURES_IN_A_ROW
    track_links: bool | None = TRACK_LINKS


class CampaignPatch(RequestBody):
    """Any field; audience, segment, variants, A/B test and start time only before sending."""

    name: NameText | None = None
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    subject: str | None = Field(default=None, max_length=1000)
    limit: int | None = Field(default=None, ge=0, le=1_000_000_000)
    rate_per_minute: float | None = RATE
    shards: int | None = Field(default=None, ge=1, le=256)
    send_window: dict[str, Any] | None = None
    max_consecutive_failures: int | None = FAILURES_IN_A_ROW
    account_id: IdField | None = None
    audience_id: IdField | None = None
    segment: Any = Field(default=None, description="Conditions over contact attributes.")
    variants: list[Variant] | None = Field(default=None, min_length=1, max_length=20)
    ab_test: ABTest | None = None
    start_at: datetime | None = Field(
        default=None, description="Start by itself at this time; null: start by hand."
    )
    track_links: bool | None = TRACK_LINKS


class Campaign(BaseModel):
    id: int
    name: str
    account_id: int
    audience_id: int
    message: str
    subject: str | None
    limit: int
    rate_per_minute: float | None
    segment: Any
    variants: list[dict[str, Any]] | None
    ab_test: dict[str, Any] | None
    ab_winner: str | None
    ab_sample_done_at: str | None
    start_at: str | None
    send_window: dict[str, Any] | None
    track_links: bool = False
    status: str
    sending: bool
    runner_id: str | None
    shards: int = 1
    nodes: list[dict[str, Any]] = Field(
        default_factory=list, description="Which node sends each shard now."
    )
    sent_count: int
    failed_count: int
    sending_count: int
    total_recipients: int
    last_error: str | None
    pause_reason: str | None = Field(
        default=None, description="Why the service paused the campaign by itself, if it did."
    )
    max_consecutive_failures: int | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="Things the operator should know before (re)starting: an empty "
        "audience, a limit below what was sent.",
    )
    archived_at: str | None = None
    started_at: str | None
    completed_at: str | None
    created_at: str
    updated_at: str


class SeedUpdate(RequestBody):
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    limit: int | None = Field(default=None, ge=0, le=1_000_000_000)
    account_id: IdField | None = None
    session: str | None = Field(default=None, max_length=100_000)


class SeedData(BaseModel):
    message: str
    limit: int
    account_id: int
    session: str
    created_at: str


class SeedCampaignData(BaseModel):
    campaign_id: int
    data: SeedData
    status: str
    sent_count: int
    failed_count: int
    total_recipients: int


class PreviewRequest(RequestBody):
    message: str = Field(min_length=1, max_length=100_000)
    audience_id: IdField | None = None


class Preview(BaseModel):
    rendered: str | None
    contact: dict[str, Any] | None
    error: str | None


class SegmentPreview(RequestBody):
    segment: Any = Field(description='Conditions, e.g. [{"attribute": "tier", "in": ["gold"]}].')


class DeliveryItem(BaseModel):
    external_id: str
    address: str
    status: Literal["sent", "failed", "in_doubt", "retrying"] = Field(
        description="in_doubt: claimed, outcome not written (in flight, or left by a crash); "
        "retrying: a failed delivery queued for one more try."
    )
    variant: str | None
    attempts: int
    error: str | None
    updated_at: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")


class RetryResult(BaseModel):
    campaign_id: int
    requeued: int
    status: str


class TestSendRequest(RequestBody):
    addresses: list[str] = Field(default_factory=list, max_length=50)
    external_ids: list[str] = Field(default_factory=list, max_length=50)
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="Send this template instead of the stored message (to try an edit first).",
    )


class TestSendOutcome(BaseModel):
    address: str
    sent: bool
    error: str | None


class TestSendResult(BaseModel):
    sent: int
    results: list[TestSendOutcome]


class BounceCreate(RequestBody):
    address: str = Field(min_length=1, max_length=500)
    type: Literal["hard", "soft"]
    reason: str | None = Field(default=None, max_length=500)
    campaign_id: IdField | None = Field(
        default=None, description="The campaign that bounced; default: the last one that sent."
    )


class BounceResult(BaseModel):
    address: str
    type: str
    campaign_id: int | None
    soft_bounces_30d: int
    suppressed: bool
    suppression_reason: str | None
