"""A send rate that holds for the whole cluster: slots reserved in PostgreSQL in small chunks.

Every node reserves the next few slots of a key (a campaign, an account) from one row, as
the in-memory Pacer does in one process: `next_free = greatest(next_free, now) + n/rate`.
Slots are never handed out twice, so however many nodes send, a provider never sees more
than the rate. A slot reached too late (a busy or paused node) is given up rather than sent
in a burst, so no second carries more than its share either; a node that stops just leaves
its unused slots to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from campaignd.logs import log_event
from campaignd.store.cluster_repo import ClusterRepository

# Each reservation covers at most this much of the rate (and at least one slot).
CHUNK_SECONDS = 0.5
# A slot whose time passed more than this ago is forfeited instead of sent late.
LATE_SECONDS = 0.1

Wait = Callable[[float], Awaitable[None]]


class SharedPacer:
    """The cluster-wide counterpart of domain.pacing.Pacer (same attributes, async slots)."""

    def __init__(self, repo: ClusterRepository, key: str, rate_per_minute: float | None) -> None:
        self.repo = repo
        self.key = key
        self.rate_per_minute = rate_per_minute
        self._slots: deque[float] = deque()  # local monotonic instants
        self._held_until = 0.0
        self._lock = asyncio.Lock()
        self._hold_task: asyncio.Task[None] | None = None

    def set_rate(self, rate_per_minute: float | None) -> None:
        if rate_per_minute != self.rate_per_minute:
            self._slots.clear()  # slots of the old rate would space sends at the old interval
        self.rate_per_minute = rate_per_minute

    def hold(self, now: float, seconds: float) -> None:
        """The far end said "slow down": every node of this key waits (Retry-After)."""
        self._held_until = max(self._held_until, now + seconds)
        self._slots.clear()
        if self.rate_per_minute:
            self._hold_task = asyncio.create_task(self._hold_everywhere(seconds))

    async def _hold_everywhere(self, seconds: float) -> None:
        with contextlib.suppress(Exception):
            await self.repo.hold_slots(self.key, seconds)

    def idle(self) -> bool:
        """No rate and no hold: a send may go now without asking."""
        return not self.rate_per_minute and self._held_until <= time.monotonic()

    async def acquire(self, wait: Wait) -> bool:
        """Wait for this node's next slot; False when none could be had (ask again).

        The caller's `wait` returns early on a stop, so the caller checks its stop after.
        """
        while True:
            now = time.monotonic()
            if self._held_until > now:
                await wait(self._held_until - now)
                return False
            if not self.rate_per_minute:
                return True
            slot = await self._next_slot()
            if slot is None:
                await wait(0.5)  # the database is away: no slot, try again shortly
                return False
            now = time.monotonic()
            if slot < now - LATE_SECONDS:
                continue
            if slot > now:
                await wait(slot - now)
            return True

    async def _next_slot(self) -> float | None:
        async with self._lock:
            if not self._slots:
                rate = float(self.rate_per_minute or 0.0) / 60.0
                if rate <= 0:
                    return time.monotonic()
                interval = 1.0 / rate
                count = max(1, math.floor(rate * CHUNK_SECONDS))
                try:
                    first, db_now = await self.repo.reserve_slots(self.key, count, interval)
                except Exception:
                    log_event(
                        "messages.rate_slots_unavailable",
                        level=logging.WARNING,
                        key=self.key,
                        exc_info=True,
                    )
                    return None
                local_first = time.monotonic() + (first - db_now)
                self._slots.extend(local_first + i * interval for i in range(count))
            return self._slots.popleft()
