"""Message-operations storage on SQLite and PostgreSQL: the log, retries, follow-ups, memory."""

from __future__ import annotations

import tracemalloc

import pytest
from sqlalchemy import insert

from campaignd.api.routers.deliveries import CSV_COLUMNS, _csv_line
from campaignd.services import Services
from campaignd.store import operations_repo
from campaignd.store.db import utcnow
from campaignd.store.messaging_repo import DeliveryOutcome
from campaignd.store.tables import contacts, deliveries


async def _campaign(svc: Services, count: int) -> tuple[int, int, list[int]]:
    account = await svc.messaging.create_account(
        {"name": "a", "channel": "log", "config": {"path": "x.log"}}
    )
    audience = (await svc.messaging.create_audience("people"))["id"]
    await svc.messaging.add_contacts(
        audience,
        [
            {"external_id": f"e{i}", "address": f"e{i}@x.test", "attributes": {}}
            for i in range(count)
        ],
    )
    campaign = await svc.messaging.create_campaign(
        {
            "name": "c",
            "account_id": account["id"],
            "audience_id": audience,
            "message": "m",
            "recipient_limit": 100,
        }
    )
    ids = [c["id"] for c in await svc.messaging.list_contacts(audience, 0, count)]
    return campaign["id"], audience, ids


async def test_the_log_names_claims_in_doubt_and_retry_claims_only_failed_rows(
    services: Services,
) -> None:
    campaign, _, ids = await _campaign(services, 4)
    repo, ops = services.messaging, services.message_app.operations
    assert await repo.claim(campaign, [(i, None) for i in ids]) == set(ids)
    await repo.record(
        campaign,
        [DeliveryOutcome(ids[0], True, 1, None), DeliveryOutcome(ids[1], False, 3, "HTTP 500")],
    )
    statuses = {
        r.external_id: r.status for r in await ops.delivery_page(campaign, None, None, 0, 10)
    }
    assert statuses == {"e0": "sent", "e1": "failed", "e2": "in_doubt", "e3": "in_doubt"}
    assert len(await ops.delivery_page(campaign, "in_doubt", None, 0, 10)) == 2
    assert [r.external_id for r in await ops.delivery_page(campaign, None, "E1", 0, 10)] == ["e1"]
    for literal in ("%", "_", "\\", "e%1"):  # searched for as typed, never as a pattern
        assert await ops.delivery_page(campaign, None, literal, 0, 10) == [], literal
    page = await ops.delivery_page(campaign, None, None, ids[1], 10)
    assert [r.external_id for r in page] == ["e2", "e3"]  # keyset: after the cursor
    assert await ops.requeue_failed(campaign, "never") == 1
    assert [r.status for r in await ops.delivery_page(campaign, "retrying", None, 0, 10)] == [
        "retrying"
    ]
    # The retry is claimed again (attempts kept); sent and in-flight rows are not.
    assert await repo.claim(campaign, [(i, None) for i in ids]) == {ids[1]}
    await repo.record(campaign, [DeliveryOutcome(ids[1], True, 1, None)])
    row = (await ops.delivery_page(campaign, None, "e1", 0, 10))[0]
    assert (row.status, row.attempts, row.error) == ("sent", 4, None)


async def test_in_doubt_failures_are_never_retried(services: Services) -> None:
    campaign, _, ids = await _campaign(services, 2)
    repo, ops = services.messaging, services.message_app.operations
    await repo.claim(campaign, [(i, None) for i in ids])
    await repo.record(campaign, [DeliveryOutcome(ids[0], False, 1, "SMTP 451")])
    await repo.settle_in_doubt(campaign, "in doubt after a crash")
    assert await ops.requeue_failed(campaign, "in doubt after a crash") == 1


async def test_follow_up_filters_select_by_engagement(services: Services) -> None:
    first, audience, ids = await _campaign(services, 5)
    repo = services.messaging
    await repo.claim(first, [(i, None) for i in ids[:4]])
    await repo.record(first, [DeliveryOutcome(i, True, 1, None) for i in ids[:3]])
    await repo.engage(first, ids[0], "click")
    await repo.engage(first, ids[1], "conversion")
    second, _, _ = await _campaign(services, 0)
    non_clickers = [{"campaign": first, "received": True, "clicked": False}]
    rows = await repo.candidates(second, audience, 0, 100, non_clickers)
    assert [r["id"] for r in rows] == ids[1:3]
    assert await repo.count_eligible(second, audience, non_clickers) == 2
    never = [{"campaign": first, "received": False}]
    assert [r["id"] for r in await repo.candidates(second, audience, 0, 100, never)] == ids[3:]
    converted = [{"campaign": first, "converted": True}]
    assert [r["id"] for r in await repo.candidates(second, audience, 0, 100, converted)] == [ids[1]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_csv_export_streams_in_flat_memory(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Peak memory exporting 4 and 24 pages of rows is the same: one page at a time.

    (Pages of 1,000 here to keep the test short under tracemalloc; bench/delivery_export.py
    measures the real server's RSS streaming 1,000,000 rows with the real page size.)
    """
    monkeypatch.setattr(operations_repo, "EXPORT_PAGE", 1000)
    campaign, audience, _ = await _campaign(services, 0)
    ops = services.message_app.operations
    next_id = 1

    async def grow(to: int) -> None:
        nonlocal next_id
        now = utcnow()
        async with services.db.transaction() as conn:
            while next_id <= to:
                chunk = range(next_id, min(to, next_id + 9999) + 1)
                await conn.execute(
                    insert(contacts),
                    [
                        {
                            "id": i,
                            "audience_id": audience,
                            "external_id": f"x{i}",
                            "address": f"x{i}@bulk.test",
                            "attributes": {},
                            "created_at": now,
                        }
                        for i in chunk
                    ],
                )
                await conn.execute(
                    insert(deliveries),
                    [
                        {
                            "campaign_id": campaign,
                            "contact_id": i,
                            "state": "sent",
                            "attempts": 1,
                            "claimed_at": now,
                            "finished_at": now,
                        }
                        for i in chunk
                    ],
                )
                next_id = chunk[-1] + 1

    async def export_peak() -> tuple[int, int]:
        rows, size = 0, 0
        tracemalloc.start()
        try:
            size += len(_csv_line(list(CSV_COLUMNS)))
            async for page in ops.delivery_log(campaign, None, None):
                size += len("".join(_csv_line([getattr(r, c) for c in CSV_COLUMNS]) for r in page))
                rows += len(page)
            return rows, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    await grow(4_000)
    small_rows, small_peak = await export_peak()
    await grow(24_000)
    big_rows, big_peak = await export_peak()
    assert (small_rows, big_rows) == (4_000, 24_000)
    assert big_peak < small_peak * 1.3 + 256 * 1024, (small_peak, big_peak)
