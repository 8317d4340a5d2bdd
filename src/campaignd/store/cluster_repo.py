"""Nodes, leases and shared send slots: all the SQL of the cluster (ARCHITECTURE.md, Cluster).

Times that decide who holds what are the database's own clock on PostgreSQL (`now()`), so
nodes on several machines agree without trusting each other's clocks; SQLite has one engine
on one machine and uses this process's clock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    and_,
    any_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from campaignd.domain.leases import LeaseRef
from campaignd.store.db import Database, as_utc, utcnow
from campaignd.store.tables import leases, message_campaigns, nodes, rate_slots, traffic_campaigns

L = leases
N = nodes
LEADER = "leader"
TRAFFIC = "traffic"
MESSAGE = "message"

# Statements a node sends every second or for every message, built once (building a
# SQLAlchemy statement costs more CPU than sending it). On PostgreSQL a set of lease keys
# is one array per column, unnested, instead of an IN list rendered for its length.
_KEYS_PG = (
    "SELECT * FROM unnest(CAST(:kinds AS VARCHAR[]), CAST(:ids AS BIGINT[]),"
    " CAST(:shards AS INTEGER[]), CAST(:holders AS VARCHAR[]), CAST(:epochs AS INTEGER[]))"
)
# Rows are locked in key order, in both statements, so the two never deadlock.
_HELD_OF_PG = text(
    "SELECT kind, campaign_id, shard, holder, epoch FROM leases"
    f" WHERE (kind, campaign_id, shard, holder, epoch) IN ({_KEYS_PG})"
    " AND expires_at > now() ORDER BY kind, campaign_id, shard FOR SHARE OF leases"
)
_RENEW_PG = text(
    "UPDATE leases SET expires_at = now() + make_interval(secs => :seconds)"
    " WHERE (kind, campaign_id, shard) IN (SELECT kind, campaign_id, shard FROM leases"
    f" WHERE (kind, campaign_id, shard, holder, epoch) IN ({_KEYS_PG})"
    " ORDER BY kind, campaign_id, shard FOR UPDATE OF leases)"
    " RETURNING kind, campaign_id, shard"
)


def _is_lease(kind: str, cid: str, shard: str, holder: str, epoch: str) -> list[Any]:
    """The lease row of these bound parameters' key, holder and epoch."""
    return [
        L.c.kind == bindparam(kind),
        L.c.campaign_id == bindparam(cid),
        L.c.shard == bindparam(shard),
        L.c.holder == bindparam(holder),
        L.c.epoch == bindparam(epoch),
    ]


_CHECK_PG = (
    select(L.c.epoch)
    .where(*_is_lease("kind", "cid", "shard", "holder", "epoch"), L.c.expires_at > func.now())
    .with_for_update(read=True)
)
_ACTIVE_SECONDS = (
    update(L).where(*_is_lease("k", "c", "s", "h", "e")).values(active_seconds=bindparam("active"))
)
_LEASES_OF_PG = (
    select(L)
    .where(
        L.c.kind == bindparam("kind"),
        L.c.campaign_id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))),
    )
    .order_by(L.c.campaign_id, L.c.shard)
)
_EPOCH_NOW = func.extract("epoch", func.clock_timestamp())
_RESERVE_PG = (
    postgresql.insert(rate_slots)
    .values(key=bindparam("key"), next_free=_EPOCH_NOW + bindparam("span", type_=Float))
    .on_conflict_do_update(
        index_elements=[rate_slots.c.key],
        set_={
            "next_free": func.greatest(rate_slots.c.next_free, _EPOCH_NOW)
            + bindparam("span", type_=Float)
        },
    )
    .returning(rate_slots.c.next_free, _EPOCH_NOW.label("now"))
)
_CLOCK_PG = select(func.now())
_ALIVE_PG = select(func.count()).where(
    nodes.c.engine.is_(True),
    nodes.c.last_seen
    > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, bindparam("seconds", type_=Float)),
)
_HEARTBEAT_INSERT = postgresql.insert(nodes).values(
    name=bindparam("name"),
    role=bindparam("role"),
    engine=bindparam("engine"),
    pid=bindparam("pid"),
    host=bindparam("host"),
    started_at=bindparam("started_at"),
    last_seen=func.now(),
)
_HEARTBEAT_PG = _HEARTBEAT_INSERT.on_conflict_do_update(
    index_elements=[nodes.c.name],
    set_={
        "last_seen": func.now(),
        "role": _HEARTBEAT_INSERT.excluded.role,
        "engine": _HEARTBEAT_INSERT.excluded.engine,
        "pid": _HEARTBEAT_INSERT.excluded.pid,
    },
)


