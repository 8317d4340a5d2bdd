"""Message campaigns through the real server: the seed routes, edits, limits, resume, secrets."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.messaging_flow import (
    add_contacts,
    delivered,
    make_account,
    make_audience,
    make_campaign,
    wait_for,
    wait_until,
)
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.slow


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_seed_routes_have_the_seed_bodies(client: httpx.Client, target: CountingTarget) -> None:
    campaign = make_campaign(
        client, make_account(client, target), make_audience(client, 5), limit=3, message="Hey"
    )
    for route in (f"/campaign_data/{campaign}", f"/campaigns/{campaign}/data"):
        body = client.get(route).json()
        assert set(body) == {
            "campaign_id",
            "data",
            "status",
            "sent_count",
            "failed_count",
            "total_recipients",
        }
        assert body["data"]["session"] == "***"
        assert body["data"]["message"] == "Hey" and body["data"]["limit"] == 3
        assert body["status"] == "draft" and body["total_recipients"] == 3
    for route in (f"/update_campaign/{campaign}", f"/campaigns/{campaign}/update"):
        response = client.post(route, json={"message": "Hello {{ name }}", "session": "s3ss10n"})
        assert response.status_code == 200
        assert response.json()["data"]["message"] == "Hello {{ name }}"
        assert "s3ss10n" not in response.text
    resumed = client.post(f"/resume_campaign/{campaign}").json()
    assert resumed["status"] == "running" and resumed["previous_status"] == "draft"
    done = wait_for(client, campaign, "completed")
    assert done["sent_count"] == 3 and target.total == 3
    again = client.post(f"/campaigns/{campaign}/resume")
    assert again.status_code == 200 and again.json()["previous_status"] == "completed"
    wait_for(client, campaign, "completed")
    assert target.total == 3, "a resume never messages anyone twice"


def test_edit_while_running_reaches_every_later_message(
    client: httpx.Client, target: CountingTarget
) -> None:
    campaign = make_campaign(
        client, make_account(client, target), make_audience(client, 60), rate_per_minute=1200
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(lambda: target.total >= 10)
    response = client.patch(f"/api/campaigns/{campaign}", json={"message": "Bye {{ name }}"})
    assert response.status_code == 200
    edited_at = len(delivered(target))
    wait_for(client, campaign, "completed")
    texts = [d["message"] for d in delivered(target)]
    assert len(texts) == 60
    # Messages already on the wire at the edit may carry the old text; none after a second.
    assert all(t.startswith("Bye") for t in texts[edited_at + 20 :])
    assert texts[0].startswith("Hi")


def test_lowering_the_limit_below_sent_completes(
    client: httpx.Client, target: CountingTarget
) -> None:
    campaign = make_campaign(
        client, make_account(client, target), make_audience(client, 100), rate_per_minute=600
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(lambda: target.total >= 5)
    client.patch(f"/api/campaigns/{campaign}", json={"limit": 3})
    done = wait_for(client, campaign, "completed", timeout=5)
    assert done["sent_count"] == target.total
    assert target.total <= 8
    assert done["sending_count"] == 0


def test_stop_and_resume_message_nobody_twice(client: httpx.Client, target: CountingTarget) -> None:
    audience = make_audience(client, 80)
    campaign = make_campaign(client, make_account(client, target), audience, rate_per_minute=1500)
    client.post(f"/api/campaigns/{campaign}/start")
    for _ in range(3):
        wait_until(lambda: target.total >= 10)
        stopped = client.post(f"/api/campaigns/{campaign}/stop").json()
        assert stopped["status"] == "stopped"
        settled = target.total
        time.sleep(0.5)
        assert target.total == settled, "nothing is sent after stop returns"
        view = client.get(f"/api/campaigns/{campaign}").json()
        assert view["sent_count"] == settled and view["sending_count"] == 0
        client.post(f"/api/campaigns/{campaign}/resume")
    wait_for(client, campaign, "completed")
    keys = Counter(d["key"] for d in delivered(target))
    assert len(keys) == 80 and max(keys.values()) == 1
    add_contacts(client, audience, 5, start=80)
    client.post(f"/api/campaigns/{campaign}/resume")
    done = wait_for(client, campaign, "completed")
    assert done["sent_count"] == 85 and target.total == 85


def test_suppressed_addresses_are_never_messaged(
    client: httpx.Client, target: CountingTarget
) -> None:
    audience = make_audience(client, 10, domain="suppress")
    client.post("/api/suppressions", json={"address": "U3@Suppress.test"})
    campaign = make_campaign(client, make_account(client, target), audience)
    assert client.get(f"/api/campaigns/{campaign}").json()["total_recipients"] == 9
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    addresses = {d["recipient"]["address"] for d in delivered(target)}
    assert len(addresses) == 9 and "u3@suppress.test" not in addresses


def test_failures_are_retried_then_counted(client: httpx.Client, target: CountingTarget) -> None:
    target.status_for["/hook"] = 503
    campaign = make_campaign(
        client, make_account(client, target, max_attempts=2), make_audience(client, 4)
    )
    client.post(f"/api/campaigns/{campaign}/start")
    done = wait_for(client, campaign, "completed")
    assert done["failed_count"] == 4 and done["sent_count"] == 0
    assert target.total == 8, "each recipient tried twice"
    view = client.get(f"/campaign_data/{campaign}").json()
    assert view["failed_count"] == 4


def test_secrets_are_write_only_and_encrypted(
    server: ServiceProcess, client: httpx.Client, target: CountingTarget
) -> None:
    account = make_account(client, target, signing_secret="hmac-Secret-123")
    responses = [
        client.get(f"/api/accounts/{account}"),
        client.get("/api/accounts"),
        client.patch(f"/api/accounts/{account}", json={"name": "renamed"}),
    ]
    for response in responses:
        assert "hmac-Secret-123" not in response.text
    assert responses[0].json()["config"]["signing_secret"] == "***"
    database = server.database_url.removeprefix("sqlite:///")
    dump = "\n".join(sqlite3.connect(database).iterdump())
    assert "hmac-Secret-123" not in dump
    assert "hmac-Secret-123" not in server.log
    assert (Path(database).parent / "campaignd.key").stat().st_mode & 0o077 == 0


def test_imports_report_duplicates_and_bad_rows(client: httpx.Client) -> None:
    audience = client.post("/api/audiences", json={"name": "imports"}).json()["id"]
    report = client.post(
        f"/api/audiences/{audience}/contacts",
        json={
            "contacts": [
                {"external_id": "a", "address": "a@x.test"},
                {"external_id": "a", "address": "again@x.test"},
                {"external_id": "b"},
                "not an object",
                {"external_id": 7, "address": "seven@x.test", "attributes": {"tier": "gold"}},
            ]
        },
    ).json()
    assert report["imported"] == 2 and report["duplicates"] == 1
    assert [r["index"] for r in report["rejected"]] == [2, 3]
    csv_body = "external_id,address,city\na,a@x.test,Oslo\nc,c@x.test,Rome\nd,,Nice\n"
    report = client.post(
        f"/api/audiences/{audience}/contacts",
        content=csv_body,
        headers={"content-type": "text/csv"},
    ).json()
    assert report == {
        "imported": 1,
        "duplicates": 1,
        "rejected": [
            {"index": 4, "reason": "address must be 1 to 500 characters", "external_id": "d"}
        ],
    }
    contacts = client.get(f"/api/audiences/{audience}/contacts").json()
    assert [c["external_id"] for c in contacts] == ["a", "7", "c"]
    assert contacts[2]["attributes"] == {"city": "Rome"}


def test_bad_templates_and_transitions_are_refused(
    client: httpx.Client, target: CountingTarget
) -> None:
    account, audience = make_account(client, target), make_audience(client, 1)
    for message, words in [
        ("Hi {{ name }", "not a valid template"),
        ("Hi {{ missing_field }}", "missing_field"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ]:
        response = client.post(
            "/api/campaigns",
            json={
                "name": "x",
                "account_id": account,
                "audience_id": audience,
                "message": message,
                "limit": 1,
            },
        )
        assert response.status_code == 422, response.text
        assert words in response.json()["error"] and response.json()["field"] == "message"
    campaign = make_campaign(client, account, audience)
    refused = client.post(f"/api/campaigns/{campaign}/stop")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "Cannot change status from 'draft' to 'stopped'.",
        "current_status": "draft",
        "requested_status": "stopped",
        "allowed": ["scheduled", "running"],
        "campaign_id": campaign,
    }
    assert client.get("/api/campaigns/999999").status_code == 404
    assert client.get("/campaign_data/999999").status_code == 404
