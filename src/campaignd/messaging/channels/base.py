"""The one small interface every delivery channel implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One rendered message to one recipient."""

    campaign_id: int
    contact_id: int
    external_id: str
    address: str
    text: str
    subject: str | None = None
    variant: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return f"{self.campaign_id}:{self.external_id}"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message after the channel's own retries."""

    ok: bool
    attempts: int = 1
    error: str | None = None
    # Seconds the far end asked us to wait (429 Retry-After); the sender slows down by it.
    throttled_seconds: float = 0.0


class Channel(Protocol):
    """Sends messages over one account. Implementations retry transient failures themselves."""

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Static facts about a channel kind: which config fields exist and which are secret."""

    kind: str
    required: frozenset[str]
    optional: frozenset[str]
    secret: frozenset[str]
    defaults: dict[str, Any] = field(default_factory=dict)
