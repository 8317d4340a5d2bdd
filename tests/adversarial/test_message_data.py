"""Bad data never stalls a message campaign, never breaks a list, never becomes a 500.

Each test runs on SQLite and PostgreSQL, against the real app in-process (ASGI) over a real
migrated database; senders deliver to a loopback webhook sink or a real SMTP server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, text, update

from campaignd.api.app import create_app
from campaignd.domain.pacing import Pacer
from campaignd.domain.statuses import Actor, CampaignStatus
from campaignd.messaging.channels.base import OutgoingMessage, SendResult
from campaignd.messaging.sender import MessageRunner
from campaignd.services import Services
from campaignd.store.db import utcnow
from campaignd.store.tables import contacts, message_campaigns
from support.messaging_flow import delivered
from support.target import CountingTarget


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services=services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://campaignd") as client:
        yield client


async def _ok(response: Any, status: int = 200) -> Any:
    response = await response
    assert response.status_code == status, response.text
    return response.json()


async def _unprocessable(response: Any, field: str | None = None) -> dict[str, Any]:
    response = await response
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"].endswith(".")
    if field is not None:
        assert body["field"] == field, body
    return dict(body)


async def _audience(api: httpx.AsyncClient, good: int) -> int:
    audience = (await _ok(api.post("/api/audiences", json={"name": "fans"}), 201))["id"]
    rows = [
        {"external_id": f"good{i}", "address": f"good{i}@x.test", "attributes": {"name": f"G{i}"}}
        for i in range(good)
    ]
    result = await _ok(api.post(f"/api/audiences/{audience}/contacts", json={"contacts": rows}))
    assert result["imported"] == good
    return int(audience)


async def _insert_contacts(svc: Services, audience: int, rows: list[dict[str, Any]]) -> None:
    """Old data: rows written before import refused them, straight into the database."""
    values = [
        {"attributes": {"name": "Old"}, **r, "audience_id": audience, "created_at": utcnow()}
        for r in rows
    ]
    async with svc.db.transaction() as conn:
        await conn.execute(insert(contacts), values)


async def _finished(api: httpx.AsyncClient, campaign: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = await _ok(api.get(f"/api/campaigns/{campaign}"))
        if view["status"] in ("completed", "failed") and not view["sending"]:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign} still {view.get('status')} after {timeout}s: {view}")


async def _reasons(api: httpx.AsyncClient, campaign: int) -> dict[str, int]:
    report = await _ok(api.get(f"/api/campaigns/{campaign}/report"))
    return {r["reason"]: r["count"] for r in report["failures_by_reason"]}


# A. a send error is one failed delivery, never a dead sender --------------------------------
async def test_line_breaks_in_old_external_ids_fail_those_deliveries_and_the_rest_arrive(
    api: httpx.AsyncClient, services: Services, target: CountingTarget
) -> None:
    account = await _ok(
        api.post(
            "/api/accounts",
            json={"name": "hook", "channel": "webhook", "config": {"url": f"{target.url}/hook"}},
        ),
        201,
    )
    audience = await _audience(api, 20)
    await _insert_contacts(
        services,
        audience,
        [{"external_id": f"bad{i}\r\nX-Evil: 1", "address": f"bad{i}@x.test"} for i in range(70)],
    )
    campaign = await _ok(
        api.post(
            "/api/campaigns",
            json={
                "name": "c",
                "account_id": account["id"],
                "audience_id": audience,
                "message": "Hi {{ name }}",
                "limit": 1000,
            },
        ),
        201,
    )
    await _ok(api.post(f"/api/campaigns/{campaign['id']}/start"))
    view = await _finished(api, campaign["id"])
    assert view["status"] == "completed"
    assert (view["sent_count"], view["failed_count"], view["sending_count"]) == (20, 70, 0)
    received = sorted(d["recipient"]["external_id"] for d in delivered(target))
    assert received == sorted(f"good{i}" for i in range(20))
    assert await _reasons(api, campaign["id"]) == {"external_id contains a line break": 70}


async def test_a_subject_with_a_line_break_fails_that_email_and_the_rest_are_sent(
    api: httpx.AsyncClient, services: Services, smtp_server: Any
) -> None:
    mailbox, port = smtp_server
    config = {"host": "127.0.0.1", "port": port, "from": "news@x.test", "retry_base_seconds": 0.01}
    account = await _ok(
        api.post("/api/accounts", json={"name": "mail", "channel": "smtp", "config": config}), 201
    )
    audience = await _audience(api, 20)
    names = [
        {"external_id": f"nl{i}", "address": f"nl{i}@x.test", "name": f"A\nB{i}"} for i in range(10)
    ]
    result = await _ok(api.post(f"/api/audiences/{audience}/contacts", json={"contacts": names}))
    assert result["imported"] == 10, "line breaks in attributes are fine; only headers refuse them"
    await _insert_contacts(
        services,
        audience,
        [
            {"external_id": f"to{i}", "address": f"to{i}@x.test\r\nBcc: all@x.test"}
            for i in range(5)
        ],
    )
    campaign = await _ok(
        api.post(
            "/api/campaigns",
            json={
                "name": "c",
                "account_id": account["id"],
                "audience_id": audience,
                "subject": "Hello {{ name }}",
                "message": "Hi {{ name }}",
                "limit": 1000,
            },
        ),
        201,
    )
    await _ok(api.post(f"/api/campaigns/{campaign['id']}/start"))
    view = await _finished(api, campaign["id"])
    assert view["status"] == "completed"
    assert (view["sent_count"], view["failed_count"], view["sending_count"]) == (20, 15, 0)
    assert sorted(m["To"] for m in mailbox.messages) == sorted(f"good{i}@x.test" for i in range(20))
    assert all("\n" not in m["Subject"] for m in mailbox.messages)
    assert await _reasons(api, campaign["id"]) == {
        "subject contains a line break": 10,
        "address contains a line break": 5,
    }


class _ExplodingChannel:
    """A channel that raises for some recipients: any exception a channel might throw."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        await asyncio.sleep(0)
        if message.external_id.startswith("bad"):
            raise RuntimeError(f"kaboom for {message.external_id}")
        self.sent.append(message.external_id)
        return SendResult(ok=True)

    async def close(self) -> None:
        return None


