"""SQLite: a transaction cut short by a cancellation (a shutdown cancels the node's loop and
the requests still running) gives the write lock back at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from campaignd.store.db import Database

# Marks its start, then about half a second of SQLite's own work before its one row is ready.
SLOW_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT reading() UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
    "SELECT count(*) FROM c"
)


async def test_a_cancelled_transaction_is_rolled_back_and_the_next_write_goes_through(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    reading = threading.Event()

    @event.listens_for(database.engine.sync_engine, "connect")
    def _add_reading(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("reading", 0, lambda: reading.set() or 1)

    try:
        async with database.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))

        async def write_then_read() -> None:
            async with database.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                await conn.execute(text(SLOW_COUNT))

        task = asyncio.create_task(write_then_read())
        while not reading.is_set():
            await asyncio.sleep(0.005)
        task.cancel()  # while the driver's thread runs the read, inside the transaction
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        async with database.transaction() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        assert time.monotonic() - started < 3.0, "the next write waited for the lock"
        async with database.read() as conn:
            rows = (await conn.execute(text("SELECT x FROM t"))).scalars().all()
        assert rows == [2], "the cancelled transaction's write was rolled back"
        del task  # its traceback holds the driver's cursor until here
    finally:
        await database.close()
