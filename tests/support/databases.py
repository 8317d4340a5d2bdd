"""Fresh SQLite files and fresh PostgreSQL databases for tests."""

from __future__ import annotations

import asyncio
import os
import uuid

POSTGRES_ADMIN_URL = os.environ.get(
    "CAMPAIGND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_unavailable_reason() -> str | None:
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:  # any failure means: skip, and say why
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
    return None


def create_postgres_database(template: str | None = None) -> str:
    name = f"campaignd_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(f'CREATE DATABASE "{name}"{copy}'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


_migrated: list[str] = []


def create_migrated_postgres_database() -> str:
    """A fresh database with the newest schema: a copy of one migrated once per session (the
    migrations took twice as long as the copy). `drop_migrated_template` drops that one."""
    if not _migrated:
        from campaignd.store.db import Database

        url = create_postgres_database()

        async def migrate() -> None:
            database = Database(url)
            try:
                await database.migrate()
            finally:
                await database.close()

        asyncio.run(migrate())
        _migrated.append(url.rsplit("/", 1)[1])
    return create_postgres_database(template=_migrated[0])


def drop_migrated_template() -> None:
    while _migrated:
        name = _migrated.pop()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