async def test_an_exception_from_a_channel_is_a_failed_delivery_and_no_worker_dies(
    services: Services,
) -> None:
    repo = services.messaging
    account = await repo.create_account(
        {"name": "a", "channel": "webhook", "config": {"url": "http://127.0.0.1:9"}}
    )
    audience = (await repo.create_audience("people"))["id"]
    await _insert_contacts(
        services,
        audience,
        [
            {"external_id": f"{'bad' if i % 4 else 'good'}{i}", "address": f"p{i}@x.test"}
            for i in range(100)
        ],
    )
    row = await repo.create_campaign(
        {
            "name": "c",
            "account_id": account["id"],
            "audience_id": audience,
            "message": "hi",
            "recipient_limit": 1000,
        }
    )
    await repo.transition(row["id"], CampaignStatus.RUNNING, Actor.OPERATOR)
    ended = asyncio.Event()
    channel = _ExplodingChannel()
    runner = MessageRunner(
        await repo.get_campaign(row["id"]),
        "webhook",
        channel,
        repo,
        campaign_pacer=Pacer(None),
        account_pacer=Pacer(None),
        concurrency=4,  # 75 raising sends would kill every worker many times over
        claim_batch=20,
        segment=None,
        on_exit=lambda _runner: ended.set(),
    )
    await runner.start()
    await asyncio.wait_for(ended.wait(), 20)
    assert sorted(channel.sent) == sorted(f"good{i}" for i in range(0, 100, 4))
    assert (await repo.counts([row["id"]]))[row["id"]] == {"sent": 25, "failed": 75, "sending": 0}
    assert (await repo.get_campaign(row["id"]))["status"] == "completed"
    reasons = await repo.failure_reasons(row["id"], limit=100)
    assert all(r["reason"].startswith("send error: RuntimeError: kaboom") for r in reasons)
    assert sum(r["count"] for r in reasons) == 75


# B. segments: operands checked on the way in, a bad stored one never breaks a list ---------
BAD_SEGMENTS = [
    ([{"attribute": "name", "tags": [{"a": 1}]}], "segment[0].tags"),
    ([{"attribute": "name", "in": [[1]]}], "segment[0].in"),
    ([{"attribute": "age", "range": {"min": "abc"}}], "segment[0].range.min"),
    ([{"attribute": "age", "range": {"max": [3]}}], "segment[0].range.max"),
    ([{"attribute": "name", "equals": {"x": 1}}], "segment[0].equals"),
    ({"all": [{"attribute": "name", "not_equals": ["x"]}]}, "segment[0].not_equals"),
]


