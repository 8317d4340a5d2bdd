"""Group commit for the deliveries ledger: every runner's outcomes share one transaction.

A runner hands over what it settled and waits for the write. Everything handed over while a
write is in progress goes into the next one, so a hundred slow campaigns cost a few
transactions a second, not a hundred, and SQLite's single writer stays free for the API.
"""

from __future__ import annotations

import asyncio

from campaignd.store.cluster_repo import LeaseLost
from campaignd.store.messaging_repo import LedgerUpdate, MessagingRepository


class LedgerWriter:
    def __init__(self, repo: MessagingRepository) -> None:
        self.repo = repo
        self._waiting: list[tuple[LedgerUpdate, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, update: LedgerUpdate) -> None:
        """Return once `update` is committed; raise what the write raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((update, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="ledger-writer")
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                fenced = await self.repo.settle([update for update, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for index, (update, done) in enumerate(batch):
                    if done.done():
                        continue
                    if index in fenced:
                        done.set_exception(LeaseLost(f"campaign {update.campaign_id}: lease lost"))
                    else:
                        done.set_result(None)
