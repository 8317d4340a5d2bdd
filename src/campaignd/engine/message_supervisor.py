"""This node's message runners: one per held shard, started, followed and stopped by the node.

Pacers outlive runners so a resume never bursts. On PostgreSQL they are shared send slots
(messaging/shared_pacer.py), so a campaign's and an account's rates hold for the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from campaignd.domain.errors import CampaignError
from campaignd.domain.leases import HeldLease
from campaignd.domain.pacing import Pacer
from campaignd.domain.statuses import Actor, CampaignKind, CampaignStatus
from campaignd.engine.guard import TargetGuard
from campaignd.logs import log_event
from campaignd.messaging.channels import build_channel
from campaignd.messaging.ledger_writer import LedgerWriter
from campaignd.messaging.sender import SHUTDOWN, AnyPacer, MessageRunner
from campaignd.messaging.shared_pacer import SharedPacer
from campaignd.settings import Settings
from campaignd.store.cluster_repo import LeaseLost
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.secrets import SecretBox

S = CampaignStatus
ShardKey = tuple[int, int]  # (campaign id, shard)


class MessageSupervisor:
    """The message runners of this node, keyed by (campaign, shard)."""

    def __init__(
        self,
        repo: MessagingRepository,
        settings: Settings,
        guard: TargetGuard,
        box: SecretBox | None = None,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.guard = guard
        self.box = box
        self.runners: dict[ShardKey, MessageRunner] = {}
        self._pacers: dict[str, AnyPacer] = {}
        self._ledger = LedgerWriter(repo)
        self.on_change: Callable[[], None] = lambda: None

    def runner(self, campaign_id: int) -> MessageRunner | None:
        for (cid, _shard), runner in sorted(self.runners.items()):
            if cid == campaign_id and runner.active:
                return runner
        return None

    def running(self, campaign_id: int, shard: int) -> bool:
        runner = self.runners.get((campaign_id, shard))
        return runner is not None and runner.active

    def _pacer(self, key: str, rate_per_minute: float | None) -> AnyPacer:
        pacer = self._pacers.get(key)
        if pacer is None:
            if self.repo.db.is_postgres:
                pacer = SharedPacer(self.repo.cluster, key, rate_per_minute)
            else:
                pacer = Pacer(rate_per_minute)
            self._pacers[key] = pacer
        return pacer

    async def start_shard(self, campaign: dict[str, Any], lease: HeldLease) -> MessageRunner:
        account = await self.repo.get_account(campaign["account_id"])
        config = {**account["config"], **(self.box.open(account["secrets"]) if self.box else {})}
        channel = build_channel(
            account["channel"],
            config,
            url_guard=lambda url: self.guard.check(url, field="config.url"),
            host_guard=lambda host, port: self.guard.check_host(host, port),
            log_dir=self.settings.channel_log_dir(),
        )
        account_pacer = self._pacer(f"account:{account['id']}", account.get("rate_per_minute"))
        account_pacer.set_rate(account.get("rate_per_minute"))
        runner = MessageRunner(
            campaign,
            account["channel"],
            channel,
            self.repo,
            campaign_pacer=self._pacer(f"campaign:{campaign['id']}", None),
            account_pacer=account_pacer,
            concurrency=self.settings.send_concurrency,
            claim_batch=self.settings.claim_batch,
            segment=campaign.get("segment"),
            on_exit=self._on_exit,
            unsubscribe_url=self.unsubscribe_url if self.box is not None else None,
            ledger=self._ledger,
            lease=lease,
            shards=int(campaign.get("shards") or 1),
            conclude=self._conclude,
        )
        self.runners[(campaign["id"], lease.ref.shard)] = runner
        await runner.start()
        return runner

    def follow(self, campaign: dict[str, Any]) -> None:
        """Every message not yet sent uses the row's current values."""
        version = int(campaign.get("version") or 0)
        for (cid, _shard), runner in list(self.runners.items()):
            if cid == campaign["id"] and runner.active and runner.version != version:
                runner.version = version
                runner.apply_edit(campaign)
                log_event("messages.edited", campaign_id=cid, runner_id=runner.runner_id)

    async def stop_shard(self, campaign_id: int, shard: int, reason: str) -> None:
        runner = self.runners.get((campaign_id, shard))
        if runner is not None:
            await runner.stop(reason)

    async def _conclude(self, runner: MessageRunner, outcome: S, error: str | None) -> None:
        """A shard ended by itself: the campaign completes when its last shard does."""
        if outcome is S.COMPLETED and runner.lease is not None:
            try:
                if not await self.repo.cluster.finish_shard(runner.lease.ref):
                    return
            except LeaseLost:
                return
        with contextlib.suppress(CampaignError):  # an operator moved it meanwhile
            await self.repo.transition(
                runner.campaign_id,
                outcome,
                Actor.SYSTEM,
                **({"last_error": error} if error else {}),
            )

    def unsubscribe_url(self, campaign_id: int, contact_id: int) -> str:
        """A link the recipient can follow (or POST to, RFC 8058) to stop all messages."""
        assert self.box is not None
        token = self.box.sign(f"unsubscribe:{campaign_id}:{contact_id}")
        base = self.settings.public_url.rstrip("/")
        return f"{base}/unsubscribe/{campaign_id}/{contact_id}/{token}"

    def _on_exit(self, runner: MessageRunner) -> None:
        key = (runner.campaign_id, runner.shard)
        if self.runners.get(key) is runner:
            del self.runners[key]
        self.on_change()

    async def start_due(self) -> list[int]:
        """Start every scheduled campaign whose time has come (the cluster's leader does this)."""
        started = []
        for campaign in await self.repo.due_campaigns():
            try:
                await self.repo.transition(campaign["id"], S.RUNNING, Actor.SYSTEM)
            except CampaignError:
                continue  # an operator moved it meanwhile
            await self.repo.cluster.reset(CampaignKind.MESSAGE.value, campaign["id"], fresh=False)
            started.append(campaign["id"])
            log_event("messages.schedule_started", campaign_id=campaign["id"])
        return started

    async def shutdown(self, reason: str = SHUTDOWN) -> None:
        runners = list(self.runners.values())
        await asyncio.gather(*(r.stop(reason) for r in runners), return_exceptions=True)
