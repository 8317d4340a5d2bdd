"""The same storage suite on SQLite and PostgreSQL: CRUD, compare-and-set, stats windows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import select, update

from campaignd.domain.errors import Conflict, IllegalTransition, NotFound
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.engine import stats_writer
from campaignd.engine.stats_writer import StatsWriter
from campaignd.services import Services
from campaignd.store.tables import campaign_events, traffic_campaigns
from campaignd.store.traffic_repo import PendingWindow, in_order
from campaignd.traffic.stats import WindowRecorder

PROFILE = {"name": "browse", "requests": [{"method": "GET", "path": "/", "weight": 1}]}


async def _campaign(svc: Services) -> dict:  # type: ignore[type-arg]
    profile = await svc.traffic.create_profile({**PROFILE, "headers": {}, "think_time_ms": 0})
    return await svc.traffic.create_campaign(
        {
            "name": "c",
            "target_url": "http://127.0.0.1:9",
            "user_profile_ids": [profile["id"]],
            "requests_per_minute": 60.0,
            "duration_minutes": 1.0,
            "total_users": 2,
        }
    )


async def test_profile_and_campaign_round_trip(services: Services) -> None:
    campaign = await _campaign(services)
    assert campaign["status"] == "draft"
    fetched = await services.traffic.get_campaign(campaign["id"])
    assert fetched["user_profile_ids"] == campaign["user_profile_ids"]
    updated = await services.traffic.update_campaign(campaign["id"], {"requests_per_minute": 90.0})
    assert updated["requests_per_minute"] == 90.0
    assert updated["version"] == campaign["version"] + 1


async def test_an_edit_is_stored_with_its_event_in_one_go(services: Services) -> None:
    campaign = await _campaign(services)
    updated = await services.traffic.update_campaign(campaign["id"], {"name": "renamed"})
    assert (updated["name"], updated["version"]) == ("renamed", campaign["version"] + 1)
    assert (await services.traffic.get_campaign(campaign["id"]))["name"] == "renamed"
    async with services.db.read() as conn:
        events = (
            await conn.execute(
                select(campaign_events.c.event, campaign_events.c.details, campaign_events.c.at)
                .where(campaign_events.c.campaign_id == campaign["id"])
                .order_by(campaign_events.c.id)
            )
        ).all()
    assert [(e.event, e.details) for e in events] == [
        ("created", None),
        ("edited", {"name": "renamed"}),
    ]
    assert events[-1].at is not None
    with pytest.raises(NotFound):
        await services.traffic.update_campaign(campaign["id"] + 1000, {"name": "x"})
    async with services.db.read() as conn:
        count = (
            await conn.execute(
                select(campaign_events.c.id).where(
                    campaign_events.c.campaign_id == campaign["id"] + 1000
                )
            )
        ).all()
    assert count == []


async def test_an_edit_wakes_the_listening_nodes_with_its_notify(services: Services) -> None:
    campaign = await _campaign(services)
    if not services.db.is_postgres:
        edited = await services.traffic.update_campaign(campaign["id"], {"name": "n"}, "x")
        assert edited["name"] == "n"  # one engine on SQLite: nothing to notify
        return
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(services.db.driver_dsn())
    try:
        await listener.add_listener("campaignd", lambda *args: heard.put_nowait(args[-1]))
        edited = await services.traffic.update_campaign(
            campaign["id"], {"name": "n"}, notify=f"traffic:{campaign['id']}"
        )
        assert await asyncio.wait_for(heard.get(), 5) == f"traffic:{campaign['id']}"
        assert edited["name"] == "n" and set(edited) == set(campaign)
        with pytest.raises(NotFound):
            await services.traffic.update_campaign(campaign["id"] + 1000, {"name": "x"}, "gone")
        await services.traffic.update_campaign(campaign["id"], {"name": "m"}, "second")
        assert await asyncio.wait_for(heard.get(), 5) == "second"  # none for the missing one
    finally:
        await listener.close()


async def test_a_campaigns_profiles_are_read_by_its_id(services: Services) -> None:
    campaign = await _campaign(services)
    other = await services.traffic.create_profile(
        {**PROFILE, "name": "other", "headers": {}, "think_time_ms": 0}
    )
    await services.traffic.create_profile({**PROFILE, "name": "unused", "headers": {}})
    ids = [other["id"], *campaign["user_profile_ids"]]
    await services.traffic.update_campaign(campaign["id"], {"user_profile_ids": ids})
    found = await services.traffic.profiles_of_campaign(campaign["id"])
    assert sorted(found) == sorted(ids)
    assert [p["name"] for p in in_order(ids, found)] == ["other", "browse"]
    assert await services.traffic.profiles_of_campaign(campaign["id"] + 1000) == {}
    with pytest.raises(NotFound):
        in_order([*ids, 999_999], found)


async def test_a_list_holds_the_same_rows_as_reading_each_by_id(services: Services) -> None:
    first = await _campaign(services)
    second = await _campaign(services)
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with services.db.transaction() as conn:
        await conn.execute(
            update(traffic_campaigns)
            .where(traffic_campaigns.c.id == second["id"])
            .values(start_time=start)
        )
    listed = {c["id"]: c for c in await services.traffic.list_campaigns()}
    for campaign in (first, second):
        alone = await services.traffic.get_campaign(campaign["id"])
        assert listed[campaign["id"]] == alone
        assert alone["created_at"].endswith("Z")
    assert listed[second["id"]]["start_time"] == "2030-01-02T03:04:05Z", "set in one row only"
    assert listed[first["id"]]["start_time"] is None


async def test_profile_in_use_cannot_be_deleted(services: Services) -> None:
    campaign = await _campaign(services)
    with pytest.raises(Conflict):
        await services.traffic.delete_profile(campaign["user_profile_ids"][0])
    await services.traffic.delete_campaign(campaign["id"])
    await services.traffic.delete_profile(campaign["user_profile_ids"][0])
    with pytest.raises(NotFound):
        await services.traffic.get_profile(campaign["user_profile_ids"][0])


async def test_transition_is_compare_and_set_and_audited(services: Services) -> None:
    campaign = await _campaign(services)
    previous = await services.traffic.transition(campaign["id"], CampaignStatus.RUNNING)
    assert previous is CampaignStatus.DRAFT
    with pytest.raises(IllegalTransition) as info:
        await services.traffic.transition(campaign["id"], CampaignStatus.DRAFT)
    assert info.value.context["current_status"] == "running"
    async with services.db.transaction() as conn:
        events = (
            await conn.execute(
                select(campaign_events.c.event, campaign_events.c.to_status).where(
                    campaign_events.c.campaign_id == campaign["id"]
                )
            )
        ).all()
    assert [tuple(e) for e in events] == [("created", "draft"), ("status", "running")]


async def test_concurrent_transitions_have_exactly_one_winner(services: Services) -> None:
    campaign = await _campaign(services)
    await services.traffic.transition(campaign["id"], CampaignStatus.RUNNING)

    async def stop() -> str:
        try:
            await services.traffic.transition(campaign["id"], CampaignStatus.STOPPED)
            return "won"
        except IllegalTransition as exc:
            return str(exc.context["current_status"])

    outcomes = await asyncio.gather(*(stop() for _ in range(8)))
    assert outcomes.count("won") == 1
    assert outcomes.count("stopped") == 7


async def test_stats_windows_merge_without_losing_precision(services: Services) -> None:
    campaign = await _campaign(services)
    expected_max = 0.0
    for window_index in range(3):
        recorder = WindowRecorder()
        for i in range(100):
            latency = 0.001 * (i + 1) * (window_index + 1)
            expected_max = max(expected_max, latency)
            recorder.success(latency)
        recorder.failure(0.5, "HTTP 500")
        await services.traffic.record_window(
            campaign["id"], recorder.cut(), 60.0, window_index + 1.0
        )
    totals = await services.traffic.cumulative_stats(campaign["id"])
    assert totals.succeeded == 300 and totals.failed == 3
    assert totals.histogram.get_total_count() == 303
    assert totals.histogram.get_max_value() >= int(expected_max * 1_000_000)
    assert totals.histogram.get_value_at_percentile(99) <= totals.histogram.get_max_value()
    fetched = await services.traffic.get_campaign(campaign["id"])
    assert fetched["active_seconds"] == 3.0


async def test_the_stats_writer_stops_at_once_and_writes_what_was_pending(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_writer, "FLUSH_SECONDS", 30.0)
    campaign = await _campaign(services)
    writer = StatsWriter(services.traffic)
    writer.start()
    await asyncio.sleep(0)  # its loop now waits for the next flush, 30 s away
    recorder = WindowRecorder()
    recorder.success(0.01)
    writer.submit(PendingWindow(campaign["id"], recorder.cut(), 60.0, 1.0))
    async with asyncio.timeout(5):  # not the 30 s to the next flush
        await writer.stop()
    assert (await services.traffic.cumulative_stats(campaign["id"])).succeeded == 1


async def test_unknown_ids_are_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.traffic.get_campaign(424242)
    with pytest.raises(NotFound):
        await services.traffic.transition(424242, CampaignStatus.RUNNING, Actor.OPERATOR)
    with pytest.raises(NotFound) as info:
        await services.traffic.get_profiles([1, 99])
    assert info.value.context["missing"] == [1, 99]
