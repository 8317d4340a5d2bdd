"""This node's traffic runners: one per held shard, started, followed and stopped by the node.

Nothing here is called by the API: the node loop (engine/node.py) starts a runner for each
shard lease it wins, tells it about edits it reads from the campaign row, and stops it when
the row says so or the lease is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from campaignd.domain.errors import CampaignError, RuleViolation
from campaignd.domain.leases import HeldLease
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.domain.targets import Allowlist
from campaignd.engine.guard import TargetGuard
from campaignd.engine.stats_writer import StatsWriter
from campaignd.logs import log_event
from campaignd.settings import Settings
from campaignd.store.cluster_repo import LeaseLost
from campaignd.store.traffic_repo import TrafficRepository
from campaignd.traffic.runner import SHUTDOWN, TrafficRunner

S = CampaignStatus
ShardKey = tuple[int, int]  # (campaign id, shard)


class TrafficSupervisor:
    """The traffic runners of this node, keyed by (campaign, shard)."""

    def __init__(self, repo: TrafficRepository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self.runners: dict[ShardKey, TrafficRunner] = {}
        self.writer = StatsWriter(repo)
        self.guard = TargetGuard(Allowlist.parse(settings.allowed_targets))
        self.on_change: Callable[[], None] = lambda: None

    def runner(self, campaign_id: int) -> TrafficRunner | None:
        """A live runner of the campaign on this node (its lowest shard), if any."""
        for (cid, _shard), runner in sorted(self.runners.items()):
            if cid == campaign_id and runner.active:
                return runner
        return None

    def running(self, campaign_id: int, shard: int) -> bool:
        runner = self.runners.get((campaign_id, shard))
        return runner is not None and runner.active

    def start(self) -> None:
        self.writer.start()

    async def start_shard(
        self, campaign: dict[str, Any], lease: HeldLease, active_seconds: float
    ) -> TrafficRunner | None:
        """Generate one shard of a campaign this node now holds; None if the target is refused."""
        try:
            # Checked again at every start, against today's allowlist, and pinned to what it
            # resolved: the runner connects to these addresses, never to a fresh lookup.
            checked = await self.guard.check_target(campaign["target_url"])
        except RuleViolation as refused:
            await self._fail_refused(campaign["id"], refused.message)
            return None
        profiles = await self.repo.get_profiles(list(campaign["user_profile_ids"]))
        shards = int(campaign.get("shards") or 1)
        resumed = active_seconds > 0
        prior = (
            await self.repo.cumulative_stats(campaign["id"]) if resumed and shards == 1 else None
        )
        campaign = {
            **campaign,
            "target_addresses": checked.addresses,
            "active_seconds": active_seconds,
        }
        runner = TrafficRunner(
            campaign,
            profiles,
            self.repo,
            self.writer,
            on_exit=self._on_runner_exit,
            prior=prior,
            paused=campaign["status"] == S.PAUSED,
            drain_seconds=self.settings.drain_seconds,
            workers_setting=self.settings.traffic_workers,
            lease=lease.ref,
            shards=shards,
            conclude=self._conclude,
        )
        self.runners[(campaign["id"], lease.ref.shard)] = runner
        await runner.start()
        if resumed:
            log_event(
                "traffic.recovered",
                campaign_id=campaign["id"],
                runner_id=runner.runner_id,
                shard=lease.ref.shard,
                epoch=lease.ref.epoch,
                status=campaign["status"],
            )
        return runner

    def follow(self, campaign: dict[str, Any]) -> None:
        """Apply what changed on the campaign's row to its runners here (rate, duration, pause)."""
        for (cid, _shard), runner in list(self.runners.items()):
            if cid != campaign["id"] or not runner.active:
                continue
            paused = campaign["status"] == S.PAUSED
            if paused and not runner.paused:
                runner.pause()
            elif not paused and runner.paused:
                runner.resume()
            version = int(campaign.get("version") or 0)
            if version == runner.version:
                continue
            runner.version = version
            if not runner.staged and runner.requests_per_minute != campaign["requests_per_minute"]:
                runner.set_rate(float(campaign["requests_per_minute"]))
            if runner.duration_seconds != float(campaign["duration_minutes"]) * 60.0:
                runner.set_duration(float(campaign["duration_minutes"]))
            log_event(
                "traffic.edited",
                campaign_id=cid,
                runner_id=runner.runner_id,
                requests_per_minute=campaign["requests_per_minute"],
                duration_minutes=campaign["duration_minutes"],
            )

    async def stop_shard(self, campaign_id: int, shard: int, reason: str) -> None:
        runner = self.runners.get((campaign_id, shard))
        if runner is not None:
            await runner.stop(reason)

    async def _conclude(self, runner: TrafficRunner, outcome: S, error: str | None) -> None:
        """A shard ended by itself: the campaign completes when its last shard does."""
        if outcome is S.COMPLETED:
            if runner.lease is not None:
                try:
                    if not await self.repo.cluster.finish_shard(runner.lease):
                        return
                except LeaseLost:
                    return
            try:
                await self.repo.transition(runner.campaign_id, S.COMPLETED, Actor.SYSTEM)
            except CampaignError:
                return  # an operator moved it meanwhile
            await self.repo.clear_generating(runner.campaign_id, reason="completed")
            return
        try:
            await self.repo.transition(
                runner.campaign_id,
                outcome,
                Actor.SYSTEM,
                **({"last_error": error} if error else {}),
            )
        except CampaignError:
            return
        await self.repo.clear_generating(runner.campaign_id, reason=outcome.value, error=error)

    def _on_runner_exit(self, runner: TrafficRunner) -> None:
        key = (runner.campaign_id, runner.shard)
        if self.runners.get(key) is runner:
            del self.runners[key]
        self.on_change()

    async def _fail_refused(self, campaign_id: int, reason: str) -> None:
        with contextlib.suppress(CampaignError):
            await self.repo.transition(campaign_id, S.FAILED, Actor.SYSTEM, last_error=reason)
        await self.repo.clear_generating(campaign_id, reason="target refused", error=reason)
        log_event(
            "traffic.target_refused", level=logging.ERROR, campaign_id=campaign_id, error=reason
        )

    async def shutdown(self, reason: str = SHUTDOWN) -> None:
        """Stop every runner (the campaigns stay generating, so another node or a restart
        carries on), then write every window."""
        runners = list(self.runners.values())
        await asyncio.gather(*(r.stop(reason) for r in runners), return_exceptions=True)
        await self.writer.stop()
