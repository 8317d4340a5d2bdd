"""Request and response bodies of the message routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from campaignd.api.schemas.common import IdField, RequestBody
from campaignd.domain.contacts import MAX_CONTACTS

Channel = Literal["webhook", "smtp", "telegram", "log"]
Name = Field(min_length=1, max_length=200)
RATE = Field(default=None, gt=0, le=6_000_000, description="Messages per minute at most.")


class AccountCreate(RequestBody):
    name: str = Name
    channel: Channel
    config: dict[str, Any] = Field(description="Channel settings; secret fields are write-only.")
    rate_per_minute: float | None = RATE


class AccountPatch(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(default=None, description="Fields to change.")
    rate_per_minute: float | None = RATE


class Account(BaseModel):
    id: int
    name: str
    channel: str
    config: dict[str, Any]
    rate_per_minute: float | None
    created_at: str
    updated_at: str


class AudienceCreate(RequestBody):
    name: str = Name


class Audience(BaseModel):
    id: int
    name: str
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
    name: str = Field(min_length=1, max_length=100)
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
    name: str = Name
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


class CampaignPatch(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    subject: str | None = Field(default=None, max_length=1000)
    limit: int | None = Field(default=None, ge=0, le=1_000_000_000)
    rate_per_minute: float | None = RATE
    shards: int | None = Field(default=None, ge=1, le=256)
    send_window: dict[str, Any] | None = None


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
