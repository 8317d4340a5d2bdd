"""Reads on PostgreSQL sent straight to asyncpg, for the statements the API runs on every
request.

SQLAlchemy's execution path costs ~0.35 ms of CPU a statement (checkout, compiled-cache
lookup, result metadata, greenlet switches) where asyncpg's own takes ~0.05 ms; on a busy
API node that was a third of each request's CPU. A statement is compiled once by SQLAlchemy
(so it is still written in SQLAlchemy, with bound parameters) and its SQL is then run by
asyncpg on a pool of its own. Rows come back as named tuples: by attribute, by index and
with `_fields`, as SQLAlchemy's rows are, so the callers treat both alike.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable

# `col IN (__[POSTCOMPILE_ids])` is how SQLAlchemy leaves a list parameter to expand at run
# time; asyncpg takes the list whole as an array: `col = ANY($n)`.
_EXPANDING = re.compile(r"(NOT )?IN \(__\[POSTCOMPILE_(\w+)\]\)")
# The server went away or is restarting: a read is sent again, once, on a fresh connection.
_GONE_STATES = ("08", "57P")


@dataclass(slots=True)
class DriverStatement:
    """A statement's SQL for asyncpg and the order of its parameters."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]  # the values the statement carries (literals, constants compared)
    row: type | None = None  # the named tuple of its columns, made at its first row

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = (params[n] if n in params else self.fixed[n] for n in self.names)
        return [list(v) if isinstance(v, tuple) else v for v in values]

    def rows(self, records: Sequence[asyncpg.Record]) -> list[Any]:
        if not records:
            return []
        if self.row is None:
            self.row = namedtuple("Row", list(records[0].keys()), rename=True)  # type: ignore[misc]
        make = self.row._make  # type: ignore[attr-defined]
        return [make(record) for record in records]


def compile_for_driver(statement: Executable, dialect: Dialect) -> DriverStatement:
    compiled = statement.compile(dialect=dialect)
    if getattr(compiled, "_bind_processors", None):
        raise ValueError("a statement for asyncpg takes no parameters that need converting")
    fixed = {
        name: bind.effective_value
        for bind, name in compiled.bind_names.items()
        if not bind.required
    }
    # The SQL numbers the plain parameters in order ($1, $2, ...) and leaves the lists out;
    # each list is given the next number after them.
    expanding = {name for bind, name in compiled.bind_names.items() if bind.expanding}
    ordered = [name for name in compiled.positiontup or () if name not in expanding]
    lists = [name for name in compiled.positiontup or () if name in expanding]
    names = (*ordered, *lists)

    def as_array(match: re.Match[str]) -> str:
        position = names.index(match.group(2)) + 1
        return f"<> ALL(${position})" if match.group(1) else f"= ANY(${position})"

    sql = _EXPANDING.sub(as_array, str(compiled))
    if len(set(re.findall(r"\$(\d+)", sql))) != len(names):
        raise ValueError(f"parameters {names} do not match the SQL: {sql}")
    return DriverStatement(sql, names, fixed)


def _json_value(text: str) -> Any:
    # SQLAlchemy stores a None in a JSON column as JSON's null: most optional columns hold it.
    return None if text == "null" else json.loads(text)


async def _json_codecs(connection: asyncpg.Connection) -> None:
    """json and jsonb as Python values, as SQLAlchemy's asyncpg dialect sets them up."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=_json_value, schema="pg_catalog"
        )


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """These connections only ever run single reads in autocommit: nothing to reset when one
    is handed back (asyncpg's default reset is a round trip: UNLISTEN, RESET ALL, ...)."""


def _server_gone(error: BaseException) -> bool:
    if isinstance(error, (asyncpg.InterfaceError, OSError, ConnectionError, TimeoutError)):
        return True
    return str(getattr(error, "sqlstate", "") or "").startswith(_GONE_STATES)


@dataclass
class DriverReads:
    """A pool of asyncpg connections (autocommit, at most `size`) opened as they are needed."""

    dsn: str
    size: int
    _pool: asyncpg.Pool | None = None
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    _statements: dict[int, tuple[Executable, DriverStatement]] = field(default_factory=dict)

    def statement(self, statement: Executable, dialect: Dialect) -> DriverStatement:
        known = self._statements.get(id(statement))
        if known is None or known[0] is not statement:
            if len(self._statements) >= 1000:  # only statements built once are meant to come
                self._statements.clear()
            known = (statement, compile_for_driver(statement, dialect))
            self._statements[id(statement)] = known
        return known[1]

    async def _opened(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self.size,
                        init=_json_codecs,
                        reset=_no_reset,
                    )
        return self._pool

    async def fetch(self, statement: DriverStatement, params: Mapping[str, Any]) -> list[Any]:
        arguments = statement.arguments(params)
        for attempt in (1, 2):
            pool = await self._opened()
            try:
                async with pool.acquire() as connection:
                    records = await connection.fetch(statement.sql, *arguments)
                return statement.rows(records)
            except Exception as error:
                if not _server_gone(error):
                    raise
                await pool.expire_connections()
                if attempt == 2:
                    # As SQLAlchemy reports it, so the API answers 503 and the nodes retry.
                    raise OperationalError(statement.sql, arguments, error) from error
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), 5.0)
        except Exception:
            pool.terminate()
