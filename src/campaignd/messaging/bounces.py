"""Bounces: stored, attributed to the campaign that sent, and suppressing when the rule says so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from campaignd.domain import bounces
from campaignd.logs import log_event
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.operations_repo import OperationsRepository


@dataclass(frozen=True, slots=True)
class BounceRecorded:
    address: str
    type: str
    campaign_id: int | None
    soft_bounces_30d: int
    suppressed: bool
    suppression_reason: str | None


class BounceRecorder:
    def __init__(
        self,
        messaging: MessagingRepository,
        operations: OperationsRepository,
        on_suppressed: Callable[[], None],
    ) -> None:
        self.messaging = messaging
        self.operations = operations
        self._on_suppressed = on_suppressed

    async def record(
        self, address: str, kind: str, reason: str | None, campaign_id: int | None = None
    ) -> BounceRecorded:
        """Store one bounce; a hard one (or the third soft one in 30 days) suppresses."""
        if campaign_id is None:
            campaign_id = await self.operations.last_campaign_to(address)
        soft = await self.operations.add_bounce(address, kind, reason, campaign_id)
        why = bounces.suppression_reason(kind, soft, reason)
        if why is not None:
            await self.messaging.suppress(address, why)
            self._on_suppressed()
        log_event(
            "messages.bounce",
            campaign_id=campaign_id,
            kind=kind,
            suppressed=why is not None,
        )
        return BounceRecorded(
            address=address.strip().lower(),
            type=kind,
            campaign_id=campaign_id,
            soft_bounces_30d=soft,
            suppressed=why is not None,
            suppression_reason=why,
        )

    async def from_channel(
        self, address: str, kind: str, reason: str | None, campaign_id: int
    ) -> None:
        """The hook a runner calls when its channel reports a bounce (SMTP 5xx)."""
        await self.record(address, kind, reason, campaign_id)
