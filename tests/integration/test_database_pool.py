"""PostgreSQL connections: reads in one round trip, idle connections checked before use."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from campaignd.store import db as db_module
from campaignd.store.db import Database

pytestmark = pytest.mark.postgres


async def test_a_read_runs_each_statement_on_its_own_without_begin(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        async with database.read() as conn:
            first = (await conn.execute(text("SELECT txid_current()"))).scalar_one()
            second = (await conn.execute(text("SELECT txid_current()"))).scalar_one()
        assert first != second  # autocommit: no BEGIN ... COMMIT around the reads
        async with database.transaction() as conn:
            first = (await conn.execute(text("SELECT txid_current()"))).scalar_one()
            second = (await conn.execute(text("SELECT txid_current()"))).scalar_one()
        assert first == second  # a write is still one transaction
    finally:
        await database.close()


async def test_an_idle_connection_killed_by_the_server_is_replaced_unseen(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(postgres_url)
    other = Database(postgres_url)
    try:
        async with database.read() as conn:
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with other.read() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # it has been idle "long"
        async with database.read() as conn:
            now = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert now != backend
    finally:
        await database.close()
        await other.close()


async def test_only_a_connection_idle_for_a_while_is_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self: AsyncAdapt_asyncpg_connection) -> None:
        pings.append(self)
        original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    database = Database(postgres_url)
    try:
        for _ in range(5):
            async with database.read() as conn:
                await conn.execute(text("SELECT 1"))
        assert pings == []  # in use a moment ago: no round trip of its own
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)
        async with database.read() as conn:
            await conn.execute(text("SELECT 1"))
        assert len(pings) == 1
    finally:
        await database.close()
