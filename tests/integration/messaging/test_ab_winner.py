"""A/B winner mode: a sample tests the variants, the best on the operator's metric goes to the rest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from campaignd.domain.ab_test import in_sample
from campaignd.domain.variants import choose
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

pytestmark = pytest.mark.slow
VARIANTS = [
    {"name": "A", "message": "A for {{ name }}", "weight": 1},
    {"name": "B", "message": "B for {{ name }}", "weight": 1},
]


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _phase(client: httpx.Client, campaign: int) -> str:
    return str(client.get(f"/api/campaigns/{campaign}/report").json()["ab_test"]["phase"])


def test_the_sample_decides_and_the_winner_goes_to_everyone_else(
    client: httpx.Client, target: CountingTarget
) -> None:
    audience = make_audience(client, 120)
    campaign = make_campaign(
        client,
        make_account(client, target),
        audience,
        variants=VARIANTS,
        ab_test={"sample_percent": 30, "metric": "conversion_rate", "wait_minutes": 0.1},
    )
    ids = {
        c["external_id"]: c["id"]
        for c in client.get(f"/api/audiences/{audience}/contacts?limit=200").json()
    }
    sample = {x for x, cid in ids.items() if in_sample(campaign, cid, 30)}
    assert 15 < len(sample) < 50

    client.post(f"/api/campaigns/{campaign}/start")
    wait_until(lambda: _phase(client, campaign) == "waiting_for_results", timeout=20)
    first = delivered(target)
    # Only the sample got a message so far, each its own variant by weight.
    assert sorted(d["recipient"]["external_id"] for d in first) == sorted(sample)
    for d in first:
        assert (
            d["variant"] == choose(VARIANTS, campaign, ids[d["recipient"]["external_id"]])["name"]
        )

    # The operator's shop reports conversions: every B recipient of the sample, one A.
    got_a = [d["recipient"]["external_id"] for d in first if d["variant"] == "A"]
    got_b = [d["recipient"]["external_id"] for d in first if d["variant"] == "B"]
    assert got_a and got_b
    for external_id in [*got_b, got_a[0]]:
        response = client.post(
            f"/api/campaigns/{campaign}/engagements",
            json={"external_id": external_id, "kind": "conversion"},
        )
        assert response.json() == {"recorded": True}, response.text
    again = client.post(
        f"/api/campaigns/{campaign}/engagements",
        json={"external_id": got_b[0], "kind": "conversion"},
    )
    assert again.status_code == 200 and again.json() == {"recorded": False}
    outsider = next(x for x in ids if x not in sample)
    not_sent = client.post(
        f"/api/campaigns/{campaign}/engagements",
        json={"external_id": outsider, "kind": "conversion"},
    )
    assert not_sent.status_code == 409 and outsider in not_sent.json()["error"]
    unknown = client.post(
        f"/api/campaigns/{campaign}/engagements", json={"external_id": "nobody", "kind": "click"}
    )
    assert unknown.status_code == 404

    # A stop while waiting for results keeps the test's clock; resume picks up from it.
    assert client.post(f"/api/campaigns/{campaign}/stop").status_code == 200
    wait_for(client, campaign, "stopped")
    assert client.post(f"/api/campaigns/{campaign}/resume").status_code == 200
    view = wait_for(client, campaign, "completed", timeout=30)
    assert view["ab_winner"] == "B" and view["sent_count"] == 120

    received = delivered(target)
    assert len(received) == 120
    assert len({d["recipient"]["external_id"] for d in received}) == 120
    rest = [d for d in received if d["recipient"]["external_id"] not in sample]
    assert rest and all(d["variant"] == "B" and d["message"].startswith("B") for d in rest)

    report = client.get(f"/api/campaigns/{campaign}/report").json()
    test = report["ab_test"]
    assert test["phase"] == "winner_chosen" and test["winner"] == "B"
    scores = {s["variant"]: s for s in test["scores"]}
    assert scores["B"]["value"] > scores["A"]["value"]
    assert report["per_variant"]["B"]["conversion"] == len(got_b)
    assert report["per_variant"]["A"]["conversion"] == 1
    counts = Counter(d["variant"] for d in received)
    assert {k: v["sent"] for k, v in report["per_variant"].items()} == dict(counts)


def test_an_ab_test_needs_two_variants(client: httpx.Client, target: CountingTarget) -> None:
    body = {
        "name": "x",
        "account_id": make_account(client, target),
        "audience_id": make_audience(client, 1),
        "message": "hi",
        "limit": 1,
        "variants": VARIANTS[:1],
        "ab_test": {"sample_percent": 10, "metric": "click_rate"},
    }
    response = client.post("/api/campaigns", json=body)
    assert response.status_code in (400, 422) and "two variants" in response.text
    body["variants"] = VARIANTS
    body["ab_test"] = {"sample_percent": 100, "metric": "click_rate"}
    assert client.post("/api/campaigns", json=body).status_code == 422
    body["ab_test"] = {"sample_percent": 10, "metric": "opens"}
    assert client.post("/api/campaigns", json=body).status_code == 422
