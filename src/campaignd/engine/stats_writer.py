"""One writer for every runner's stats windows: a single transaction a second, outage-proof."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from campaignd.logs import log_event
from campaignd.store.outage import is_unavailable
from campaignd.store.traffic_repo import PendingWindow, TrafficRepository

FLUSH_SECONDS = 0.5
# While the database is down windows wait in memory; past this many, the oldest per campaign
# are merged into their successor so nothing is dropped, only coarsened.
MAX_PENDING = 100_000


class StatsWriter:
    """Collects windows from all runners and persists them together."""

    def __init__(self, repo: TrafficRepository) -> None:
        self.repo = repo
        self._pending: list[PendingWindow] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.database_down = False
        self._running = True
        self._stopping = asyncio.Event()

    def submit(self, window: PendingWindow) -> None:
        self._pending.append(window)
        if len(self._pending) > MAX_PENDING:
            oldest = self._pending.pop(0)
            for later in self._pending:
                if later.campaign_id == oldest.campaign_id:
                    later.window.merge(oldest.window)
                    break

    def start(self) -> None:
        if self._task is None:
            self._running = True
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="traffic-stats-writer")

    async def stop(self) -> None:
        # No cancel: a write cancelled after its commit would leave its windows pending and
        # write them twice. The loop ends after its current flush (its wait between flushes is
        # cut short); then the rest is written.
        self._running = False
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), FLUSH_SECONDS)
            if not self._running:
                return
            try:
                await self.flush()
            except Exception:
                log_event("traffic.stats_write_failed", level=logging.ERROR, exc_info=True)

    async def flush(self) -> bool:
        """Write everything pending; False (and kept) while the database is unreachable."""
        async with self._lock:
            if not self._pending:
                return True
            batch = list(self._pending)
            try:
                fenced = await self.repo.record_windows(batch)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                if not self.database_down:
                    self.database_down = True
                    log_event(
                        "traffic.database_unavailable",
                        level=logging.WARNING,
                        campaign_ids=sorted({w.campaign_id for w in batch}),
                        error=str(exc)[:300],
                        note="generation goes on; stats windows wait in memory",
                    )
                return False
            del self._pending[: len(batch)]
            if fenced:  # their shards belong to other nodes now: those counts are theirs
                log_event(
                    "traffic.windows_fenced",
                    level=logging.WARNING,
                    leases=[list(key) for key in sorted(fenced)],
                )
            if self.database_down:
                self.database_down = False
                log_event("traffic.database_recovered", windows_written=len(batch))
            return True
