"""Message campaigns as the API sees them: validate, write rows, read views from the database.

Nothing here calls a runner: an action is a status change (the one compare-and-set), an edit
bumps the row's `version`; the node holding each shard follows within a second (at once in
this process, through NOTIFY elsewhere). Counts come from the ledger.
"""

from __future__ import annotations

import asyncio
from typing import Any

from campaignd.domain import segments
from campaignd.domain.errors import Conflict, IllegalTransition
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus, allowed_targets
from campaignd.engine.node import Node, wait_until
from campaignd.logs import log_event
from campaignd.messaging.template_checker import TemplateChecker
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.messaging_repo import FAILED, SENDING, SENT, MessagingRepository
from campaignd.store.secrets import SecretBox

S = CampaignStatus
KIND = CampaignKind.MESSAGE.value
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


class MessageApp:
    def __init__(
        self,
        repo: MessagingRepository,
        templates: TemplateChecker | None = None,
        node: Node | None = None,
    ) -> None:
        self.repo = repo
        self.cluster: ClusterRepository = repo.cluster
        self.templates = templates or TemplateChecker()
        self.node = node
        self.box: SecretBox | None = None
        self._reachable_cache: dict[int, tuple[float, int, int]] = {}
        self._lock = asyncio.Lock()

    async def _changed(self, campaign_id: int) -> None:
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
            previous = await self.repo.transition(campaign_id, requested, Actor.OPERATOR)
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

    async def edit(self, campaign_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Store an edit; a sending campaign uses it for every message not yet sent."""
        campaign = await self.repo.get_campaign(campaign_id)
        sample = await self.sample_contact(campaign["audience_id"])
        for field in ("message", "subject"):
            if changes.get(field) is not None:
                await self.templates.check(changes[field], field, sample)
        sending = campaign["status"] == S.RUNNING or await self._held(campaign_id, True)
        for field in ("account_id", "shards"):
            if field in changes and sending:
                raise Conflict(
                    f"Cannot change {field} while the campaign is sending; stop it first.",
                    campaign_id=campaign_id,
                    field=field,
                )
        if "account_id" in changes:
            await self.repo.get_account(changes["account_id"])
        audit = {k: ("***" if k == "session" else v) for k, v in changes.items()}
        if "session" in changes and self.box is not None:
            changes = {**changes, "session": self.box.seal({"session": changes["session"]})}
        updated = await self.repo.update_campaign(campaign_id, changes, audit)
        await self._changed(campaign_id)
        return updated

    async def delete(self, campaign_id: int) -> None:
        campaign = await self.repo.get_campaign(campaign_id)
        if campaign["status"] == S.RUNNING or await self._held(campaign_id, True):
            raise Conflict(
                f"Campaign {campaign_id} is sending; stop it before deleting it.",
                campaign_id=campaign_id,
            )
        await self.repo.delete_campaign(campaign_id)
        await self.cluster.forget_campaign(KIND, campaign_id)

    async def describe(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Campaign rows with their ledger counts, recipient totals and who sends them.

        A row whose stored segment cannot be used (written before its operands were checked)
        is shown, with the problem as its last_error and no recipients, never an error.
        """
        ids = [r["id"] for r in rows]
        counts = await self.repo.counts(ids)
        holders = await self.cluster.holders(KIND, ids)
        views = []
        for row in rows:
            c = counts[row["id"]]
            held = holders.get(row["id"], [])
            view = {
                **{k: v for k, v in row.items() if k not in ("session", "recipient_limit")},
                "limit": row["recipient_limit"],
                "sending": bool(held),
                "nodes": [{"shard": x.shard, "node": x.holder} for x in held],
                "sent_count": c[SENT],
                "failed_count": c[FAILED],
                "sending_count": c[SENDING],
                "total_recipients": min(row["recipient_limit"], await self._reachable(row, c)),
            }
            problem = segments.stored_problem(row.get("segment"))
            if problem is not None and not row.get("last_error"):
                view["last_error"] = problem
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
            cached = (now + REACHABLE_CACHE_SECONDS, reachable, counts[FAILED])
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
        if not conditions:
            return await self.repo.count_eligible(row["id"], row["audience_id"])
        value, after = 0, 0
        while True:
            page = await self.repo.candidates(row["id"], row["audience_id"], after, 5000)
            if not page:
                return value
            value += sum(1 for contact in page if segments.matches(conditions, contact))
            after = page[-1]["id"]

    async def shutdown(self) -> None:
        await self.templates.shutdown()
