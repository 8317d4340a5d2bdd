"""The delivery log (pages, filters, search, CSV) and retry-failed, through the real server."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator

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


def _failed_half(client: httpx.Client, target: CountingTarget) -> tuple[int, list[str]]:
    """A campaign of 25: the first 10 sent, then the sink fails and 15 fail."""
    account = make_account(client, target, max_attempts=1)
    campaign = make_campaign(client, account, make_audience(client, 25), limit=10)
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    first = sorted({d["key"] for d in delivered(target)})
    target.status_for["/hook"] = 500
    client.patch(f"/api/campaigns/{campaign}", json={"limit": 25})
    client.post(f"/api/campaigns/{campaign}/resume")
    view = wait_for(client, campaign, "completed")
    assert (view["sent_count"], view["failed_count"]) == (10, 15)
    return campaign, first


def test_delivery_log_pages_filters_searches_and_exports(
    client: httpx.Client, target: CountingTarget
) -> None:
    campaign, _ = _failed_half(client, target)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        body = client.get(f"/api/campaigns/{campaign}/deliveries", params=params).json()
        seen += [item["external_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 25 and len(set(seen)) == 25
    item = client.get(f"/api/campaigns/{campaign}/deliveries?limit=1").json()["items"][0]
    assert set(item) == {
        "external_id",
        "address",
        "status",
        "variant",
        "attempts",
        "error",
        "updated_at",
    }
    failed = client.get(f"/api/campaigns/{campaign}/deliveries?status=failed&limit=100").json()
    assert len(failed["items"]) == 15 and failed["next_cursor"] is None
    assert all(i["status"] == "failed" and "500" in i["error"] for i in failed["items"])
    sent = client.get(f"/api/campaigns/{campaign}/deliveries?status=sent").json()["items"]
    assert len(sent) == 10 and all(i["attempts"] == 1 for i in sent)
    found = client.get(f"/api/campaigns/{campaign}/deliveries?q=U1").json()["items"]
    assert sorted(i["external_id"] for i in found) == ["u1"] + [f"u1{d}" for d in range(10)]
    by_address = client.get(f"/api/campaigns/{campaign}/deliveries", params={"q": "u7@a"})
    assert [i["external_id"] for i in by_address.json()["items"]] == ["u7"]
    assert client.get(f"/api/campaigns/{campaign}/deliveries?q=%25").json()["items"] == []
    in_doubt = client.get(f"/api/campaigns/{campaign}/deliveries?status=in_doubt").json()
    assert in_doubt == {"items": [], "next_cursor": None}

    with client.stream("GET", f"/api/campaigns/{campaign}/deliveries?format=csv") as response:
        assert response.headers["content-type"].startswith("text/csv")
        text = "".join(response.iter_text())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 25 and Counter(r["status"] for r in rows) == {"sent": 10, "failed": 15}
    failed_csv = client.get(f"/api/campaigns/{campaign}/deliveries?format=csv&status=failed")
    assert len(failed_csv.text.strip().splitlines()) == 16

    assert client.get(f"/api/campaigns/{campaign}/deliveries?status=nope").status_code == 422
    bad = client.get(f"/api/campaigns/{campaign}/deliveries?cursor=abc")
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    assert client.get("/api/campaigns/999999/deliveries").status_code == 404


def test_retry_failed_moves_counts_and_messages_nobody_twice(
    client: httpx.Client, target: CountingTarget
) -> None:
    campaign, first = _failed_half(client, target)
    target.status_for["/hook"] = 200
    retried = client.post(f"/api/campaigns/{campaign}/retry-failed")
    assert retried.status_code == 200, retried.text
    assert retried.json()["requeued"] == 15 and retried.json()["status"] == "running"
    view = wait_for(client, campaign, "completed")
    assert (view["sent_count"], view["failed_count"]) == (25, 0)
    keys = Counter(d["key"] for d in delivered(target))
    assert all(keys[k] == 1 for k in first), "a recipient who got it never gets it again"
    assert len(keys) == 25 and sum(keys.values()) == 10 + 15 + 15
    retried_items = client.get(f"/api/campaigns/{campaign}/deliveries?q=u24").json()["items"]
    assert retried_items[0]["status"] == "sent" and retried_items[0]["attempts"] == 2
    again = client.post(f"/api/campaigns/{campaign}/retry-failed").json()
    assert again["requeued"] == 0 and again["status"] == "completed"
    assert sum(Counter(d["key"] for d in delivered(target)).values()) == 40


def test_retry_failed_on_a_running_campaign_reaches_recipients_it_had_passed(
    client: httpx.Client, target: CountingTarget
) -> None:
    target.status_for["/hook"] = 500
    account = make_account(client, target, max_attempts=1)
    campaign = make_campaign(
        client, account, make_audience(client, 30), limit=30, rate_per_minute=600
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(
        lambda: client.get(f"/api/campaigns/{campaign}").json()["failed_count"] >= 5, timeout=10
    )
    target.status_for["/hook"] = 200
    assert client.post(f"/api/campaigns/{campaign}/retry-failed").json()["status"] == "running"
    view = wait_for(client, campaign, "completed", timeout=30)
    assert view["sent_count"] + view["failed_count"] == 30
    assert view["sent_count"] >= 25
    ok_keys = Counter(d["key"] for d in delivered(target))
    assert len(ok_keys) == 30
