"""Reports (JSON and CSV), segment previews, and A/B variants decided by a stable hash."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from campaignd.domain.variants import choose
from support.messaging_flow import delivered, make_account, make_campaign, wait_for
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign as make_traffic_campaign
from support.traffic_flow import make_profile, wait_for_status
from support.traffic_flow import start as start_traffic

pytestmark = pytest.mark.slow


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _audience_with_tiers(client: httpx.Client, count: int) -> int:
    audience = client.post("/api/audiences", json={"name": "tiers"}).json()["id"]
    contacts = [
        {
            "external_id": f"t{i}",
            "address": f"t{i}@tiers{audience}.test",
            "attributes": {"tier": ["gold", "silver", "bronze"][i % 3], "age": 20 + i},
        }
        for i in range(count)
    ]
    client.post(f"/api/audiences/{audience}/contacts", json={"contacts": contacts})
    return int(audience)


def test_segment_preview_and_a_segmented_campaign(
    client: httpx.Client, target: CountingTarget
) -> None:
    audience = _audience_with_tiers(client, 30)
    segment = [
        {"attribute": "tier", "in": ["gold", "silver"]},
        {"attribute": "age", "range": {"min": 25}},
    ]
    preview = client.post(
        f"/api/audiences/{audience}/segment-preview", json={"segment": segment}
    ).json()
    expected = [f"t{i}" for i in range(30) if i % 3 != 2 and 20 + i >= 25]
    assert preview["matching"] == len(expected) and preview["total"] == 30
    campaign = make_campaign(
        client, make_account(client, target), audience, segment=segment, message="Hi {{ tier }}"
    )
    assert client.get(f"/api/campaigns/{campaign}").json()["total_recipients"] == len(expected)
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    assert sorted(d["recipient"]["external_id"] for d in delivered(target)) == sorted(expected)
    bad = client.post(
        f"/api/audiences/{audience}/segment-preview", json={"segment": [{"attribute": "x"}]}
    )
    assert bad.status_code == 422


def test_ab_variants_are_stable_and_counted(client: httpx.Client, target: CountingTarget) -> None:
    audience = _audience_with_tiers(client, 60)
    variants = [
        {"name": "A", "message": "A {{ tier }}", "weight": 1},
        {"name": "B", "message": "B {{ tier }}", "weight": 3},
    ]
    campaign = make_campaign(
        client, make_account(client, target), audience, variants=variants, message="Hi {{ tier }}"
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    received = delivered(target)
    contacts = client.get(f"/api/audiences/{audience}/contacts?limit=100").json()
    ids = {c["external_id"]: c["id"] for c in contacts}
    for d in received:
        expected = choose(variants, campaign, ids[d["recipient"]["external_id"]])["name"]
        assert d["variant"] == expected and d["message"].startswith(expected)
    by_variant = Counter(d["variant"] for d in received)
    report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert {k: v["sent"] for k, v in report["per_variant"].items()} == dict(by_variant)
    assert by_variant["B"] > by_variant["A"]
    assert report["counts"]["sent_count"] == 60
    assert sum(p["sent"] for p in report["series"]) == 60
    csv_report = client.get(f"/api/campaigns/{campaign}/report?format=csv")
    assert csv_report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_report.text)))
    assert sum(int(r["sent"]) for r in rows) == 60


def test_failure_reasons_in_the_report(client: httpx.Client, target: CountingTarget) -> None:
    target.status_for["/hook"] = 400
    audience = _audience_with_tiers(client, 4)
    campaign = make_campaign(
        client, make_account(client, target), audience, message="Hi {{ tier }}"
    )
    client.post(f"/api/campaigns/{campaign}/start")
    wait_for(client, campaign, "completed")
    report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert report["failures_by_reason"] == [{"reason": "HTTP 400: ok", "count": 4}]


def test_traffic_report(client: httpx.Client, target: CountingTarget) -> None:
    campaign = make_traffic_campaign(
        client, target.url, make_profile(client), requests_per_minute=1200
    )
    start_traffic(client, campaign)
    wait_for_status(client, campaign, "completed", timeout=15)
    report = client.get(f"/api/traffic/campaigns/{campaign}/report").json()
    assert report["stats"]["requests_total"] == 60 == target.total
    assert sum(w["requests"] for w in report["windows"]) == 60
    rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/api/traffic/campaigns/{campaign}/report?format=csv").text)
        )
    )
    assert sum(int(r["requests"]) for r in rows) == 60
    assert set(rows[0]) == {
        "at",
        "requests",
        "failed",
        "dropped",
        "rpm",
        "target_rpm",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "busy_users",
    }