@pytest.mark.parametrize(("segment", "field"), BAD_SEGMENTS)
async def test_segment_operands_of_the_wrong_type_are_422_and_nothing_is_stored(
    api: httpx.AsyncClient, target: CountingTarget, segment: Any, field: str
) -> None:
    account = await _ok(
        api.post(
            "/api/accounts",
            json={"name": "hook", "channel": "webhook", "config": {"url": f"{target.url}/h"}},
        ),
        201,
    )
    audience = await _audience(api, 3)
    body = {
        "name": "c",
        "account_id": account["id"],
        "audience_id": audience,
        "message": "Hi",
        "limit": 10,
        "segment": segment,
    }
    error = await _unprocessable(api.post("/api/campaigns", json=body), field)
    assert field in error["error"]
    assert await _ok(api.get("/api/campaigns")) == []
    preview = api.post(f"/api/audiences/{audience}/segment-preview", json={"segment": segment})
    await _unprocessable(preview, field)


async def test_a_stored_segment_that_cannot_work_never_breaks_a_list(
    api: httpx.AsyncClient, services: Services, target: CountingTarget
) -> None:
    account = await _ok(
        api.post(
            "/api/accounts",
            json={"name": "hook", "channel": "webhook", "config": {"url": f"{target.url}/h"}},
        ),
        201,
    )
    audience = await _audience(api, 5)
    body = {"account_id": account["id"], "audience_id": audience, "message": "Hi", "limit": 10}
    await _ok(api.post("/api/campaigns", json={**body, "name": "good"}), 201)
    bad = await _ok(
        api.post(
            "/api/campaigns",
            json={**body, "name": "bad", "segment": [{"attribute": "name", "exists": True}]},
        ),
        201,
    )
    broken = [{"attribute": "name", "tags": [{"a": 1}]}]  # accepted before operands were checked
    async with services.db.transaction() as conn:
        await conn.execute(
            update(message_campaigns)
            .where(message_campaigns.c.id == bad["id"])
            .values(segment=broken)
        )
    services.message_app.forget_reachable()

    listed = await _ok(api.get("/api/campaigns"))
    assert [c["name"] for c in listed] == ["good", "bad"]
    assert listed[0]["total_recipients"] == 5 and listed[0]["last_error"] is None
    shown = await _ok(api.get(f"/api/campaigns/{bad['id']}"))
    assert shown["total_recipients"] == 0
    assert "stored segment cannot be used" in shown["last_error"]
    assert "segment[0].tags" in shown["last_error"]
    seed = await _ok(api.get(f"/campaign_data/{bad['id']}"))
    assert seed["total_recipients"] == 0

    await _ok(api.post(f"/api/campaigns/{bad['id']}/start"))
    view = await _finished(api, bad["id"])
    assert view["status"] == "failed" and "stored segment cannot be used" in view["last_error"]
    assert view["sent_count"] == 0 and target.total == 0
    assert len(await _ok(api.get("/api/campaigns"))) == 2


# C. text no database can store is a 422, never a 500 -----------------------------------------
NUL = "a\u0000b"


