"""SSRF through redirects: an allowed target that redirects elsewhere never gets us there."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.messaging_flow import make_account, make_audience, make_campaign, wait_for
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign as make_traffic_campaign
from support.traffic_flow import make_profile, start, wait_for_status

pytestmark = pytest.mark.slow


@pytest.fixture
def elsewhere() -> Iterator[CountingTarget]:
    """Where the redirects point: it must never see a request."""
    with CountingTarget() as server:
        yield server


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_webhooks_do_not_follow_redirects(
    client: httpx.Client, target: CountingTarget, elsewhere: CountingTarget
) -> None:
    target.redirect_for["/hook"] = f"{elsewhere.url}/stolen"
    campaign = make_campaign(client, make_account(client, target), make_audience(client, 3))
    client.post(f"/api/campaigns/{campaign}/start")
    done = wait_for(client, campaign, "completed")
    assert done["sent_count"] == 0 and done["failed_count"] == 3
    assert target.counts["/hook"] == 3  # one try each: a redirect is not retried either
    assert elsewhere.total == 0
    reasons = client.get(f"/api/campaigns/{campaign}/report").json()["failures_by_reason"]
    assert reasons == [{"reason": "HTTP 302: redirects are not followed", "count": 3}]


def test_traffic_does_not_follow_redirects(
    client: httpx.Client, target: CountingTarget, elsewhere: CountingTarget
) -> None:
    target.redirect_for["/"] = f"{elsewhere.url}/stolen"
    campaign = make_traffic_campaign(
        client, target.url, make_profile(client), requests_per_minute=1200
    )
    start(client, campaign)
    wait_for_status(client, campaign, "completed", timeout=15)
    assert target.counts["/"] == 60
    assert elsewhere.total == 0
