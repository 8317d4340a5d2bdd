"""Message campaigns as the API sees them: validate, write rows, read views from the database.

Nothing here calls a runner: an action is a status change (the one compare-and-set), an edit
bumps the row's `version`; the node holding each shard follows within a second (at once in
this process, through NOTIFY elsewhere). Counts come from the ledger.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime
from typing import Any

from campaignd.domain import lifecycle, links, segments, templates
from campaignd.domain.errors import Conflict, IllegalTransition, NotFound, RuleViolation
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus, allowed_targets
from campaignd.engine.guard import TargetGuard
from campaignd.engine.node import Node, wait_until
from campaignd.logs import log_event
from campaignd.messaging.account_channel import account_channel
from campaignd.messaging.bounces import BounceRecorder
from campaignd.messaging.channels.base import Channel, OutgoingMessage
from campaignd.messaging.link_tracking import LinkTracker
from campaignd.messaging.sender import IN_DOUBT_REASON
from campaignd.messaging.template_checker import TemplateChecker
from campaignd.settings import Settings
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.messaging_repo import (
    FAILED,
    SENDING,
    SENT,
    MessagingRepository,
    ViewFigures,
)
from campaignd.store.operations_repo import OperationsRepository
from campaignd.store.secrets import SecretBox

S = CampaignStatus
KIND = CampaignKind.MESSAGE.value
# Another node's import is seen within this long. Each campaign's count expires at its own
# moment within it, so a list of many campaigns never recounts them all in one request.
REACHABLE_CACHE_SECONDS = 30.0
# A stop returns once in-flight sends have finished (the runner's drain is bounded by 5 s).
STOP_WAIT_SECONDS = 7.0
START_WAIT_SECONDS = 1.0
# Operator actions on a message campaign and the status each one asks for.
ACTIONS: dict[str, S] = {
    "start": S.RUNNING,
    "resume": S.RUNNING,
    "stop": S.STOPPED,
    "pause": S.PAUSED,
}


# A list's stale reach counts are recounted this many at once (each holds a connection).
RECOUNTS_AT_ONCE = 4


def campaign_warnings(view: dict[str, Any], audience_size: int) -> list[str]:
    """What an operator should know before starting or resuming, in plain sentences."""
    warnings = []
    if audience_size == 0:
        warnings.append(
            "The audience has no contacts: starting sends nothing. Import contacts first."
        )
    elif view["total_recipients"] == 0 and view["sent_count"] == 0 and view["limit"] > 0:
        warnings.append(
            "Nobody in the audience can get this message: every contact is suppressed, "
            "outside the segment, or already handled."
        )
    if view["limit"] < view["sent_count"]:
        warnings.append(
            f"The limit ({view['limit']:,}) is below what was already sent "
            f"({view['sent_count']:,}): nobody else will get the message."
        )
    return warnings


class MessageApp:
    def __init__(
        self,
        repo: MessagingRepository,
        settings: Settings,
        guard: TargetGuard,
        templates: TemplateChecker | None = None,
        node: Node | None = None,
    ) -> None:
        self.repo = repo
        self.cluster: ClusterRepository = repo.cluster
        self.settings = settings
        self.guard = guard
        self.templates = templates or TemplateChecker()
        self.node = node
        self.box: SecretBox | None = None
        self.operations = OperationsRepository(repo.db)
        self.bounces = BounceRecorder(repo, self.operations, self.forget_reachable)
        self._reachable_cache: dict[int, tuple[float, int, int]] = {}
        self._lock = asyncio.Lock()

    async def _changed(self, campaign_id: int) -> None:
        """Wake this node and (NOTIFY) every other one: campaign_id's row changed."""
        if self.node is not None:
            self.node.wake()
        await self.repo.db.notify(f"message:{campaign_id}")

    async def act(self, campaign_id: int, action: str) -> S:
        """start / stop / resume / pause: one status change, then the nodes follow."""
        requested = ACTIONS[action]
        async with self._lock:
            campaign = await self.repo.get_campaign(campaign_id)
            if action == "start" and campaign["status"] not in (S.DRAFT, S.SCHEDULED):
                raise IllegalTransition(
                    campaign["status"],
                    requested.value,
                    [s.value for s in allowed_targets(CampaignKind.MESSAGE, S(campaign["status"]))],
                    campaign_id=campaign_id,
                    hint="start is for a draft; use resume for a campaign that has run before",
                )
            # Running again clears the reason the service gave for pausing by itself.
            extra = {"pause_reason": None} if requested is S.RUNNING else {}
            previous = await self.repo.transition(campaign_id, requested, Actor.OPERATOR, **extra)
            if requested is S.RUNNING:
                await self.cluster.reset(KIND, campaign_id, fresh=False)
        log_event(
            "messages.status_changed",
            campaign_id=campaign_id,
            action=action,
            previous_status=previous.value,
            status=requested.value,
        )
        await self._changed(campaign_id)
        if requested is S.RUNNING and self.node is not None:
            await wait_until(lambda: self._held(campaign_id, True), START_WAIT_SECONDS)
        elif requested is not S.RUNNING:
            await wait_until(lambda: self._held(campaign_id, False), STOP_WAIT_SECONDS)
        return previous

    async def _held(self, campaign_id: int, held: bool) -> bool:
        holders = await self.cluster.holders(KIND, [campaign_id])
        return bool(holders.get(campaign_id)) == held

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        row = await self.repo.create_campaign(data)
        if data.get("start_at") is not None:
            await self.repo.transition(row["id"], S.SCHEDULED, Actor.SYSTEM)
        return row

    async def sample_contact(self, audience_id: int) -> dict[str, Any] | None:
        rows = await self.repo.list_contacts(audience_id, 0, 1)
        return rows[0] if rows else None

    async def edit(
        self,
        campaign_id: int,
        changes: dict[str, Any],
        campaign: dict[str, Any] | None = None,
        samples: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store an edit; a sending campaign uses it for every message not yet sent.

        `campaign` is its row and `samples` its audience's first contact ([] if none) when
        the caller has just read them (saves reading them again).
        """
        if campaign is None or campaign["id"] != campaign_id:
            campaign = await self.repo.get_campaign(campaign_id)
        texts = [f for f in ("message", "subject") if changes.get(f) is not None]
        sample = None
        if texts and samples is not None and "audience_id" not in changes:
            sample = samples[0] if samples else None
        elif texts:
            sample = await self.sample_contact(changes.get("audience_id", campaign["audience_id"]))
        for field in texts:
            await self.templates.check(changes[field], field, sample)
        for field in ("account_id", "shards"):
            if field in changes and (
                campaign["status"] == S.RUNNING or await self._held(campaign_id, True)
            ):
                what = "the account" if field == "account_id" else field
                raise Conflict(
                    f"Cannot change {what} while the campaign is sending; stop it first.",
                    campaign_id=campaign_id,
                    field=field,
                )
        if "account_id" in changes:
            await self.repo.get_account(changes["account_id"])
        audit = {
            k: ("***" if k == "session" else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in changes.items()
        }
        if "session" in changes and self.box is not None:
            changes = {**changes, "session": self.box.seal({"session": changes["session"]})}
        updated = await self.repo.update_campaign(
            campaign_id, changes, audit, notify=f"message:{campaign_id}"
        )
        if self.node is not None:
            self.node.wake()
        if "start_at" in changes:
            updated = await self._follow_schedule(updated)
            await self._changed(campaign_id)
        return updated

    async def _follow_schedule(self, campaign: dict[str, Any]) -> dict[str, Any]:
        """A draft given a start time waits for it; a scheduled one without one is a draft."""
        status = S(campaign["status"])
        if campaign.get("start_at") is not None and status is S.DRAFT:
            await self.repo.transition(campaign["id"], S.SCHEDULED, Actor.SYSTEM)
        elif campaign.get("start_at") is None and status is S.SCHEDULED:
            await self.repo.transition(campaign["id"], S.DRAFT, Actor.OPERATOR)
        else:
            return campaign
        return await self.repo.get_campaign(campaign["id"])

    async def account_edited(self, account: dict[str, Any]) -> None:
        """The nodes sending for this account read it again (domain limits, rate) at once."""
        for campaign_id in await self.repo.touch_campaigns(account_id=account["id"]):
            await self._changed(campaign_id)

    async def delete(self, campaign_id: int) -> None:
        campaign = await self.repo.get_campaign(campaign_id)
        lifecycle.refuse_active_campaign(
            campaign_id, campaign["name"], campaign["status"], "delete"
        )
        if await self._held(campaign_id, True):  # stopped, a node still finishing its sends
            raise Conflict(
                f"Campaign '{campaign['name']}' is still finishing; delete it in a moment.",
                campaign_id=campaign_id,
            )
        await self.repo.delete_campaign(campaign_id)
        await self.cluster.forget_campaign(KIND, campaign_id)

    async def check_follow_up(self, audience_id: int, conditions: list[dict[str, Any]]) -> None:
        """A follow-up names an existing campaign sent to the same audience."""
        for other_id in segments.referenced_campaigns(conditions):
            try:
                other = await self.repo.get_campaign(other_id)
            except NotFound:
                raise RuleViolation(
                    f"The segment follows up campaign {other_id}, which does not exist.",
                    field="segment",
                    campaign_id=other_id,
                ) from None
            if other["audience_id"] != audience_id:
                raise RuleViolation(
                    f"Campaign {other_id} went to audience {other['audience_id']}; a follow-up "
                    f"must use the same audience ({audience_id}).",
                    field="segment",
                    campaign_id=other_id,
                )

    async def retry_failed(self, campaign_id: int) -> dict[str, Any]:
        """Give every failed recipient one more try at the campaign's rate.

        A sending campaign picks them up at once (the edit's version bump makes its nodes look
        through the audience again); a completed one runs again; a stopped or paused one sends
        them when it is resumed. Failures settled "in doubt" (SMTP after a crash) may have
        been delivered, so they are not retried.
        """
        async with self._lock:
            campaign = await self.repo.get_campaign(campaign_id)
            requeued = await self.operations.requeue_failed(campaign_id, IN_DOUBT_REASON)
            self.forget_reachable()
            status = S(campaign["status"])
            if requeued and status is S.RUNNING:
                await self.cluster.reset(KIND, campaign_id, fresh=False)  # finished shards too
                await self.repo.touch_campaigns([campaign_id])
            elif requeued and status is S.COMPLETED:
                await self.repo.transition(
                    campaign_id, S.RUNNING, Actor.OPERATOR, pause_reason=None
                )
                await self.cluster.reset(KIND, campaign_id, fresh=False)
                status = S.RUNNING
        await self._changed(campaign_id)
        log_event("messages.retry_failed", campaign_id=campaign_id, requeued=requeued)
        return {"campaign_id": campaign_id, "requeued": requeued, "status": status.value}

    async def send_test(
        self,
        campaign_id: int,
        *,
        addresses: list[str],
        external_ids: list[str],
        message: str | None = None,
    ) -> dict[str, Any]:
        """Send the campaign's message now to these recipients, as a test: no ledger, no counts.

        A known contact (by external id, or by address within the audience) gets the message
        rendered with their data; any other address gets it with the audience's first contact
        as sample data. Suppressed addresses are skipped.
        """
        campaign = await self.repo.get_campaign(campaign_id)
        account = await self.repo.get_account(campaign["account_id"])
        template = message if message is not None else campaign["message"]
        sample = await self.sample_contact(campaign["audience_id"])
        await self.templates.check(template, "message", sample)
        known = await self.operations.audience_contacts(
            campaign["audience_id"], external_ids=external_ids, addresses=addresses
        )
        missing = sorted(set(external_ids) - {c["external_id"] for c in known})
        if missing:
            raise RuleViolation(
                f"The campaign's audience has no contact '{missing[0]}'.",
                field="external_ids",
                external_ids=missing,
            )
        by_address = {c["address"].strip().lower(): c for c in known}
        recipients = [c for c in known if c["external_id"] in set(external_ids)]
        for address in addresses:
            contact = by_address.get(address.strip().lower())
            if contact is None:
                attributes = dict((sample or {}).get("attributes") or {})
                contact = {
                    "id": links.TEST_CONTACT,
                    "external_id": "test",
                    "address": address,
                    "attributes": attributes,
                }
            if contact not in recipients:
                recipients.append(contact)
        suppressed = await self.operations.suppressed_among([c["address"] for c in recipients])
        channel = account_channel(account, self.box, self.guard, self.settings)
        tracker = self._link_tracker(campaign_id) if campaign.get("track_links") else None
        test_id = uuid.uuid4().hex[:12]
        results: list[dict[str, Any]] = []
        try:
            for contact in recipients:
                address = contact["address"]
                if address.strip().lower() in suppressed:
                    results.append({"address": address, "sent": False, "error": "suppressed"})
                    continue
                results.append(
                    await self._send_one_test(
                        campaign, channel, tracker, template, contact, test_id
                    )
                )
        finally:
            await channel.close()
        sent = sum(1 for r in results if r["sent"])
        log_event("messages.test_sent", campaign_id=campaign_id, sent=sent, tried=len(results))
        return {"sent": sent, "results": results}

    async def _send_one_test(
        self,
        campaign: dict[str, Any],
        channel: Channel,
        tracker: LinkTracker | None,
        template: str,
        contact: dict[str, Any],
        test_id: str,
    ) -> dict[str, Any]:
        # Links in a test lead where the real ones do, and count nothing (links.TEST_CONTACT).
        attributes = {
            **(contact.get("attributes") or {}),
            "unsubscribe_url": f"{self.settings.public_base()}/unsubscribe/test",
        }
        data = {**contact, "attributes": attributes}
        try:
            text = templates.render(template, data)
            subject = (
                templates.render(campaign["subject"], data) if campaign.get("subject") else None
            )
        except Exception as exc:
            return {"address": contact["address"], "sent": False, "error": f"template: {exc}"}
        if tracker is not None:
            text = await tracker.rewrite(text, links.TEST_CONTACT, None)
        result = await channel.send(
            OutgoingMessage(
                campaign_id=campaign["id"],
                contact_id=links.TEST_CONTACT,
                external_id=contact["external_id"],
                address=contact["address"],
                text=text,
                subject=subject,
                test_id=test_id,
            )
        )
        return {"address": contact["address"], "sent": result.ok, "error": result.error}

    def _link_tracker(self, campaign_id: int) -> LinkTracker | None:
        if self.box is None:
            return None
        return LinkTracker(campaign_id, self.operations, self.settings.public_base(), self.box.sign)

    async def view(self, campaign_id: int) -> dict[str, Any]:
        """One campaign's view: its row and its figures read at once (one wait, not two)."""
        row, figures = await asyncio.gather(
            self.repo.get_campaign(campaign_id), self.repo.view_figures([campaign_id])
        )
        return (await self.describe([row], figures))[0]

    async def describe(
        self, rows: list[dict[str, Any]], figures: ViewFigures | None = None
    ) -> list[dict[str, Any]]:
        """Campaign rows with their ledger counts, recipient totals and who sends them.

        A row whose stored segment cannot be used (written before its operands were checked)
        is shown, with the problem as its last_error and no recipients, never an error.
        """
        if figures is None:  # counts, holders and audience sizes in one round trip
            figures = await self.repo.view_figures([r["id"] for r in rows])
        counts, audience_sizes = figures.counts, figures.audience_sizes
        now = asyncio.get_running_loop().time()
        stale = [r for r in rows if self._reachable_cache.get(r["id"], (0.0,))[0] <= now]
        if len(stale) > 1:  # recounted a few side by side, not one wait after another
            turns = asyncio.Semaphore(RECOUNTS_AT_ONCE)

            async def recount(row: dict[str, Any]) -> None:
                async with turns:
                    await self._reachable(row, counts[row["id"]])

            await asyncio.gather(*(recount(r) for r in stale))
        views = []
        for row in rows:
            c = counts[row["id"]]
            held = figures.holders.get(row["id"], [])
            view = dict(row)
            view.pop("session", None)
            view["limit"] = view.pop("recipient_limit")
            view["sending"] = bool(held)
            view["nodes"] = [{"shard": shard, "node": holder} for shard, holder in held]
            view["sent_count"] = c[SENT]
            view["failed_count"] = c[FAILED]
            view["sending_count"] = c[SENDING]
            view["total_recipients"] = min(view["limit"], await self._reachable(row, c))
            problem = segments.stored_problem(row.get("segment"))
            if problem is not None and not row.get("last_error"):
                view["last_error"] = problem
            audience_size = audience_sizes.get(row["audience_id"], 0)
            view["warnings"] = campaign_warnings(view, audience_size)
            views.append(view)
        return views

    async def _reachable(self, row: dict[str, Any], counts: dict[str, int]) -> int:
        """Contacts that have or can get the message: sent + in flight + eligible.

        Sending moves a contact from eligible to in flight to sent, which leaves the sum
        alone; only a failure lowers it. So the expensive eligible count is cached together
        with the failures at that moment, and the ledger's failures since are subtracted:
        exact while cached. Imports and suppressions drop the cache (forget_reachable).
        """
        now = asyncio.get_running_loop().time()
        cached = self._reachable_cache.get(row["id"])
        if cached is None or cached[0] <= now:
            eligible = await self._count_eligible(row)
            reachable = counts[SENT] + counts[SENDING] + eligible
            expires = now + REACHABLE_CACHE_SECONDS * random.uniform(0.5, 1.0)
            cached = (expires, reachable, counts[FAILED])
            self._reachable_cache[row["id"]] = cached
        _, reachable, failed_then = cached
        return max(0, reachable - (counts[FAILED] - failed_then))

    def forget_reachable(self) -> None:
        """Contacts were added or (un)suppressed: recount every campaign's reach."""
        self._reachable_cache.clear()

    async def _count_eligible(self, row: dict[str, Any]) -> int:
        """Contacts not yet handled, not suppressed and in the segment (none if it is unusable)."""
        if segments.stored_problem(row.get("segment")) is not None:
            return 0
        conditions = segments.validate(row.get("segment"))
        follow_up = segments.engagement_conditions(conditions)
        if len(follow_up) == len(conditions):
            return await self.repo.count_eligible(row["id"], row["audience_id"], follow_up)
        value, after = 0, 0
        while True:
            page = await self.repo.candidates(row["id"], row["audience_id"], after, 5000, follow_up)
            if not page:
                return value
            value += sum(1 for contact in page if segments.matches(conditions, contact))
            after = page[-1]["id"]

    async def shutdown(self) -> None:
        await self.templates.shutdown()
