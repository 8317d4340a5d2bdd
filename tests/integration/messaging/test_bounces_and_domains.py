"""Bounces and suppressions, and per-domain throttling against real aiosmtpd servers."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.messaging_flow import (
    delivered,
    make_account,
    make_audience,
    make_campaign,
    wait_for,
    wait_until,
)
from support.service import ServiceProcess
from support.target import CountingTarget


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _smtp_account(client: httpx.Client, port: int, **extra: Any) -> int:
    response = client.post(
        "/api/accounts",
        json={
            "name": "mail",
            "channel": "smtp",
            "config": {"host": "127.0.0.1", "port": port, "from": "news@example.test"},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _audience(client: httpx.Client, addresses: list[str]) -> int:
    audience = client.post("/api/audiences", json={"name": "mixed"}).json()["id"]
    contacts = [{"external_id": f"m{i}", "address": a} for i, a in enumerate(addresses)]
    client.post(f"/api/audiences/{audience}/contacts", json={"contacts": contacts})
    return int(audience)


def _suppression(client: httpx.Client, address: str) -> dict[str, Any] | None:
    rows = client.get("/api/suppressions", params={"limit": 1000}).json()
    return next((r for r in rows if r["address"] == address), None)


def test_reported_bounces_suppress_hard_at_once_and_soft_at_the_third(
    client: httpx.Client, target: CountingTarget
) -> None:
    audience = make_audience(client, 3, domain="bounce")
    campaign = make_campaign(client, make_account(client, target), audience)
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")

    hard = client.post(
        "/api/bounces",
        json={"address": "U0@Bounce.test", "type": "hard", "reason": "550 no such user"},
    )
    assert hard.status_code == 200, hard.text
    assert hard.json()["suppressed"] and hard.json()["campaign_id"] == campaign
    row = _suppression(client, "u0@bounce.test")
    assert row is not None and row["reason"] == "hard bounce: 550 no such user"
    assert set(row) >= {"address", "reason", "created_at"}

    for count in (1, 2):
        soft = client.post("/api/bounces", json={"address": "u1@bounce.test", "type": "soft"})
        assert soft.json()["soft_bounces_30d"] == count and not soft.json()["suppressed"]
        assert _suppression(client, "u1@bounce.test") is None
    third = client.post(
        "/api/bounces", json={"address": "u1@bounce.test", "type": "soft", "reason": "mailbox full"}
    ).json()
    assert third["suppressed"] and third["soft_bounces_30d"] == 3
    assert _suppression(client, "u1@bounce.test")["reason"].startswith("3 soft bounces")  # type: ignore[index]

    report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert report["bounces"] == {"hard": 1, "soft": 3}
    assert (
        client.post("/api/bounces", json={"address": "x@y.test", "type": "odd"}).status_code == 422
    )
    unknown = client.post(
        "/api/bounces", json={"address": "x@y.test", "type": "soft", "campaign_id": 999999}
    )
    assert unknown.status_code == 404

    second = make_campaign(client, make_account(client, target), audience)
    client.post(f"/api/campaigns/{second}/start")
    wait_for(client, second, "completed")
    latest = [d["recipient"]["address"] for d in delivered(target) if d["campaign_id"] == second]
    assert latest == ["u2@bounce.test"]


def test_smtp_permanent_refusals_are_hard_bounces(client: httpx.Client, smtp_server: Any) -> None:
    mailbox, port = smtp_server
    mailbox.refuse_domain["gone.test"] = ("550 5.1.1 No such user", 3600)
    audience = _audience(client, ["a@gone.test", "b@here.test"])
    campaign = make_campaign(
        client, _smtp_account(client, port), audience, subject="Hi", message="Hi {{ external_id }}"
    )
    client.post(f"/api/campaigns/{campaign}/start")
    view = wait_for(client, campaign, "completed")
    assert (view["sent_count"], view["failed_count"]) == (1, 1)
    reason = _suppression(client, "a@gone.test")["reason"]  # type: ignore[index]
    assert reason.startswith("hard bounce: SMTP 550")
    assert client.get(f"/api/campaigns/{campaign}/report").json()["bounces"]["hard"] == 1


def test_a_throttling_domain_is_backed_off_while_others_keep_sending(
    client: httpx.Client, smtp_server: Any
) -> None:
    mailbox, port = smtp_server
    mailbox.refuse_domain["busy.test"] = ("451 4.7.1 Try again later", 2.5)
    addresses = [f"c{i}@calm.test" for i in range(20)]
    for i in range(5):
        addresses.insert(i * 4, f"b{i}@busy.test")
    audience = _audience(client, addresses)
    campaign = make_campaign(
        client, _smtp_account(client, port), audience, subject="Hi", message="Hi {{ external_id }}"
    )
    client.post(f"/api/campaigns/{campaign}/start")
    view = wait_for(client, campaign, "completed", timeout=40)
    assert (view["sent_count"], view["failed_count"]) == (25, 0)
    arrived = Counter(m["To"] for m in mailbox.messages)
    assert set(arrived) == set(addresses) and max(arrived.values()) == 1

    busy = [(t, reply) for t, address, reply in mailbox.rcpts if address.endswith("@busy.test")]
    refused_until = max(t for t, reply in busy if reply.startswith("451"))
    calm_done = max(
        t
        for t, m in zip(mailbox.received_at, mailbox.messages, strict=True)
        if m["To"].endswith("@calm.test")
    )
    assert calm_done < refused_until, "other domains kept sending while busy.test was held"
    refusals = sum(1 for _, reply in busy if reply.startswith("451"))
    assert refusals <= 15, f"the busy domain was hammered: {refusals} refusals"
    attempts = client.get(f"/api/campaigns/{campaign}/deliveries", params={"q": "busy"}).json()
    assert all(item["attempts"] >= 2 for item in attempts["items"])


def test_domain_limits_pace_one_domain_only(client: httpx.Client, smtp_server: Any) -> None:
    mailbox, port = smtp_server
    bad = client.post(
        "/api/accounts",
        json={
            "name": "m",
            "channel": "smtp",
            "domain_limits": {"not a domain": 5},
            "config": {"host": "127.0.0.1", "port": port, "from": "n@example.test"},
        },
    )
    assert bad.status_code == 422
    account = _smtp_account(client, port, domain_limits={"Slow.test": 120})
    assert client.get(f"/api/accounts/{account}").json()["domain_limits"] == {"slow.test": 120}
    addresses = [f"s{i}@slow.test" for i in range(4)] + [f"f{i}@fast.test" for i in range(12)]
    campaign = make_campaign(
        client, account, _audience(client, addresses), subject="Hi", message="Hi {{ external_id }}"
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed", timeout=20)
    slow = sorted(
        t
        for t, m in zip(mailbox.received_at, mailbox.messages, strict=True)
        if m["To"].endswith("@slow.test")
    )
    fast = [
        t
        for t, m in zip(mailbox.received_at, mailbox.messages, strict=True)
        if m["To"].endswith("@fast.test")
    ]
    assert len(slow) == 4 and len(fast) == 12
    gaps = [b - a for a, b in itertools.pairwise(slow)]
    assert min(gaps) >= 0.4, gaps  # 120 per minute: one every 0.5 s
    assert max(fast) < slow[2], "the other domain is not held back by the slow one"


def test_stop_while_a_domain_is_held_gives_its_recipients_back(
    client: httpx.Client, smtp_server: Any
) -> None:
    mailbox, port = smtp_server
    mailbox.refuse_domain["held.test"] = ("452 4.2.2 Over quota for now", 3600)
    addresses = [f"h{i}@held.test" for i in range(3)] + [f"k{i}@kept.test" for i in range(3)]
    campaign = make_campaign(
        client,
        _smtp_account(client, port),
        _audience(client, addresses),
        subject="Hi",
        message="Hi {{ external_id }}",
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(lambda: sum(1 for m in mailbox.messages if m["To"].endswith("@kept.test")) == 3)
    wait_until(lambda: any(a.endswith("@held.test") for _, a, _r in mailbox.rcpts))
    assert client.post(f"/api/campaigns/{campaign}/stop").status_code == 200
    view = client.get(f"/api/campaigns/{campaign}").json()
    assert (view["sent_count"], view["failed_count"], view["sending_count"]) == (3, 0, 0)
    mailbox.refuse_domain.clear()
    client.post(f"/api/campaigns/{campaign}/resume")
    done = wait_for(client, campaign, "completed", timeout=30)
    assert (done["sent_count"], done["failed_count"]) == (6, 0)
    assert Counter(m["To"] for m in mailbox.messages) == dict.fromkeys(addresses, 1)
