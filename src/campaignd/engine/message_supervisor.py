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
from campaignd.messaging.account_channel import account_channel
from campaignd.messaging.bounces import BounceRecorder
from campaignd.messaging.domain_throttle import DomainThrottle
from campaignd.messaging.ledger_writer import LedgerWriter
from campaignd.messaging.link_tracking import LinkTracker
from campaignd.messaging.sender import SHUTDOWN, AnyPacer, MessageRunner
from campaignd.messaging.shared_pacer import SharedPacer
from campaignd.settings import Settings
from campaignd.store.cluster_repo import LeaseLost
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.operations_repo import OperationsRepository
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
        self._domain_throttles: dict[int, DomainThrottle] = {}
        self._ledger = LedgerWriter(repo)
        self.operations = OperationsRepository(repo.db)
        # Reach caches live in each API's MessageApp; they expire by themselves (30 s).
        self.bounces = BounceRecorder(repo, self.operations, lambda: None)
        self.on_change: Callable[[], None] = lambda: None
        self._background: set[asyncio.Task[None]] = set()

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

    def _link_tracker(self, campaign_id: int) -> LinkTracker | None:
        if self.box is None:
            return None
        return LinkTracker(campaign_id, self.operations, self.settings.public_base(), self.box.sign)

    def _account_limits(self, account: dict[str, Any]) -> DomainThrottle:
        """The account's shared per-domain throttle and pacer, set to its current values."""
        throttle = self._domain_throttles.setdefault(account["id"], DomainThrottle())
        throttle.set_limits(account.get("domain_limits"))
        pacer = self._pacers.get(f"account:{account['id']}")
        if pacer is not None:
            pacer.set_rate(account.get("rate_per_minute"))
        return throttle

    async def start_shard(self, campaign: dict[str, Any], lease: HeldLease) -> MessageRunner:
        account = await self.repo.get_account(campaign["account_id"])
        channel = account_channel(account, self.box, self.guard, self.settings)
        throttle = self._account_limits(account)
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
            max_consecutive_failures=self.settings.max_consecutive_failures,
            domain_throttle=throttle,
            link_tracker=self._link_tracker(campaign["id"]),
            on_bounce=self.bounces.from_channel,
        )
        self.runners[(campaign["id"], lease.ref.shard)] = runner
        await runner.start()
        return runner

    def follow(self, campaign: dict[str, Any]) -> None:
        """Every message not yet sent uses the row's current values.

        A new version may also mean failed recipients were requeued (retry-failed) or the
        account's limits changed: the runner looks through the audience again, and the
        account is read again.
        """
        version = int(campaign.get("version") or 0)
        changed = False
        for (cid, _shard), runner in list(self.runners.items()):
            if cid == campaign["id"] and runner.active and runner.version != version:
                runner.version = version
                runner.apply_edit(campaign)
                runner.rescan()
                changed = True
                log_event("messages.edited", campaign_id=cid, runner_id=runner.runner_id)
        if changed:
            task = asyncio.create_task(self._reread_account(campaign["account_id"]))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _reread_account(self, account_id: int) -> None:
        with contextlib.suppress(Exception):  # the next edit or start reads it again
            self._account_limits(await self.repo.get_account(account_id))

    async def stop_shard(self, campaign_id: int, shard: int, reason: str) -> None:
        runner = self.runners.get((campaign_id, shard))
        if runner is not None:
            await runner.stop(reason)

    async def _conclude(self, runner: MessageRunner, outcome: S, extra: dict[str, Any]) -> None:
        """A shard ended by itself: the campaign completes when its last shard does.

        A failure or an auto-pause moves the campaign only while the shard's epoch is still
        held (fenced), and once: another shard pausing too finds it paused already. The
        node then releases the shard's lease, the campaign no longer being `running`.
        """
        lease = None
        if runner.lease is not None:
            if outcome is S.COMPLETED:
                try:
                    if not await self.repo.cluster.finish_shard(runner.lease.ref):
                        return
                except LeaseLost:
                    return
            else:
                lease = runner.lease.ref
        with contextlib.suppress(CampaignError, LeaseLost):  # moved meanwhile, or fenced off
            await self.repo.transition(runner.campaign_id, outcome, Actor.SYSTEM, lease, **extra)

    def unsubscribe_url(self, campaign_id: int, contact_id: int) -> str:
        """A link the recipient can follow (or POST to, RFC 8058) to stop all messages."""
        assert self.box is not None
        token = self.box.sign(f"unsubscribe:{campaign_id}:{contact_id}")
        base = self.settings.public_base()
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
        for task in list(self._background):
            task.cancel()
