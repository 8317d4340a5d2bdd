"""The async engine for SQLite (WAL, the embedded default) or PostgreSQL (by URL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from campaignd.settings import async_database_url
from campaignd.store import migrate
from campaignd.store.driver_reads import DriverReads

READ_ONLY = "campaignd_read_only"
# A pooled PostgreSQL connection unused for longer than this is checked (one round trip of
# its own) before it is handed out; a busy one is not (see _configure_postgres).
IDLE_PING_SECONDS = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every timestamp we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Formatting an aware datetime costs ~1.2 µs and a list of 50 campaigns has hundreds of
# them, most the same from one request to the next; looking one up costs ~0.06 µs.
_ISO_TEXT: dict[datetime, str] = {}
_ISO_TEXT_MAX = 16_384


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 in UTC with a `Z` (naive ones are UTC already)."""
    if value is None:
        return None
    text = _ISO_TEXT.get(value)
    if text is None:
        if len(_ISO_TEXT) >= _ISO_TEXT_MAX:
            _ISO_TEXT.clear()
        utc = as_utc(value).astimezone(UTC)  # type: ignore[union-attr]
        text = _ISO_TEXT[value] = utc.isoformat().replace("+00:00", "Z")
    return text


class _SqliteConnection(sqlite3.Connection):
    """Rolls back before it closes.

    A task cancelled while its statement runs in the driver's thread (a shutdown cancels the
    node's loop and the requests still running) has its connection closed with that statement
    unfinished. sqlite3 then keeps the connection open, with its transaction and the write
    lock, until the statement is garbage collected: every later write waited busy_timeout
    (15 s) and failed, and a stopping service took that long to exit.
    """

    def close(self) -> None:
        if self.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.rollback()
        super().close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) rather than the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers wait (busy_timeout)
        # instead of one failing with "database is locked" when it upgrades a read lock.
        # Read-only transactions stay deferred: in WAL mode they never wait for a writer.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _configure_postgres(engine: AsyncEngine) -> None:
    """Check a pooled connection only when it has been idle, not on every checkout.

    SQLAlchemy's pool_pre_ping costs three round trips per checkout with asyncpg (BEGIN, a
    ping, ROLLBACK) and a checkout is made for every read: under load that was most of the
    API's work. A connection that was used a moment ago needs no check: if the server went
    away since, the query fails as a disconnect, which makes SQLAlchemy invalidate the whole
    pool, so the next checkout connects afresh. One that sat idle (a restart, an idle
    timeout of a proxy in between) is pinged first, as pre_ping did, and replaced if dead.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since <= IDLE_PING_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as error:
            # The pool throws this connection away and hands out a fresh one.
            raise exc.DisconnectionError(str(error)) from error


class Database:
    """Owns the engine; hands out short transactions."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 20) -> None:
        self.url = async_database_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        postgres = self.url.startswith("postgresql")
        half = max(2, pool_size // 2)
        if postgres:
            # Connections past pool_size are closed when handed back, and a new one costs a
            # server process and several round trips: the pools hold what a busy node uses
            # (transactions, fewer and shorter than reads: half the pool size kept).
            kwargs.update(pool_size=half, max_overflow=half)
        elif self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"factory": _SqliteConnection}
        self.engine = create_async_engine(self.url, **kwargs)
        self.dialect = self.engine.dialect.name
        # Reads and single-statement writes on PostgreSQL run on connections that stay in
        # autocommit (a pool of their own): one round trip per query instead of BEGIN, the
        # query and COMMIT, and no isolation level set and reset at every checkout. At the
        # default isolation (READ COMMITTED) each statement of a transaction sees its own
        # snapshot anyway, so a read loses no consistency by it.
        self._autocommit_engine: AsyncEngine | None = None
        if postgres:
            _configure_postgres(self.engine)
            self._autocommit_engine = create_async_engine(
                self.url, isolation_level="AUTOCOMMIT", echo=echo, pool_size=half, max_overflow=half
            )
            _configure_postgres(self._autocommit_engine)
        # The reads every request makes go to asyncpg directly (see driver_reads), on a pool
        # of pool_size: with the two above a node opens at most 3 x pool_size connections.
        self._driver_reads = DriverReads(self.driver_dsn(), pool_size) if postgres else None
        # SQLite has one writer at a time. Writers queue here, in order, rather than in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms while holding a pooled
        # connection that readers then wait for.
        self._write_turn: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
            self._write_turn = asyncio.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    async def migrate(self) -> None:
        await migrate.upgrade(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._write_turn is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_turn, self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """For one write statement that is atomic by itself: on PostgreSQL it is sent alone,
        committed as it runs (no BEGIN or COMMIT round trip); on SQLite a transaction."""
        if self._autocommit_engine is None:
            async with self.transaction() as connection:
                yield connection
            return
        async with self._autocommit_engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """For reads: on PostgreSQL each statement alone (autocommit); on SQLite a deferred
        transaction, which takes no write lock."""
        if self._autocommit_engine is not None:
            async with self._autocommit_engine.connect() as connection:
                yield connection
            return
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(**{READ_ONLY: True})
            async with connection.begin():
                yield connection

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """The rows of a read built once (rows by attribute, by index and with `_fields`): on
        PostgreSQL run by asyncpg itself, on SQLite as `read` runs it."""
        if self._driver_reads is None:
            async with self.read() as connection:
                return list((await connection.execute(statement, dict(params or {}))).all())
        compiled = self._driver_reads.statement(statement, self.engine.dialect)
        return await self._driver_reads.fetch(compiled, params or {})

    def driver_dsn(self) -> str:
        """The URL for asyncpg itself (a LISTEN connection of its own)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def notify(self, payload: str) -> None:
        """Wake every node listening (PostgreSQL NOTIFY); nothing on SQLite (one engine)."""
        if not self.is_postgres:
            return
        async with self.autocommit() as connection:
            await connection.exec_driver_sql("SELECT pg_notify('campaignd', $1)", (payload[:200],))

    async def close(self) -> None:
        if self._driver_reads is not None:
            await self._driver_reads.close()
        await self.engine.dispose()
        if self._autocommit_engine is not None:
            await self._autocommit_engine.dispose()
