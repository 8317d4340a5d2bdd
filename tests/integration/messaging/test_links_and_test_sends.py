"""Tracked links (redirects, clicks, A/B click_rate, forged tokens), test sends and follow-ups."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from campaignd.domain.links import find_links
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

SHOP_A = "https://shop.example/a?x=1&y=%C3%A9"
SHOP_B = "https://shop.example/b"


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _tracked(server: ServiceProcess, text: str) -> list[str]:
    return [u for u in find_links(text) if u.startswith(f"{server.url}/l/")]


def test_tracked_links_redirect_exactly_and_count_clicks(
    client: httpx.Client, server: ServiceProcess, target: CountingTarget
) -> None:
    campaign = make_campaign(
        client,
        make_account(client, target),
        make_audience(client, 3),
        message="Hi {{ name }}: " + SHOP_A + " and (" + SHOP_B + "). Bye",
        track_links=True,
    )
    assert client.get(f"/api/campaigns/{campaign}").json()["track_links"] is True
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    messages = {d["recipient"]["external_id"]: d["message"] for d in delivered(target)}
    assert len(messages) == 3
    for text in messages.values():
        assert SHOP_A not in text and SHOP_B not in text
        assert text.endswith("). Bye") and len(_tracked(server, text)) == 2
    a0, b0 = _tracked(server, messages["u0"])
    a1, _ = _tracked(server, messages["u1"])
    for link, expected in ((a0, SHOP_A), (a0, SHOP_A), (a1, SHOP_A), (b0, SHOP_B)):
        response = httpx.get(link, follow_redirects=False)
        assert response.status_code == 302 and response.headers["location"] == expected

    report = client.get(f"/api/campaigns/{campaign}/report").json()
    links = {entry["url"]: entry for entry in report["links"]}
    assert (links[SHOP_A]["clicks"], links[SHOP_A]["unique_clicks"]) == (3, 2)
    assert (links[SHOP_B]["clicks"], links[SHOP_B]["unique_clicks"]) == (1, 1)
    assert report["per_variant"]["default"]["click"] == 2  # unique clickers, for A/B rates

    token = a0.rsplit("/", 1)[1]
    campaign_id, contact_id, link_id, variant, signature = token.split(".")
    forgeries = [
        f"{int(campaign_id) + 1}.{contact_id}.{link_id}.{variant}.{signature}",
        f"{campaign_id}.{int(contact_id) + 1}.{link_id}.{variant}.{signature}",
        f"{campaign_id}.{contact_id}.{int(link_id) + 1}.{variant}.{signature}",
        f"{campaign_id}.{contact_id}.{link_id}.{variant}.{signature[:-2]}AA",
        "garbage",
        f"{campaign_id}.{contact_id}.{link_id}.{variant}",
    ]
    for forged in forgeries:
        response = httpx.get(f"{server.url}/l/{forged}", follow_redirects=False)
        assert response.status_code == 404, forged
        assert "location" not in response.headers
    after = client.get(f"/api/campaigns/{campaign}/report").json()["links"]
    assert sum(e["clicks"] for e in after) == 4


def test_clicks_on_tracked_links_pick_the_ab_winner(
    client: httpx.Client, server: ServiceProcess, target: CountingTarget
) -> None:
    campaign = make_campaign(
        client,
        make_account(client, target),
        make_audience(client, 30),
        message="unused",
        track_links=True,
        variants=[
            {"name": "A", "message": "A: " + SHOP_A},
            {"name": "B", "message": "B: " + SHOP_B},
        ],
        ab_test={"sample_percent": 50, "metric": "click_rate", "wait_minutes": 0.08},
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(
        lambda: client.get(f"/api/campaigns/{campaign}").json()["ab_sample_done_at"] is not None
    )
    for d in delivered(target):
        if d.get("variant") == "B":
            (link,) = _tracked(server, d["message"])
            assert httpx.get(link, follow_redirects=False).status_code == 302
    view = wait_for(client, campaign, "completed", timeout=30)
    assert view["ab_winner"] == "B"
    report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert report["per_variant"]["B"]["click"] >= 1 and report["per_variant"]["A"]["click"] == 0
    link_b = next(e for e in report["links"] if e["url"] == SHOP_B)
    assert link_b["per_variant"]["B"]["unique_clicks"] == report["per_variant"]["B"]["click"]


def test_test_send_renders_for_the_contact_and_counts_nowhere(
    client: httpx.Client, server: ServiceProcess, target: CountingTarget
) -> None:
    audience = make_audience(client, 3)
    campaign = make_campaign(
        client,
        make_account(client, target),
        audience,
        message="Hi {{ name }} " + SHOP_B,
        track_links=True,
    )
    client.post("/api/suppressions", json={"address": "gone@ops.test"})
    response = client.post(
        f"/api/campaigns/{campaign}/test",
        json={"external_ids": ["u2"], "addresses": ["ops@ops.test", "gone@ops.test"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sent"] == 2
    assert {"address": "gone@ops.test", "sent": False, "error": "suppressed"} in body["results"]
    got = {d["recipient"]["address"]: d for d in delivered(target)}
    assert set(got) == {f"u2@a{audience}.test", "ops@ops.test"}
    assert all(d["test"] is True for d in got.values())
    assert got[f"u2@a{audience}.test"]["message"].startswith("Hi N2 ")
    assert got["ops@ops.test"]["message"].startswith("Hi N0 ")  # sample: the first contact
    assert all(":test:" in d["key"] for d in got.values())
    (link,) = _tracked(server, got["ops@ops.test"]["message"])
    redirect = httpx.get(link, follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["location"] == SHOP_B

    preview = client.post(
        f"/api/campaigns/{campaign}/test",
        json={"addresses": ["ops@ops.test"], "message": "Draft for {{ name }}"},
    )
    assert preview.json()["sent"] == 1 and delivered(target)[-1]["message"] == "Draft for N0"

    view = client.get(f"/api/campaigns/{campaign}").json()
    assert (view["sent_count"], view["failed_count"], view["status"]) == (0, 0, "draft")
    assert client.get(f"/api/campaigns/{campaign}/deliveries").json()["items"] == []
    report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert sum(e["clicks"] for e in report["links"]) == 0

    unknown = client.post(f"/api/campaigns/{campaign}/test", json={"external_ids": ["nobody"]})
    assert unknown.status_code == 400 and "nobody" in unknown.json()["error"]
    assert client.post(f"/api/campaigns/{campaign}/test", json={}).status_code == 422
    bad = client.post(f"/api/campaigns/{campaign}/test", json={"addresses": ["x"], "message": "{{"})
    assert bad.status_code == 422

    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    real = [d for d in delivered(target) if not d.get("test")]
    assert len(real) == 3 and all(":test:" not in d["key"] for d in real)


def test_follow_up_reaches_recipients_who_did_not_click(
    client: httpx.Client, server: ServiceProcess, target: CountingTarget
) -> None:
    account = make_account(client, target)
    audience = make_audience(client, 6)
    first = make_campaign(client, account, audience, message="See " + SHOP_A, track_links=True)
    client.post(f"/api/campaigns/{first}/start")
    wait_for(client, first, "completed")
    for d in delivered(target):
        if d["recipient"]["external_id"] in ("u1", "u4"):
            (link,) = _tracked(server, d["message"])
            assert httpx.get(link, follow_redirects=False).status_code == 302
    add_contacts(client, audience, 2, start=6)  # never received the first campaign
    segment = [{"campaign": first, "received": True, "clicked": False}]
    preview = client.post(f"/api/audiences/{audience}/segment-preview", json={"segment": segment})
    assert preview.json()["matching"] == 4
    follow_up = make_campaign(client, account, audience, message="Still?", segment=segment)
    assert client.get(f"/api/campaigns/{follow_up}").json()["total_recipients"] == 4
    client.post(f"/api/campaigns/{follow_up}/start")
    wait_for(client, follow_up, "completed")
    again = sorted(
        d["recipient"]["external_id"] for d in delivered(target) if d["message"] == "Still?"
    )
    assert again == ["u0", "u2", "u3", "u5"]

    other = make_audience(client, 1)
    refused = client.post(
        "/api/campaigns",
        json={
            "name": "x",
            "account_id": account,
            "audience_id": other,
            "message": "m",
            "limit": 1,
            "segment": segment,
        },
    )
    assert refused.status_code == 400 and refused.json()["field"] == "segment"
    for bad in (
        {"campaign": first},
        {"campaign": first, "clicked": "no"},
        {"campaign": "7", "received": True},
        {"campaign": first, "opened": True},
    ):
        response = client.post(
            "/api/campaigns",
            json={
                "name": "x",
                "account_id": account,
                "audience_id": audience,
                "message": "m",
                "limit": 1,
                "segment": [bad],
            },
        )
        assert response.status_code == 422, bad
    missing = client.post(
        "/api/campaigns",
        json={
            "name": "x",
            "account_id": account,
            "audience_id": audience,
            "message": "m",
            "limit": 1,
            "segment": [{"campaign": 999999, "received": True}],
        },
    )
    assert missing.status_code == 400