async def test_nul_anywhere_in_a_request_body_is_422_naming_the_field(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    hook = {"url": f"{target.url}/h"}
    await _unprocessable(api.post("/api/audiences", json={"name": NUL}), "name")
    await _unprocessable(api.post("/api/suppressions", json={"address": NUL}), "address")
    await _unprocessable(
        api.post("/api/suppressions", json={"address": "ok@x.test", "reason": NUL}), "reason"
    )
    await _unprocessable(
        api.post(
            "/api/accounts",
            json={"name": "a", "channel": "webhook", "config": {**hook, "signing_secret": NUL}},
        ),
        "config.signing_secret",
    )
    account = await _ok(
        api.post("/api/accounts", json={"name": "a", "channel": "webhook", "config": hook}), 201
    )
    await _unprocessable(api.patch(f"/api/accounts/{account['id']}", json={"name": NUL}), "name")
    audience = await _audience(api, 2)
    body = {"name": "c", "account_id": account["id"], "audience_id": audience, "limit": 5}
    for change, field in [
        ({"message": NUL}, "message"),
        ({"message": "hi", "name": NUL}, "name"),
        ({"message": "hi", "subject": NUL}, "subject"),
        ({"message": "hi", "segment": [{"attribute": "name", "equals": NUL}]}, "segment.0.equals"),
        ({"message": "hi", "variants": [{"name": NUL}]}, "variants.0.name"),
        ({"message": "hi", "send_window": {"start": NUL}}, "send_window.start"),
    ]:
        await _unprocessable(api.post("/api/campaigns", json={**body, **change}), field)
    campaign = await _ok(api.post("/api/campaigns", json={**body, "message": "hi"}), 201)
    cid = campaign["id"]
    await _unprocessable(api.patch(f"/api/campaigns/{cid}", json={"message": NUL}), "message")
    await _unprocessable(api.post(f"/update_campaign/{cid}", json={"session": NUL}), "session")
    await _unprocessable(
        api.post(f"/api/campaigns/{cid}/engagements", json={"external_id": NUL, "kind": "click"}),
        "external_id",
    )
    await _unprocessable(api.post("/api/campaigns/preview", json={"message": NUL}), "message")
    await _unprocessable(api.delete("/api/suppressions/a%00b"), "address")
    await _unprocessable(api.get("/api/suppressions", params={"after": NUL}), "after")
    profile = {"name": NUL, "requests": [{"path": "/"}]}
    await _unprocessable(api.post("/api/traffic/profiles", json=profile), "name")
    profile = {"name": "p", "requests": [{"path": "/", "body": {"k": NUL}}]}
    await _unprocessable(api.post("/api/traffic/profiles", json=profile), "requests.0.body.k")
    # A lone surrogate (\ud800) cannot be encoded for either database either.
    raw = b'{"name": "x\\ud800y"}'
    headers = {"Content-Type": "application/json"}
    await _unprocessable(api.post("/api/audiences", content=raw, headers=headers), "name")
    assert [a["name"] for a in await _ok(api.get("/api/audiences"))] == ["fans"]
    assert await _ok(api.get("/api/suppressions")) == []
    assert (await _ok(api.get(f"/api/campaigns/{cid}")))["message"] == "hi"


async def test_nul_in_one_contact_rejects_that_row_and_keeps_the_others(
    api: httpx.AsyncClient,
) -> None:
    audience = (await _ok(api.post("/api/audiences", json={"name": "a"}), 201))["id"]
    rows: list[dict[str, Any]] = [
        {"external_id": f"c{i}", "address": f"c{i}@x.test"} for i in range(2500)
    ]
    rows[2100] = {"external_id": "c2100", "address": "c2100@x.test", "attributes": {"n": NUL}}
    rows[2200] = {"external_id": "c\u00002200", "address": "c2200@x.test"}
    rows[2300] = {"external_id": "c2300", "address": "c2300@x.test", "city": NUL}
    rows[2400] = {"external_id": "c\t2400", "address": "c2400@x.test"}
    rows[2401] = {"external_id": "c2401", "address": "c2401@x\u007f.test"}
    result = await _ok(api.post(f"/api/audiences/{audience}/contacts", json={"contacts": rows}))
    assert result["imported"] == 2495
    assert [(r["index"], r["reason"]) for r in result["rejected"]] == [
        (2100, "attributes contains a NUL character (\\u0000)"),
        (2200, "external_id contains a control character"),
        (2300, "attributes contains a NUL character (\\u0000)"),
        (2400, "external_id contains a control character"),
        (2401, "address contains a control character"),
    ]
    csv_body = (
        'external_id,address,city\r\nk1,k1@x.test,Paris\r\n"k\n2",k2@x.test,Rome\r\n'
        "k3,k3@x.test,R\x00m\r\n"
    )
    result = await _ok(
        api.post(
            f"/api/audiences/{audience}/contacts",
            content=csv_body.encode(),
            headers={"Content-Type": "text/csv"},
        )
    )
    assert result["imported"] == 1
    assert [r["index"] for r in result["rejected"]] == [3, 4]
    assert (await _ok(api.get(f"/api/audiences/{audience}")))["contact_count"] == 2496


async def test_a_database_error_mid_import_stores_nothing(
    api: httpx.AsyncClient, services: Services
) -> None:
    """One transaction per import: a row the database refuses (here by a trigger) undoes all."""
    async with services.db.transaction() as conn:
        if services.db.is_postgres:
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.external_id = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON contacts "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON contacts "
                    "WHEN NEW.external_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
    audience = (await _ok(api.post("/api/audiences", json={"name": "a"}), 201))["id"]
    rows = [{"external_id": f"c{i}", "address": f"c{i}@x.test"} for i in range(2500)]
    rows[2100]["external_id"] = "boom"
    response = await api.post(f"/api/audiences/{audience}/contacts", json={"contacts": rows})
    assert response.status_code == 500 and "Traceback" not in response.text
    async with services.db.read() as conn:
        stored = (await conn.execute(select(func.count()).select_from(contacts))).scalar_one()
    assert stored == 0, "no half-done import"


# D. import limits: a sentence, never a 500 ---------------------------------------------------
async def test_import_limits_are_422_with_a_sentence(api: httpx.AsyncClient) -> None:
    audience = (await _ok(api.post("/api/audiences", json={"name": "a"}), 201))["id"]
    route = f"/api/audiences/{audience}/contacts"
    csv_headers = {"Content-Type": "text/csv"}

    long_field = "external_id,address,bio\nk1,k1@x.test,short\nk2,k2@x.test," + "x" * 140_000
    error = await _unprocessable(
        api.post(route, content=long_field.encode(), headers=csv_headers), "body"
    )
    assert "field larger than field limit" in error["error"] and error["line"] == 3

    deep = '{"contacts": [' + "[" * 5000 + "]" * 5000 + "]}"
    json_headers = {"Content-Type": "application/json"}
    error = await _unprocessable(api.post(route, content=deep.encode(), headers=json_headers))
    assert "nests too deeply" in error["error"]

    huge_int = '{"contacts": [{"external_id": ' + "9" * 5000 + ', "address": "a@x.test"}]}'
    await _unprocessable(api.post(route, content=huge_int.encode(), headers=json_headers), "body")

    too_many = [{"external_id": str(i), "address": "a"} for i in range(150_000)]
    error = await _unprocessable(api.post(route, json={"contacts": too_many}), "contacts")
    assert error["limit"] == 100_000 and "100,000" in error["error"]

    csv_rows = "external_id,address\n" + "".join(f"{i},a\n" for i in range(100_001))
    error = await _unprocessable(
        api.post(route, content=csv_rows.encode(), headers=csv_headers), "contacts"
    )
    assert "100,000" in error["error"]
    assert (await _ok(api.get(f"/api/audiences/{audience}")))["contact_count"] == 0

    schema = (await _ok(api.get("/openapi.json")))["paths"][
        route.replace(str(audience), "{audience_id}")
    ]
    assert "100,000" in schema["post"]["description"]


# E. the report's times are written ------------------------------------------------------------
async def test_started_at_and_completed_at_are_written_by_the_status_changes(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    account = await _ok(
        api.post(
            "/api/accounts",
            json={"name": "hook", "channel": "webhook", "config": {"url": f"{target.url}/h"}},
        ),
        201,
    )
    audience = await _audience(api, 3)
    body = {"name": "c", "account_id": account["id"], "audience_id": audience, "message": "Hi"}
    campaign = (await _ok(api.post("/api/campaigns", json={**body, "limit": 10}), 201))["id"]
    draft = await _ok(api.get(f"/api/campaigns/{campaign}"))
    assert draft["started_at"] is None and draft["completed_at"] is None
    await _ok(api.post(f"/api/campaigns/{campaign}/start"))
    first = await _finished(api, campaign)
    assert first["status"] == "completed" and first["sent_count"] == 3
    assert first["started_at"] is not None and first["completed_at"] is not None
    assert first["started_at"] <= first["completed_at"]

    await _ok(api.post(f"/api/campaigns/{campaign}/resume"))
    second = await _finished(api, campaign)
    assert second["started_at"] == first["started_at"], "the first start is kept"
    assert second["completed_at"] >= first["completed_at"], "the last completion is shown"
    assert json.dumps(second)  # plain JSON, ISO strings
