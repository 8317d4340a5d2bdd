"""Lease statements made for many shards at once: renewal, the fence check, shard clocks and
shared send slots (one statement each, whatever the number of shards)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import select

from campaignd.domain.leases import LeaseRef
from campaignd.services import Services
from campaignd.store.tables import leases

LEASE_SECONDS = 15.0


async def _claim(svc: Services, campaign_id: int, node: str, shards: int = 1) -> list[LeaseRef]:
    await svc.cluster.ensure({("traffic", campaign_id): shards})
    won = await svc.cluster.claim("traffic", campaign_id, shards, node, shards, LEASE_SECONDS)
    return [LeaseRef("traffic", campaign_id, r.shard, node, r.epoch) for r in won]


async def test_renew_keeps_the_held_epochs_and_reports_the_lost_ones(services: Services) -> None:
    mine = await _claim(services, 1, "a", shards=2) + await _claim(services, 2, "a")
    taken = await _claim(services, 3, "a")
    # Another node took campaign 3's shard over (its lease given back and claimed anew).
    await services.cluster.release(taken[0])
    theirs = await _claim(services, 3, "b")
    assert theirs[0].epoch == taken[0].epoch + 1
    kept = await services.cluster.renew([*mine, *taken], LEASE_SECONDS)
    assert kept == {ref.key for ref in mine}
    assert await services.cluster.renew([], LEASE_SECONDS) == set()


async def test_held_of_checks_every_lease_in_one_write(services: Services) -> None:
    mine = await _claim(services, 1, "a", shards=3)
    stale = LeaseRef("traffic", 1, 0, "a", mine[0].epoch - 1)
    other = LeaseRef("traffic", 1, 1, "b", mine[1].epoch)
    async with services.db.transaction() as conn:
        held = await services.cluster.held_of(conn, [*mine, stale, other])
        assert held == set(mine)
        assert await services.cluster.held_of(conn, []) == set()
        await services.cluster.note_active_seconds_many(
            conn, {mine[0]: 12.5, mine[2]: 3.0, stale: 99.0}
        )
    async with services.db.read() as conn:
        query = select(leases.c.shard, leases.c.active_seconds).where(leases.c.kind == "traffic")
        clocks = dict((await conn.execute(query)).all())
    assert clocks == {0: 12.5, 1: 0.0, 2: 3.0}  # the stale epoch wrote nothing


async def test_send_slots_are_never_handed_out_twice(services: Services) -> None:
    if not services.db.is_postgres:
        pytest.skip("shared send slots are kept in PostgreSQL only")
    cluster = services.cluster
    interval = 0.01
    reservations = await asyncio.gather(
        *(cluster.reserve_slots("account:1", 3, interval) for _ in range(10))
    )
    firsts = sorted(first for first, _now in reservations)
    for earlier, later in itertools.pairwise(firsts):
        assert later - earlier >= 3 * interval - 1e-6  # each chunk after the one before
    first, now = reservations[0]
    assert abs(first - now) < 5.0  # epoch seconds, on the database's clock