def _key_arrays(refs: Iterable[LeaseRef]) -> dict[str, list[Any]]:
    keys = list(refs)
    return {
        "kinds": [r.kind for r in keys],
        "ids": [r.campaign_id for r in keys],
        "shards": [r.shard for r in keys],
        "holders": [r.holder for r in keys],
        "epochs": [r.epoch for r in keys],
    }


class LeaseLost(Exception):
    """Raised when a write is fenced off: this node no longer holds the shard's epoch."""


@dataclass(frozen=True, slots=True)
class LeaseRow:
    kind: str
    campaign_id: int
    shard: int
    holder: str | None
    epoch: int
    expires_at: datetime | None
    finished: bool
    active_seconds: float

    @classmethod
    def from_row(cls, row: Any) -> LeaseRow:
        return cls(
            kind=row.kind,
            campaign_id=int(row.campaign_id),
            shard=int(row.shard),
            holder=row.holder,
            epoch=int(row.epoch),
            expires_at=as_utc(row.expires_at),
            finished=bool(row.finished),
            active_seconds=float(row.active_seconds or 0.0),
        )

    def held_at(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now


class ClusterRepository:
    """Heartbeats, lease claims and renewals, fences, and shared send slots."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: Any) -> Any:
        return (postgresql if self.db.is_postgres else sqlite).insert(table)

    def _now(self) -> Any:
        return func.now() if self.db.is_postgres else utcnow()

    def _in(self, seconds: float) -> Any:
        if self.db.is_postgres:
            return func.now() + timedelta(seconds=seconds)
        return utcnow() + timedelta(seconds=seconds)

    async def clock(self) -> datetime:
        """The clock leases are judged by."""
        if not self.db.is_postgres:
            return utcnow()
        async with self.db.read() as conn:
            value = (await conn.execute(_CLOCK_PG)).scalar_one()
        return as_utc(value) or utcnow()

    # nodes ------------------------------------------------------------------------------
    async def heartbeat(
        self, name: str, role: str, engine: bool, pid: int, host: str, started_at: datetime
    ) -> None:
        node = {
            "name": name,
            "role": role,
            "engine": engine,
            "pid": pid,
            "host": host,
            "started_at": started_at,
        }
        if self.db.is_postgres:
            async with self.db.autocommit() as conn:  # one statement, atomic by itself
                await conn.execute(_HEARTBEAT_PG, node)
            return
        values = {**node, "last_seen": self._now()}
        statement = self._insert(N).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[N.c.name],
            set_={"last_seen": self._now(), "role": role, "engine": engine, "pid": pid},
        )
        async with self.db.transaction() as conn:
            await conn.execute(statement)

    async def forget_node(self, name: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(delete(N).where(N.c.name == name))

    async def list_nodes(self, alive_seconds: float) -> list[dict[str, Any]]:
        now = await self.clock()
        async with self.db.read() as conn:
            rows = (await conn.execute(select(N).order_by(N.c.started_at, N.c.name))).all()
            held = (
                await conn.execute(
                    select(L).where(L.c.holder.is_not(None)).order_by(L.c.kind, L.c.campaign_id)
                )
            ).all()
        holding: dict[str, list[dict[str, Any]]] = {}
        for raw in held:
            lease = LeaseRow.from_row(raw)
            if lease.held_at(now) and lease.kind != LEADER:
                holding.setdefault(str(lease.holder), []).append(
                    {"kind": lease.kind, "campaign_id": lease.campaign_id, "shard": lease.shard}
                )
        leader = next((LeaseRow.from_row(r).holder for r in held if r.kind == LEADER), None)
        out = []
        for row in rows:
            last_seen = as_utc(row.last_seen)
            out.append(
                {
                    "name": row.name,
                    "role": row.role,
                    "engine": bool(row.engine),
                    "pid": row.pid,
                    "host": row.host,
                    "started_at": as_utc(row.started_at),
                    "last_seen": last_seen,
                    "alive": bool(last_seen and (now - last_seen).total_seconds() < alive_seconds),
                    "leader": row.name == leader,
                    "holding": holding.get(row.name, []),
                }
            )
        return out

    async def alive_engines(self, alive_seconds: float) -> int:
        if self.db.is_postgres:
            async with self.db.read() as conn:
                value = (
                    await conn.execute(_ALIVE_PG, {"seconds": float(alive_seconds)})
                ).scalar_one()
            return max(1, int(value))
        async with self.db.read() as conn:
            count = (
                await conn.execute(
                    select(func.count()).where(
                        N.c.engine.is_(True), N.c.last_seen > self._in(-alive_seconds)
                    )
                )
            ).scalar_one()
        return max(1, int(count))

    async def local_nodes(self, host: str, me: str) -> list[tuple[str, int]]:
        """(name, pid) of the other nodes recorded on this host."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(N.c.name, N.c.pid).where(N.c.host == host, N.c.name != me)
                )
            ).all()
        return [(r.name, int(r.pid)) for r in rows]

    async def free_leases_of(self, holders: Iterable[str]) -> int:
        """Leases of nodes known to be gone: free now (their epochs stay, so fences hold)."""
        names = list(holders)
        if not names:
            return 0
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(L).where(L.c.holder.in_(names)).values(holder=None, expires_at=self._now())
            )
            await conn.execute(delete(N).where(N.c.name.in_(names)))
        return int(result.rowcount or 0)

    async def free_all_leases(self) -> None:
        """SQLite: this is the only engine (it holds the lock file), so every lease is free."""
        async with self.db.transaction() as conn:
            await conn.execute(
                update(L).where(L.c.holder.is_not(None)).values(holder=None, expires_at=None)
            )

    # leases -----------------------------------------------------------------------------
    async def ensure(self, wanted: dict[tuple[str, int], int]) -> None:
        """A lease row for every shard of every wanted campaign ((kind, id) -> shards)."""
        values = [
            {
                "kind": kind,
                "campaign_id": cid,
                "shard": shard,
                "epoch": 0,
                "finished": False,
                "active_seconds": 0.0,
            }
            for (kind, cid), shards in wanted.items()
            for shard in range(shards)
        ]
        if not values:
            return
        async with self.db.transaction() as conn:
            await conn.execute(self._insert(L).on_conflict_do_nothing(), values)

    async def leases_of(self, kind: str, campaign_ids: Iterable[int]) -> list[LeaseRow]:
        ids = list(campaign_ids)
        if not ids:
            return []
        if self.db.is_postgres:
            async with self.db.read() as conn:
                found = (await conn.execute(_LEASES_OF_PG, {"kind": kind, "ids": ids})).all()
            return [LeaseRow.from_row(r) for r in found]
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(L)
                    .where(L.c.kind == kind, L.c.campaign_id.in_(ids))
                    .order_by(L.c.campaign_id, L.c.shard)
                )
            ).all()
        return [LeaseRow.from_row(r) for r in rows]

    async def claim(
        self, kind: str, campaign_id: int, shards: int, me: str, wanted: int, seconds: float
    ) -> list[LeaseRow]:
        """Take up to `wanted` free or expired shards of one campaign, each with a new epoch.

        `FOR UPDATE SKIP LOCKED`: nodes claiming at the same moment take different rows and
        never wait for each other.
        """
        if wanted <= 0:
            return []
        free = or_(L.c.holder.is_(None), L.c.expires_at.is_(None), L.c.expires_at < self._now())
        query = (
            select(L.c.shard)
            .where(
                L.c.kind == kind,
                L.c.campaign_id == campaign_id,
                L.c.shard < shards,
                L.c.finished.is_(False),
                free,
            )
            .order_by(L.c.shard)
            .limit(wanted)
            .with_for_update(skip_locked=True)
        )
        async with self.db.transaction() as conn:
            chosen = (await conn.execute(query)).scalars().all()
            if not chosen:
                return []
            rows = (
                await conn.execute(
                    update(L)
                    .where(L.c.kind == kind, L.c.campaign_id == campaign_id, L.c.shard.in_(chosen))
                    .values(holder=me, epoch=L.c.epoch + 1, expires_at=self._in(seconds))
                    .returning(L)
                )
            ).all()
        return [LeaseRow.from_row(r) for r in rows]

    async def renew(self, held: list[LeaseRef], seconds: float) -> set[tuple[str, int, int]]:
        """Extend our own epochs; the keys returned are still ours, any other one is lost.

        Only the holder's epoch is renewed: an expired lease nobody else took is still ours
        (its epoch did not move), one that another node claimed is not.
        """
        if not held:
            return set()
        if self.db.is_postgres:
            params: dict[str, Any] = {**_key_arrays(held), "seconds": float(seconds)}
            async with self.db.autocommit() as conn:
                found = (await conn.execute(_RENEW_PG, params)).all()
            return {(r.kind, int(r.campaign_id), int(r.shard)) for r in found}
        # One statement for every lease the node holds (not one per lease): a node renews on
        # every tick, and holding a hundred shards made that a hundred round trips a second.
        keys = [(r.kind, r.campaign_id, r.shard, r.holder, r.epoch) for r in held]
        ours = tuple_(L.c.kind, L.c.campaign_id, L.c.shard, L.c.holder, L.c.epoch)
        # Rows are locked in key order, as held_of locks them, so the two never deadlock.
        locked = (
            select(L.c.kind, L.c.campaign_id, L.c.shard)
            .where(ours.in_(keys))
            .order_by(L.c.kind, L.c.campaign_id, L.c.shard)
            .with_for_update()
        )
        async with self.db.autocommit() as conn:
            rows = (
                await conn.execute(
                    update(L)
                    .where(tuple_(L.c.kind, L.c.campaign_id, L.c.shard).in_(locked))
                    .values(expires_at=self._in(seconds))
                    .returning(L.c.kind, L.c.campaign_id, L.c.shard)
                )
            ).all()
        return {(r.kind, int(r.campaign_id), int(r.shard)) for r in rows}

    async def release(self, ref: LeaseRef, *, finished: bool = False) -> bool:
        """Give a shard back (expired at once, so another node takes it on its next look)."""
        values: dict[str, Any] = {"holder": None, "expires_at": self._now()}
        if finished:
            values["finished"] = True
        async with self.db.transaction() as conn:
            result = await conn.execute(update(L).where(self._mine(ref)).values(**values))
        return bool(result.rowcount)

    async def finish_shard(self, ref: LeaseRef) -> bool:
        """Mark a shard done (fenced); True when every shard of its campaign is done."""
        async with self.db.transaction() as conn:
            await self.check(conn, ref)
            await conn.execute(
                update(L)
                .where(self._mine(ref))
                .values(finished=True, holder=None, expires_at=self._now())
            )
            shards = await self._shards(conn, ref.kind, ref.campaign_id)
            left = (
                await conn.execute(
                    select(func.count()).where(
                        L.c.kind == ref.kind,
                        L.c.campaign_id == ref.campaign_id,
                        L.c.shard < shards,
                        L.c.finished.is_(False),
                    )
                )
            ).scalar_one()
        return int(left) == 0

    async def _shards(self, conn: AsyncConnection, kind: str, campaign_id: int) -> int:
        table = traffic_campaigns if kind == TRAFFIC else message_campaigns
        value = (
            await conn.execute(select(table.c.shards).where(table.c.id == campaign_id))
        ).scalar_one_or_none()
        return int(value or 1)

    async def reset(self, kind: str, campaign_id: int, *, fresh: bool) -> None:
        """A campaign runs again: every shard is to do; `fresh` also zeroes their clocks."""
        values: dict[str, Any] = {"finished": False}
        if fresh:
            values["active_seconds"] = 0.0
        async with self.db.transaction() as conn:
            await conn.execute(
                update(L).where(L.c.kind == kind, L.c.campaign_id == campaign_id).values(**values)
            )

    async def forget_campaign(self, kind: str, campaign_id: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(delete(L).where(L.c.kind == kind, L.c.campaign_id == campaign_id))

    async def holders(self, kind: str, campaign_ids: Iterable[int]) -> dict[int, list[LeaseRow]]:
        """Live holders per campaign (expired leases left out), in one query."""
        ids = list(campaign_ids)
        if not ids:
            return {}
        params: dict[str, Any] = {"kind": kind, "ids": ids}
        if not self.db.is_postgres:
            params["now"] = utcnow()
        rows = await self.db.fetch(_live_holders(self.db.is_postgres), params)
        out: dict[int, list[LeaseRow]] = {}
        for row in rows:
            lease = LeaseRow.from_row(row)
            out.setdefault(lease.campaign_id, []).append(lease)
        return out

    # fencing ----------------------------------------------------------------------------
    def _mine(self, ref: LeaseRef) -> Any:
        return and_(
            L.c.kind == ref.kind,
            L.c.campaign_id == ref.campaign_id,
            L.c.shard == ref.shard,
            L.c.holder == ref.holder,
            L.c.epoch == ref.epoch,
        )

    async def check(self, conn: AsyncConnection, ref: LeaseRef) -> None:
        """Inside a write: raise LeaseLost unless `ref` is still held and unexpired.

        The row is locked FOR SHARE until the write commits, so a claim of the next epoch
        waits for it: a write is either before the takeover or refused, never after it.
        """
        if self.db.is_postgres:
            params = {
                "kind": ref.kind,
                "cid": ref.campaign_id,
                "shard": ref.shard,
                "holder": ref.holder,
                "epoch": ref.epoch,
            }
            row = (await conn.execute(_CHECK_PG, params)).first()
        else:
            row = (
                await conn.execute(
                    select(L.c.epoch)
                    .where(self._mine(ref), L.c.expires_at > self._now())
                    .with_for_update(read=True)
                )
            ).first()
        if row is None:
            raise LeaseLost(
                f"{ref.kind} campaign {ref.campaign_id} shard {ref.shard}: epoch {ref.epoch} "
                f"is no longer held by {ref.holder}"
            )

    async def held_of(self, conn: AsyncConnection, refs: Iterable[LeaseRef]) -> set[LeaseRef]:
        """Inside a write: which of `refs` are still held and unexpired, in one statement.

        `check` for many leases at once (one round trip, not one per lease): the rows are
        locked FOR SHARE, in key order, until the write commits.
        """
        wanted = {(r.kind, r.campaign_id, r.shard, r.holder, r.epoch): r for r in refs}
        if not wanted:
            return set()
        if self.db.is_postgres:
            found_pg = (await conn.execute(_HELD_OF_PG, _key_arrays(wanted.values()))).all()
            return {
                wanted[key]
                for r in found_pg
                if (key := (r.kind, int(r.campaign_id), int(r.shard), r.holder, int(r.epoch)))
                in wanted
            }
        ours = tuple_(L.c.kind, L.c.campaign_id, L.c.shard, L.c.holder, L.c.epoch)
        rows = (
            await conn.execute(
                select(L.c.kind, L.c.campaign_id, L.c.shard, L.c.holder, L.c.epoch)
                .where(ours.in_(list(wanted)), L.c.expires_at > self._now())
                .order_by(L.c.kind, L.c.campaign_id, L.c.shard)
                .with_for_update(read=True)
            )
        ).all()
        found = {(r.kind, int(r.campaign_id), int(r.shard), r.holder, int(r.epoch)) for r in rows}
        return {ref for key, ref in wanted.items() if key in found}

    async def note_active_seconds(
        self, conn: AsyncConnection, ref: LeaseRef, active_seconds: float
    ) -> None:
        await self.note_active_seconds_many(conn, {ref: active_seconds})

    async def note_active_seconds_many(
        self, conn: AsyncConnection, clocks: dict[LeaseRef, float]
    ) -> None:
        """Each shard's generating time, all in one executemany."""
        if not clocks:
            return
        await conn.execute(
            _ACTIVE_SECONDS,
            [
                {
                    "k": ref.kind,
                    "c": ref.campaign_id,
                    "s": ref.shard,
                    "h": ref.holder,
                    "e": ref.epoch,
                    "active": active,
                }
                for ref, active in clocks.items()
            ],
        )

    # shared send slots ------------------------------------------------------------------
    async def reserve_slots(self, key: str, count: int, interval: float) -> tuple[float, float]:
        """Reserve `count` send slots `interval` apart for the whole cluster (PostgreSQL).

        Returns (first slot, the database's now), both in epoch seconds: the caller turns
        the difference into a local wait, so node clocks need not agree.
        """
        # One upsert, atomic by itself (a round trip per reservation, not four): the row is
        # created at the first reservation, later ones move it on from where it was.
        async with self.db.autocommit() as conn:
            row = (await conn.execute(_RESERVE_PG, {"key": key, "span": count * interval})).one()
        return float(row.next_free) - count * interval, float(row.now)

    async def hold_slots(self, key: str, seconds: float) -> None:
        """The far end said "wait": no slot of `key` before now + seconds, on any node."""
        now = func.extract("epoch", func.clock_timestamp())
        async with self.db.transaction() as conn:
            await conn.execute(
                self._insert(rate_slots).values(key=key, next_free=0.0).on_conflict_do_nothing()
            )
            await conn.execute(
                update(rate_slots)
                .where(rate_slots.c.key == key)
                .values(next_free=func.greatest(rate_slots.c.next_free, now + seconds))
            )


@functools.cache
def _live_holders(postgres: bool) -> Any:
    """Unexpired held leases of kind `:kind` for the campaigns in `:ids`, built once."""
    return (
        select(L)
        .where(
            L.c.kind == bindparam("kind"),
            L.c.campaign_id.in_(bindparam("ids", expanding=True)),
            L.c.holder.is_not(None),
            L.c.expires_at > (func.now() if postgres else bindparam("now")),
        )
        .order_by(L.c.campaign_id, L.c.shard)
    )
