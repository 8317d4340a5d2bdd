"""The supervisor runs, stops and recovers campaign runners, and owns every status change."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from campaignd.domain import lifecycle
from campaignd.domain.errors import Conflict, RuleViolation
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.domain.targets import Allowlist
from campaignd.engine.guard import TargetGuard
from campaignd.engine.stats_writer import StatsWriter
from campaignd.logs import log_event
from campaignd.settings import Settings
from campaignd.store.traffic_repo import TrafficRepository
from campaignd.traffic.runner import SHUTDOWN, TrafficRunner
from campaignd.traffic.stats import WindowStats, summarize

S = CampaignStatus


class TrafficSupervisor:
    """One runner per generating traffic campaign, many in parallel."""

    def __init__(self, repo: TrafficRepository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self.runners: dict[int, TrafficRunner] = {}
        self._finished_stats: dict[int, WindowStats] = {}
        self._lock = asyncio.Lock()
        self.writer = StatsWriter(repo)
        self.guard = TargetGuard(Allowlist.parse(settings.allowed_targets))

    def runner(self, campaign_id: int) -> TrafficRunner | None:
        runner = self.runners.get(campaign_id)
        return runner if runner is not None and runner.active else None

    async def generate(self, campaign_id: int) -> TrafficRunner:
        """Start generating for a campaign in `running` (POST /api/traffic/generate)."""
        async with self._lock:
            campaign = await self.repo.get_campaign(campaign_id)
            if campaign["status"] != S.RUNNING:
                raise RuleViolation(
                    "Campaign must be in 'running' status to start traffic generation. "
                    f"Current status: {campaign['status']}",
                    current_status=campaign["status"],
                    required_status="running",
                    campaign_id=campaign_id,
                )
            if self.runner(campaign_id) is not None:
                raise Conflict(
                    f"Traffic generation is already active for campaign {campaign_id}.",
                    campaign_id=campaign_id,
                    thread_id=self.runners[campaign_id].runner_id,
                )
            return await self._start_runner(campaign)

    async def _start_runner(
        self, campaign: dict[str, Any], *, paused: bool = False, resumed: bool = False
    ) -> TrafficRunner:
        # Checked again at every start, against today's allowlist, and pinned to what it
        # resolved: the runner connects to these addresses, never to a fresh lookup.
        checked = await self.guard.check_target(campaign["target_url"])
        campaign = {**campaign, "target_addresses": checked.addresses}
        profiles = await self.repo.get_profiles(list(campaign["user_profile_ids"]))
        prior = await self.repo.cumulative_stats(campaign["id"]) if resumed else None
        if not resumed:
            campaign = {**campaign, "active_seconds": 0.0}
        runner = TrafficRunner(
            campaign,
            profiles,
            self.repo,
            self.writer,
            on_exit=self._on_runner_exit,
            prior=prior,
            paused=paused,
            drain_seconds=self.settings.drain_seconds,
            workers_setting=self.settings.traffic_workers,
        )
        self._finished_stats.pop(campaign["id"], None)
        self.runners[campaign["id"]] = runner
        await runner.start()
        return runner

    def _on_runner_exit(self, runner: TrafficRunner) -> None:
        if self.runners.get(runner.campaign_id) is runner:
            del self.runners[runner.campaign_id]
        self._finished_stats[runner.campaign_id] = runner.totals

    async def change_status(self, campaign_id: int, requested: S) -> S:
        """Apply an operator's status change; return the previous status."""
        async with self._lock:
            if requested is S.RUNNING:  # a resume from stopped must pass the allowlist first
                row = await self.repo.get_campaign(campaign_id)
                if row["status"] == S.STOPPED and row["start_time"] is not None:
                    await self.guard.check_target(row["target_url"])
            previous = await self.repo.transition(campaign_id, requested, Actor.OPERATOR)
            runner = self.runner(campaign_id)
            log_event(
                "traffic.status_changed",
                campaign_id=campaign_id,
                runner_id=runner.runner_id if runner else None,
                previous_status=previous.value,
                status=requested.value,
            )
            if requested is S.STOPPED and runner is not None:
                await runner.stop("stopped")
            elif requested is S.PAUSED and runner is not None:
                runner.pause()
            elif requested is S.RUNNING and runner is not None:
                runner.resume()
            elif requested is S.RUNNING and previous is S.STOPPED:
                campaign = await self.repo.get_campaign(campaign_id)
                if campaign["start_time"] is not None:
                    await self._start_runner(campaign, resumed=True)
            return previous

    async def edit(self, campaign_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Store an edit; a generating campaign picks up rate and duration at once."""
        runner = self.runner(campaign_id)
        live = {"requests_per_minute", "duration_minutes", "name"}
        if runner is not None and set(changes) - live:
            fields = ", ".join(sorted(set(changes) - live))
            raise Conflict(
                f"Cannot change {fields} while traffic is being generated; stop the campaign "
                "first (requests_per_minute and duration_minutes can change live).",
                campaign_id=campaign_id,
                fields=sorted(set(changes) - live),
            )
        if runner is not None and runner.staged and "requests_per_minute" in changes:
            raise Conflict(
                "This campaign's rate follows its stages; stop it to change the rate.",
                campaign_id=campaign_id,
                fields=["requests_per_minute"],
            )
        updated = await self.repo.update_campaign(campaign_id, changes)
        if runner is not None:
            if "requests_per_minute" in changes:
                runner.set_rate(float(changes["requests_per_minute"]))
            if "duration_minutes" in changes:
                runner.set_duration(float(changes["duration_minutes"]))
            log_event(
                "traffic.edited",
                campaign_id=campaign_id,
                runner_id=runner.runner_id,
                changes=changes,
            )
        return updated

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
        self._finished_stats.pop(campaign_id, None)

    async def stats(self, campaign: dict[str, Any]) -> dict[str, Any]:
        runner = self.runner(campaign["id"])
        if runner is not None:
            return runner.stats()
        totals = self._finished_stats.get(campaign["id"])
        if totals is None:
            totals = await self.repo.cumulative_stats(campaign["id"])
            self._finished_stats[campaign["id"]] = totals
        stats = summarize(
            totals,
            float(campaign.get("active_seconds") or 0.0),
            float(campaign["requests_per_minute"]),
        )
        stats["busy_users"] = 0  # nothing generates now
        return stats

    async def recover(self) -> list[int]:
        """After a restart, resume every campaign that was generating when the process died."""
        self.writer.start()
        resumed: list[int] = []
        for campaign in await self.repo.generating_campaigns():
            status = S(campaign["status"])
            if status in (S.RUNNING, S.PAUSED) and self.settings.recover_on_start:
                try:
                    await self._start_runner(campaign, paused=status is S.PAUSED, resumed=True)
                except RuleViolation as refused:
                    await self._fail_refused(campaign["id"], refused.message)
                    continue
                resumed.append(campaign["id"])
                log_event(
                    "traffic.recovered",
                    campaign_id=campaign["id"],
                    runner_id=self.runners[campaign["id"]].runner_id,
                    status=status.value,
                )
            else:
                await self.repo.clear_generating(campaign["id"], reason="not resumed after restart")
                log_event("traffic.not_recovered", campaign_id=campaign["id"], status=status.value)
        return resumed

    async def _fail_refused(self, campaign_id: int, reason: str) -> None:
        await self.repo.transition(campaign_id, S.FAILED, Actor.SYSTEM, last_error=reason)
        await self.repo.clear_generating(campaign_id, reason="target refused", error=reason)
        log_event(
            "traffic.target_refused", level=logging.ERROR, campaign_id=campaign_id, error=reason
        )

    async def shutdown(self) -> None:
        """Stop every runner (the campaigns stay `running`, so a restart resumes them)."""
        runners = list(self.runners.values())
        await asyncio.gather(*(r.stop(SHUTDOWN) for r in runners), return_exceptions=True)
        await self.writer.stop()
