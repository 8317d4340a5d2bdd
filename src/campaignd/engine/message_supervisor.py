"""Runs, stops and recovers message-campaign runners; owns their status changes and edits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from campaignd.domain import lifecycle, segments
from campaignd.domain.errors import CampaignError, Conflict, IllegalTransition
from campaignd.domain.pacing import Pacer
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus, allowed_targets
from campaignd.engine.guard import TargetGuard
from campaignd.logs import log_event
from campaignd.messaging.channels import build_channel
from campaignd.messaging.ledger_writer import LedgerWriter
from campaignd.messaging.sender import SHUTDOWN, MessageRunner
from campaignd.messaging.template_checker import TemplateChecker
from campaignd.settings import Settings
from campaignd.store.messaging_repo import FAILED, SENDING, SENT, MessagingRepository
from campaignd.store.outage import is_unavailable
from campaignd.store.secrets import SecretBox

S = CampaignStatus
REACHABLE_CACHE_SECONDS = 30.0
SCHEDULER_SECONDS = 1.0
# Operator actions on a message campaign and the status each one asks for.
ACTIONS: dict[str, S] = {
    "start": S.RUNNING,
    "resume": S.RUNNING,
    "stop": S.STOPPED,
    "pause": S.PAUSED,
}


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


class MessageSupervisor:
    """One runner per sending campaign; pacers outlive runners so a resume never bursts."""

    def __init__(
        self,
        repo: MessagingRepository,
        settings: Settings,
        guard: TargetGuard,
        box: SecretBox | None = None,
        templates: TemplateChecker | None = None,
    ) -> None:
        self.repo = repo
        self.templates = templates or TemplateChecker()
        self.settings = settings
        self.guard = guard
        self.box = box
        self.runners: dict[int, MessageRunner] = {}
        self._campaign_pacers: dict[int, Pacer] = {}
        self._account_pacers: dict[int, Pacer] = {}
        self._ledger = LedgerWriter(repo)
        self._lock = asyncio.Lock()
        self._reachable_cache: dict[int, tuple[float, int, int]] = {}
        self._scheduler_task: asyncio.Task[None] | None = None

    def runner(self, campaign_id: int) -> MessageRunner | None:
        runner = self.runners.get(campaign_id)
        return runner if runner is not None and runner.active else None

    async def act(self, campaign_id: int, action: str) -> S:
        """start / stop / resume / pause: one status change, then the runner follows."""
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
            log_event(
                "messages.status_changed",
                campaign_id=campaign_id,
                action=action,
                previous_status=previous.value,
                status=requested.value,
            )
            runner = self.runner(campaign_id)
            if requested is S.RUNNING and runner is None:
                await self._start_runner(await self.repo.get_campaign(campaign_id))
            elif requested in (S.STOPPED, S.PAUSED) and runner is not None:
                await runner.stop(requested.value)
            return previous

    async def _start_runner(self, campaign: dict[str, Any]) -> MessageRunner:
        account = await self.repo.get_account(campaign["account_id"])
        config = {**account["config"], **(self.box.open(account["secrets"]) if self.box else {})}
        channel = build_channel(
            account["channel"],
            config,
            url_guard=lambda url: self.guard.check(url, field="config.url"),
            host_guard=lambda host, port: self.guard.check_host(host, port),
            log_dir=self.settings.channel_log_dir(),
        )
        account_pacer = self._account_pacers.setdefault(
            account["id"], Pacer(account.get("rate_per_minute"))
        )
        account_pacer.set_rate(account.get("rate_per_minute"))
        runner = MessageRunner(
            campaign,
            account["channel"],
            channel,
            self.repo,
            campaign_pacer=self._campaign_pacers.setdefault(campaign["id"], Pacer(None)),
            account_pacer=account_pacer,
            concurrency=self.settings.send_concurrency,
            claim_batch=self.settings.claim_batch,
            segment=campaign.get("segment"),
            on_exit=self._on_exit,
            unsubscribe_url=self.unsubscribe_url if self.box is not None else None,
            ledger=self._ledger,
            max_consecutive_failures=self.settings.max_consecutive_failures,
        )
        self.runners[campaign["id"]] = runner
        await runner.start()
        return runner

    def unsubscribe_url(self, campaign_id: int, contact_id: int) -> str:
        """A link the recipient can follow (or POST to, RFC 8058) to stop all messages."""
        assert self.box is not None
        token = self.box.sign(f"unsubscribe:{campaign_id}:{contact_id}")
        base = self.settings.public_url.rstrip("/")
        return f"{base}/unsubscribe/{campaign_id}/{contact_id}/{token}"

    def _on_exit(self, runner: MessageRunner) -> None:
        if self.runners.get(runner.campaign_id) is runner:
            del self.runners[runner.campaign_id]

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
        if "account_id" in changes and self.runner(campaign_id) is not None:
            raise Conflict(
                "Cannot change the account while the campaign is sending; stop it first.",
                campaign_id=campaign_id,
                field="account_id",
            )
        if "account_id" in changes:
            await self.repo.get_account(changes["account_id"])
        audit = {
            k: ("***" if k == "session" else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in changes.items()
        }
        if "session" in changes and self.box is not None:
            changes = {**changes, "session": self.box.seal({"session": changes["session"]})}
        updated = await self.repo.update_campaign(campaign_id, changes, audit)
        if "start_at" in changes:
            updated = await self._follow_schedule(updated)
        runner = self.runner(campaign_id)
        if runner is not None:
            runner.apply_edit(updated)
            log_event(
                "messages.edited",
                campaign_id=campaign_id,
                runner_id=runner.runner_id,
                fields=sorted(audit),
            )
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

    async def delete(self, campaign_id: int) -> None:
        campaign = await self.repo.get_campaign(campaign_id)
        lifecycle.refuse_active_campaign(
            campaign_id, campaign["name"], campaign["status"], "delete"
        )
        if self.runner(campaign_id) is not None:  # stopped, still finishing its last sends
            raise Conflict(
                f"Campaign '{campaign['name']}' is still finishing; delete it in a moment.",
                campaign_id=campaign_id,
            )
        await self.repo.delete_campaign(campaign_id)

    async def describe(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Campaign rows with their ledger counts and recipient totals.

        A row whose stored segment cannot be used (written before its operands were checked)
        is shown, with the problem as its last_error and no recipients, never an error.
        """
        counts = await self.repo.counts([r["id"] for r in rows])
        audience_sizes = await self.repo.contact_counts(r["audience_id"] for r in rows)
        views = []
        for row in rows:
            c = counts[row["id"]]
            view = {
                **{k: v for k, v in row.items() if k not in ("session", "recipient_limit")},
                "limit": row["recipient_limit"],
                "sent_count": c[SENT],
                "failed_count": c[FAILED],
                "sending_count": c[SENDING],
                "total_recipients": min(row["recipient_limit"], await self._reachable(row, c)),
            }
            problem = segments.stored_problem(row.get("segment"))
            if problem is not None and not row.get("last_error"):
                view["last_error"] = problem
            view["warnings"] = campaign_warnings(view, audience_sizes[row["audience_id"]])
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

    async def schedule(self, campaign_id: int) -> None:
        """A campaign created with `start_at` waits in `scheduled` until then."""
        await self.repo.transition(campaign_id, S.SCHEDULED, Actor.SYSTEM)

    async def start_due(self) -> list[int]:
        """Start every scheduled campaign whose time has come (also after a restart)."""
        started = []
        for campaign in await self.repo.due_campaigns():
            async with self._lock:
                try:
                    await self.repo.transition(campaign["id"], S.RUNNING, Actor.SYSTEM)
                except CampaignError:
                    continue  # an operator moved it meanwhile
                runner = await self._start_runner(await self.repo.get_campaign(campaign["id"]))
            started.append(campaign["id"])
            log_event(
                "messages.schedule_started", campaign_id=campaign["id"], runner_id=runner.runner_id
            )
        return started

    async def _scheduler(self) -> None:
        while True:
            try:
                await self.start_due()
            except Exception as exc:
                if not is_unavailable(exc):  # an outage is retried quietly on the next tick
                    log_event("messages.scheduler_failed", level=logging.ERROR, exc_info=True)
            await asyncio.sleep(SCHEDULER_SECONDS)

    async def recover(self) -> list[int]:
        """After a restart, resume every campaign that was running when the process died."""
        resumed: list[int] = []
        for campaign in await self.repo.sending_campaigns():
            if campaign["status"] == S.RUNNING and self.settings.recover_on_start:
                runner = await self._start_runner(campaign)
                resumed.append(campaign["id"])
                log_event(
                    "messages.recovered", campaign_id=campaign["id"], runner_id=runner.runner_id
                )
            elif campaign["sending"]:
                await self.repo.set_sending(campaign["id"], None)
        self._scheduler_task = asyncio.create_task(self._scheduler(), name="message-scheduler")
        return resumed

    async def shutdown(self) -> None:
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler_task
        runners = list(self.runners.values())
        await asyncio.gather(*(r.stop(SHUTDOWN) for r in runners), return_exceptions=True)
        await self.templates.shutdown()
