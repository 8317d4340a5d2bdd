"""The delivery ledger on SQLite and PostgreSQL: one claim per recipient, counts from the rows."""

from __future__ import annotations

import asyncio

from campaignd.domain.leases import LeaseRef
from campaignd.services import Services
from campaignd.store.messaging_repo import DeliveryOutcome


async def _campaign(svc: Services, contacts: int) -> tuple[int, int]:
    account = await svc.messaging.create_account(
        {"name": "a", "channel": "log", "config": {"path": "/dev/null"}, "secrets": None}
    )
    audience = await svc.messaging.create_audience("people")
    await svc.messaging.add_contacts(
        audience["id"],
        [
            {"external_id": f"e{i}", "address": f"e{i}@x.test", "attributes": {}}
            for i in range(contacts)
        ],
    )
    row = await svc.messaging.create_campaign(
        {
            "name": "c",
            "account_id": account["id"],
            "audience_id": audience["id"],
            "message": "hi",
            "recipient_limit": contacts,
        }
    )
    return row["id"], audience["id"]


async def test_a_recipient_can_be_claimed_once(services: Services) -> None:
    campaign, audience = await _campaign(services, 50)
    rows = await services.messaging.candidates(campaign, audience, 0, 50)
    claims = [(r["id"], None) for r in rows]
    results = await asyncio.gather(*(services.messaging.claim(campaign, claims) for _ in range(4)))
    winners = [cid for won in results for cid in won]
    assert sorted(winners) == sorted(r["id"] for r in rows), "each contact won by exactly one claim"
    assert await services.messaging.candidates(campaign, audience, 0, 50) == []


async def test_counts_follow_the_ledger(services: Services) -> None:
    campaign, audience = await _campaign(services, 10)
    rows = await services.messaging.candidates(campaign, audience, 0, 10)
    await services.messaging.claim(campaign, [(r["id"], "A") for r in rows])
    await services.messaging.record(
        campaign,
        [
            DeliveryOutcome(r["id"], ok=i < 6, attempts=1, error=None if i < 6 else "HTTP 500")
            for i, r in enumerate(rows[:8])
        ],
    )
    await services.messaging.release(campaign, [rows[8]["id"]])
    counts = (await services.messaging.counts([campaign]))[campaign]
    assert counts == {"sent": 6, "failed": 2, "sending": 1}
    assert await services.messaging.count_eligible(campaign, audience) == 1
    in_doubt = await services.messaging.in_doubt(campaign, 0, 10)
    assert [r["id"] for r in in_doubt] == [rows[9]["id"]]
    assert await services.messaging.settle_in_doubt(campaign, "in doubt") == 1
    assert (await services.messaging.variant_counts(campaign))["A"]["failed"] == 3
    reasons = await services.messaging.failure_reasons(campaign)
    assert {r["reason"]: r["count"] for r in reasons} == {"HTTP 500": 2, "in doubt": 1}
    series = await services.messaging.series(campaign, 60, 10)
    assert sum(p["sent"] for p in series) == 6 and sum(p["failed"] for p in series) == 3


async def test_suppression_is_case_insensitive(services: Services) -> None:
    campaign, audience = await _campaign(services, 3)
    await services.messaging.suppress("E1@X.TEST", "asked")
    rows = await services.messaging.candidates(campaign, audience, 0, 10)
    assert [r["external_id"] for r in rows] == ["e0", "e2"]


async def test_view_figures_agree_with_counts_holders_and_audience_sizes(
    services: Services,
) -> None:
    campaign, audience = await _campaign(services, 10)
    other, other_audience = await _campaign(services, 3)
    idle, idle_audience = await _campaign(services, 0)
    rows = await services.messaging.candidates(campaign, audience, 0, 10)
    await services.messaging.claim(campaign, [(r["id"], None) for r in rows])
    await services.messaging.record(
        campaign,
        [
            DeliveryOutcome(r["id"], ok=i < 4, attempts=1, error=None)
            for i, r in enumerate(rows[:5])
        ],
    )
    await services.cluster.ensure({("message", campaign): 2, ("message", other): 1})
    await services.cluster.claim("message", campaign, 2, "node-b", 2, 15.0)
    await services.cluster.claim("message", other, 1, "node-a", 1, 15.0)
    await services.cluster.release(
        LeaseRef("message", other, 0, "node-a", 1)
    )  # given back: no longer a holder
    ids = [campaign, other, idle]
    figures = await services.messaging.view_figures(ids)
    assert figures.counts == await services.messaging.counts(ids)
    assert figures.counts[campaign] == {"sent": 4, "failed": 1, "sending": 5}
    # Each campaign's own audience, found from its id; an empty one has no row (a view reads 0).
    sizes = await services.messaging.contact_counts([audience, other_audience, idle_audience])
    assert sizes[idle_audience] == 0
    assert figures.audience_sizes == {audience: sizes[audience], other_audience: 3}
    holders = await services.cluster.holders("message", ids)
    assert figures.holders == {
        cid: [(x.shard, x.holder) for x in held] for cid, held in holders.items()
    }
    assert figures.holders == {campaign: [(0, "node-b"), (1, "node-b")]}
    empty = await services.messaging.view_figures([])
    assert empty.counts == {} and empty.holders == {} and empty.audience_sizes == {}
