"""Reads sent straight to asyncpg (store/driver_reads.py) give the rows SQLAlchemy gives, and
outlive the server dropping their connections."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import OperationalError

from campaignd.domain.statuses import CampaignStatus
from campaignd.services import Services
from campaignd.store.cluster_repo import _live_holders
from campaignd.store.db import Database
from campaignd.store.messaging_repo import (
    _FIRST_CONTACT_OF_CAMPAIGN,
    _RUNNING,
    _RUNNING_BY_ID,
    _RUNNING_VERSIONS,
    _view_figures_query,
)
from campaignd.store.outage import is_unavailable
from campaignd.store.rows import by_id, listing, to_dicts
from campaignd.store.tables import message_campaigns, traffic_campaigns
from campaignd.store.traffic_repo import (
    _WANTED_BY_ID,
    _WANTED_VERSIONS,
    _WINDOWS_AFTER,
    _profiles_of_campaign,
)
from campaignd.traffic.stats import WindowRecorder
from support.net import free_port

pytestmark = pytest.mark.postgres

T, M = traffic_campaigns, message_campaigns
_NOT_AMONG = select(T.c.id).where(T.c.id.not_in(bindparam("ids", expanding=True)))


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: `services` (conftest) runs on it."""
    return postgres_url


async def _campaigns(svc: Services) -> tuple[int, int]:
    """A running traffic campaign with a stats window, and a running message campaign with a
    contact and a held lease."""
    profile = await svc.traffic.create_profile(
        {"name": "p", "requests": [{"method": "GET", "path": "/"}], "headers": {}}
    )
    traffic = await svc.traffic.create_campaign(
        {
            "name": "t",
            "target_url": "http://127.0.0.1:9",
            "user_profile_ids": [profile["id"]],
            "requests_per_minute": 60.0,
            "duration_minutes": 1.0,
            "total_users": 2,
        }
    )
    recorder = WindowRecorder()
    recorder.success(0.012)
    recorder.failure(0.2, "HTTP 500")
    await svc.traffic.record_window(traffic["id"], recorder.cut(), 60.0, 1.0)
    account = await svc.messaging.create_account(
        {"name": "a", "channel": "log", "config": {"path": "/dev/null"}, "secrets": None}
    )
    audience = await svc.messaging.create_audience("people")
    await svc.messaging.add_contacts(
        audience["id"], [{"external_id": "e0", "address": "e0@x.test", "attributes": {"n": 1}}]
    )
    message = await svc.messaging.create_campaign(
        {
            "name": "m",
            "account_id": account["id"],
            "audience_id": audience["id"],
            "message": "hi",
            "recipient_limit": 5,
            "segment": {"all": [{"attribute": "n", "op": "eq", "value": 1}]},
        }
    )
    async with svc.db.transaction() as conn:
        running = CampaignStatus.RUNNING.value
        await conn.execute(
            update(T).where(T.c.id == traffic["id"]).values(status=running, generating=True)
        )
        await conn.execute(update(M).where(M.c.id == message["id"]).values(status=running))
    await svc.cluster.ensure({("message", message["id"]): 1})
    await svc.cluster.claim("message", message["id"], 1, "node-a", 1, 15.0)
    return traffic["id"], message["id"]


async def test_each_read_gives_what_sqlalchemy_gives(services: Services) -> None:
    traffic, message = await _campaigns(services)
    reads: list[tuple[Any, dict[str, Any]]] = [
        (by_id(T), {"row_id": traffic}),
        (by_id(M), {"row_id": message}),
        (listing(T, False, False), {"status": None}),
        (listing(M, False, True), {"status": "running"}),
        (_profiles_of_campaign(True), {"campaign_id": traffic}),
        (_WINDOWS_AFTER, {"campaign_id": traffic, "after_id": 0}),
        (_view_figures_query(True), {"ids": [message, message + 1]}),
        (_live_holders(True), {"kind": "message", "ids": [message]}),
        (_FIRST_CONTACT_OF_CAMPAIGN, {"id": message}),
        (_WANTED_VERSIONS, {}),
        (_WANTED_BY_ID, {"ids": [traffic]}),
        (_RUNNING, {}),
        (_RUNNING_VERSIONS, {}),
        (_RUNNING_BY_ID, {"ids": [message]}),
    ]
    for statement, params in reads:
        async with services.db.read() as conn:
            expected = to_dicts((await conn.execute(statement, params)).all())
        assert expected, f"the test's data gives rows for {statement}"
        assert to_dicts(await services.db.fetch(statement, params)) == expected
        rows = await services.db.fetch(statement, params)
        assert rows[0]._fields == tuple(expected[0]), "named as SQLAlchemy names them"


async def test_a_list_parameter_may_be_empty_or_excluding(services: Services) -> None:
    traffic, _ = await _campaigns(services)
    assert await services.db.fetch(by_id(T), {"row_id": traffic + 1}) == []
    assert await services.db.fetch(_WANTED_BY_ID, {"ids": []}) == []
    assert [r.id for r in await services.db.fetch(_NOT_AMONG, {"ids": []})] == [traffic]
    assert await services.db.fetch(_NOT_AMONG, {"ids": [traffic]}) == []


async def test_a_read_outlives_the_server_dropping_its_connections(
    services: Services, postgres_url: str
) -> None:
    traffic, _ = await _campaigns(services)
    before = await services.traffic.get_campaign(traffic)
    admin = await asyncpg.connect(services.db.driver_dsn())
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert dropped >= 1
    assert await services.traffic.get_campaign(traffic) == before


async def test_an_unreachable_server_is_reported_as_unavailable() -> None:
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    try:
        with pytest.raises(OperationalError) as raised:
            await db.fetch(by_id(T), {"row_id": 1})
        assert is_unavailable(raised.value), "the API answers 503 and asks to retry"
    finally:
        await db.close()
