"""A runner owns one generating traffic campaign: its generation, statuses, windows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from campaignd.domain.errors import CampaignError
from campaignd.domain.leases import LeaseRef
from campaignd.domain.stages import parse_stages
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.engine.stats_writer import StatsWriter
from campaignd.logs import log_event
from campaignd.store.db import utcnow
from campaignd.store.outage import is_unavailable
from campaignd.store.traffic_repo import PendingWindow, TrafficRepository
from campaignd.traffic.generation import Ending, Generation
from campaignd.traffic.plan import LoadPlan, UserProfile
from campaignd.traffic.pool import worker_count
from campaignd.traffic.stats import WindowStats, summarize

# A runner stopped for a shutdown stays marked as generating, so the restart resumes it.
SHUTDOWN = "shutdown"
# Stopped because its shard moved (lease lost, or handed to another node): the campaign's
# row is left alone, whoever holds the shard now carries on.
HANDOVER = "handover"
LEASE_LOST = "lease lost"
LEAVES_CAMPAIGN_ALONE = frozenset({SHUTDOWN, HANDOVER, LEASE_LOST})
# What a runner that ended by itself does to its campaign (the engine decides: one shard's
# end completes the campaign only when every shard is done).
Conclude = Callable[["TrafficRunner", CampaignStatus, str | None], Awaitable[None]]
# How long a finishing runner waits out a database outage to record its end.
FINISH_RETRY_SECONDS = 30.0


class TrafficRunner:
    """Generates one campaign's traffic until its duration is spent, or it is stopped."""

    def __init__(
        self,
        campaign: dict[str, Any],
        profiles: list[dict[str, Any]],
        repo: TrafficRepository,
        writer: StatsWriter,
        *,
        on_exit: Callable[[TrafficRunner], None],
        prior: WindowStats | None = None,
        paused: bool = False,
        drain_seconds: float = 0.5,
        workers_setting: int = 1,
        lease: LeaseRef | None = None,
        shards: int = 1,
        conclude: Conclude | None = None,
    ) -> None:
        self.campaign_id: int = campaign["id"]
        self.lease = lease
        self.shard = lease.shard if lease else 0
        self.shards = shards
        self.version = int(campaign.get("version") or 0)
        self._conclude = conclude
        suffix = f"-s{self.shard}" if shards > 1 else ""
        self.runner_id = f"runner-{self.campaign_id}{suffix}-{uuid.uuid4().hex[:8]}"
        self.repo = repo
        self.writer = writer
        self.start_time: datetime = utcnow()
        self.drain_seconds = drain_seconds
        self.outcome: CampaignStatus | None = None
        self._on_exit = on_exit
        self._stop_reason = "stopped"
        plan = LoadPlan(
            target_url=campaign["target_url"],
            profiles=tuple(UserProfile.from_row(p) for p in profiles),
            total_users=int(campaign["total_users"]),
            rate_per_second=float(campaign["requests_per_minute"]) / 60.0,
            request_timeout_seconds=float(campaign.get("request_timeout_seconds") or 30.0),
            target_addresses=tuple(campaign.get("target_addresses") or ()),
        )
        stages = parse_stages(campaign["stages"]) if campaign.get("stages") else ()
        self.generation = Generation(
            plan,
            duration_seconds=float(campaign["duration_minutes"]) * 60.0,
            drain_seconds=drain_seconds,
            stages=stages,
            active_seconds=float(campaign.get("active_seconds") or 0.0),
            paused=paused,
            totals=prior,
            on_window=self._record,
            shard=self.shard,
            shards=shards,
        )
        self.generation.worker_count = worker_count(workers_setting, self.generation.peak_rate)
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def totals(self) -> WindowStats:
        return self.generation.totals

    @property
    def requests_per_minute(self) -> float:
        return self.generation.current_rpm()

    @property
    def duration_seconds(self) -> float:
        return self.generation.duration_seconds

    @property
    def active_seconds(self) -> float:
        return self.generation.active_seconds

    @property
    def paused(self) -> bool:
        return self.generation.paused

    @property
    def staged(self) -> bool:
        return bool(self.generation.stages)

    async def start(self) -> None:
        await self.repo.note_runner(self.campaign_id, self.runner_id)
        self._task = asyncio.create_task(self._run(), name=self.runner_id)
        log_event(
            "traffic.runner_started",
            campaign_id=self.campaign_id,
            runner_id=self.runner_id,
            requests_per_minute=self.requests_per_minute,
            duration_seconds=self.duration_seconds,
            active_seconds=self.active_seconds,
            workers=self.generation.worker_count,
            stages=len(self.generation.stages),
        )

    def set_rate(self, requests_per_minute: float) -> None:
        self.generation.set_rate(requests_per_minute)

    def set_duration(self, duration_minutes: float) -> None:
        self.generation.set_duration(duration_minutes * 60.0)

    def pause(self) -> None:
        self.generation.pause()

    def resume(self) -> None:
        self.generation.resume()

    async def stop(self, reason: str = "stopped") -> None:
        """End generation and wait until every resource is released (bounded by the drain)."""
        self._stop_reason = reason
        self.generation.request_stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    def stats(self) -> dict[str, Any]:
        return summarize(
            self.totals,
            self.active_seconds,
            self.requests_per_minute,
            self.generation.plan.step_names,
        )

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            ending = await self.generation.run()
            self.outcome = CampaignStatus.COMPLETED if ending is Ending.COMPLETED else None
        except Exception as exc:  # the runner must always release and record, whatever failed
            error = exc
            self.outcome = CampaignStatus.FAILED
            log_event(
                "traffic.runner_failed",
                level=logging.ERROR,
                exc_info=True,
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
            )
        finally:
            await self._finish(error)

    async def _record(self, window: WindowStats) -> None:
        # Handed to the process-wide writer: never blocks generation, survives an outage.
        self.writer.submit(
            PendingWindow(
                self.campaign_id,
                window,
                self.requests_per_minute,
                self.active_seconds,
                self.lease,
            )
        )

    async def _flush_all(self) -> None:
        await self.generation.flush()
        if not await self.writer.flush():
            raise OSError("stats windows are still unsaved: the database is unavailable")

    async def _retry_while_unavailable(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run one bookkeeping write, waiting out a database outage for a bounded time."""
        deadline = asyncio.get_running_loop().time() + FINISH_RETRY_SECONDS
        while True:
            try:
                await step()
                return
            except Exception as exc:
                if not is_unavailable(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def _finish(self, error: BaseException | None) -> None:
        outcome = self.outcome
        reason = outcome.value if outcome else self._stop_reason
        last_error = {"last_error": str(error)} if error else {}
        try:
            await self._retry_while_unavailable(self._flush_all)
            if outcome is not None and self._conclude is not None:
                conclude = self._conclude
                await self._retry_while_unavailable(
                    lambda: conclude(self, outcome, str(error) if error else None)
                )
            elif outcome is not None:
                with contextlib.suppress(CampaignError):
                    await self._retry_while_unavailable(
                        lambda: self.repo.transition(
                            self.campaign_id, outcome, Actor.SYSTEM, **last_error
                        )
                    )
            # A shutdown or a handover leaves the campaign marked as generating, so the
            # next holder (or the restart) resumes it; a stop was written by the operator.
            # (In a cluster the operator's stop already cleared the flag: see engine/.)
            stopped_here = self._conclude is None and self._stop_reason not in LEAVES_CAMPAIGN_ALONE
            if outcome is None and stopped_here:
                await self._retry_while_unavailable(
                    lambda: self.repo.clear_generating(
                        self.campaign_id, reason=reason, error=str(error) if error else None
                    )
                )
        except Exception:
            log_event(
                "traffic.runner_finish_failed",
                level=logging.ERROR,
                exc_info=True,
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
            )
        finally:
            log_event(
                "traffic.runner_ended",
                campaign_id=self.campaign_id,
                runner_id=self.runner_id,
                outcome=self.outcome.value if self.outcome else self._stop_reason,
                requests_total=self.totals.total,
                active_seconds=round(self.active_seconds, 3),
            )
            self._on_exit(self)
