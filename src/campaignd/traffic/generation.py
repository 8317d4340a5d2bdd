"""One campaign's generation without storage: workers, active clock, deadline, stages, windows.

The server's TrafficRunner adds persistence and statuses around it; `campaignd traffic run`
adds a progress display and exports. Both see the same numbers because both use this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any

from campaignd.domain.stages import Stage, rate_at
from campaignd.traffic.plan import LoadPlan
from campaignd.traffic.pool import Workers, make_workers
from campaignd.traffic.stats import WindowStats

TICK_SECONDS = 1.0
# Ramps are followed in steps this long, each at the rate of its midpoint, so the count
# over a linear stage equals the stage's integral.
RAMP_STEP_SECONDS = 0.1

OnWindow = Callable[[WindowStats], Awaitable[None]]


class Ending(StrEnum):
    COMPLETED = "completed"
    STOPPED = "stopped"


class Generation:
    """Generates a plan's load for `duration_seconds` of active (unpaused) time."""

    def __init__(
        self,
        plan: LoadPlan,
        *,
        duration_seconds: float,
        workers: int = 1,
        drain_seconds: float = 0.5,
        stages: Sequence[Stage] = (),
        active_seconds: float = 0.0,
        paused: bool = False,
        totals: WindowStats | None = None,
        on_window: OnWindow | None = None,
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        self.plan = plan
        self.shard = shard
        self.shards = shards
        self.start_rpm = plan.rate_per_second * 60.0
        self.stages = tuple(stages)
        self.requests_per_minute = self.start_rpm
        self.duration_seconds = duration_seconds
        self.active_seconds = active_seconds
        self.paused = paused
        self.totals = totals or WindowStats(started_at=0.0, seconds=0.0)
        self.worker_count = workers
        self._drain = drain_seconds
        self._on_window = on_window
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_counted: float | None = None
        self._workers: Workers | None = None

    @property
    def peak_rate(self) -> float:
        """The highest rate (req/s) this generation is planned to reach."""
        return max([self.start_rpm, *(s.target_rpm for s in self.stages)]) / 60.0

    def current_rpm(self) -> float:
        if not self.stages:
            return self.requests_per_minute
        return rate_at(self.stages, self.start_rpm, self.active_now() + RAMP_STEP_SECONDS / 2)

    def active_now(self) -> float:
        """Active seconds including the time since the last count."""
        if self.paused or self._last_counted is None:
            return self.active_seconds
        return self.active_seconds + time.monotonic() - self._last_counted

    # commands -------------------------------------------------------------------------
    def set_rate(self, requests_per_minute: float) -> None:
        self.requests_per_minute = requests_per_minute
        if self._workers is not None:
            self._workers.set_rate(requests_per_minute / 60.0)
        self._wake.set()

    def set_duration(self, duration_seconds: float) -> None:
        self.duration_seconds = duration_seconds
        self._wake.set()

    # Workers hold and release their clocks at the very instant active time is counted, so
    # the deadline (counted here) and the arrivals (scheduled there) never drift apart.
    def pause(self) -> None:
        at = self._count_active_time()
        self.paused = True
        if self._workers is not None:
            self._workers.pause(at)

    def resume(self) -> None:
        at = self._count_active_time()
        self.paused = False
        if self._workers is not None:
            self._workers.resume(at)
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()

    # running --------------------------------------------------------------------------
    async def run(self) -> Ending:
        """Generate until the duration is spent or a stop is requested; always release."""
        workers = make_workers(self.plan, self.worker_count, self._drain, self.shard, self.shards)
        if self.stages:
            self.requests_per_minute = self.current_rpm()
            workers.set_rate(self.requests_per_minute / 60.0)
        if self.paused:
            workers.pause(time.monotonic())
        self._last_counted = await workers.start()
        self._workers = workers
        ramp = asyncio.create_task(self._follow_stages()) if self.stages else None
        try:
            return await self._tick_until_end(workers)
        finally:
            if ramp is not None:
                ramp.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ramp
            await workers.stop()
            self._count_active_time()

    async def flush(self) -> WindowStats:
        """Hand the window since the last flush to `on_window` and add it to the totals."""
        window = (
            self._workers.cut_window()
            if self._workers is not None
            else WindowStats(started_at=time.time(), seconds=0.0)
        )
        self.totals.merge(window)
        self.totals.seconds = self.active_seconds
        if self._on_window is not None:
            await self._on_window(window)
        return window

    async def _tick_until_end(self, workers: Workers) -> Ending:
        failure = workers.failure()
        last_flush = time.monotonic()
        while True:
            remaining = self.duration_seconds - self.active_seconds
            to_tick = max(0.0, TICK_SECONDS - (time.monotonic() - last_flush))
            wait = to_tick if self.paused else max(0.0, min(to_tick, remaining))
            # Anchored where active time was last counted, so the end never slides.
            assert self._last_counted is not None
            workers.set_deadline(None if self.paused else self._last_counted + remaining)
            self._wake.clear()
            stop_wait = asyncio.create_task(self._stop.wait())
            wake_wait = asyncio.create_task(self._wake.wait())
            waits: set[asyncio.Future[Any]] = {stop_wait, wake_wait, failure}
            done, _ = await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            wake_wait.cancel()
            self._count_active_time()
            if failure in done:
                failure.result()
                raise RuntimeError("the load workers ended by themselves")
            if self._stop.is_set():
                return Ending.STOPPED
            if self.active_seconds >= self.duration_seconds and not self.paused:
                return Ending.COMPLETED
            if time.monotonic() - last_flush >= TICK_SECONDS:
                last_flush = time.monotonic()
                await self.flush()

    async def _follow_stages(self) -> None:
        while True:
            if not self.paused and self._workers is not None:
                rpm = self.current_rpm()
                if rpm != self.requests_per_minute:
                    self.requests_per_minute = rpm
                    self._workers.set_rate(rpm / 60.0)
            await asyncio.sleep(RAMP_STEP_SECONDS)

    def _count_active_time(self) -> float:
        """Add the generating time since the last count (paused time never counts); return now."""
        now = time.monotonic()
        if not self.paused and self._last_counted is not None:
            self.active_seconds += now - self._last_counted
        self._last_counted = now
        return now
