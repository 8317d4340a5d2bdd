"""kill -9 of the real server mid-campaign: after restart everyone gets the message once,
except sends that were in flight at the crash, which repeat with the same Idempotency-Key."""

from __future__ import annotations

import signal
from collections import Counter

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
from support.traffic_flow import info, make_profile
from support.traffic_flow import make_campaign as make_traffic_campaign
from support.traffic_flow import start as start_traffic

pytestmark = pytest.mark.slow


def test_kill_9_mid_campaign_then_restart(
    service_factory, database_url: str, target: CountingTarget
) -> None:
    target.delay_for["/hook"] = 0.2  # keeps many sends in flight when the kill lands
    first: ServiceProcess = service_factory(database_url)
    with first.client() as client:
        campaign = make_campaign(
            client, make_account(client, target), make_audience(client, 400), limit=400
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: target.total >= 100)
    first.kill()
    before_kill = {d["recipient"]["external_id"] for d in delivered(target)}

    second: ServiceProcess = service_factory(database_url)
    with second.client() as client:
        done = wait_for(client, campaign, "completed", timeout=30)
    received = delivered(target)
    per_recipient = Counter(d["recipient"]["external_id"] for d in received)
    assert len(per_recipient) == 400, "every recipient got the message"
    repeated = {r for r, n in per_recipient.items() if n > 1}
    assert max(per_recipient.values()) <= 2
    assert repeated <= before_kill, "only sends in flight at the crash may repeat"
    for d in received:
        assert d["key"] == f"{campaign}:{d['recipient']['external_id']}"
    assert done["sent_count"] == 400 and done["sending_count"] == 0
    assert '"messages.recovered"' in second.log


def test_sigterm_mid_campaign_drains_and_resumes_without_repeats(
    service_factory, database_url: str, target: CountingTarget
) -> None:
    target.delay_for["/hook"] = 0.1
    first: ServiceProcess = service_factory(database_url)
    with first.client() as client:
        campaign = make_campaign(
            client, make_account(client, target), make_audience(client, 200), limit=200
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: target.total >= 40)
    assert first.signal(signal.SIGTERM) == 0
    with_first = target.total
    second: ServiceProcess = service_factory(database_url)
    with second.client() as client:
        done = wait_for(client, campaign, "completed", timeout=30)
    per_recipient = Counter(d["recipient"]["external_id"] for d in delivered(target))
    assert len(per_recipient) == 200 and max(per_recipient.values()) == 1, "a drain repeats nobody"
    assert with_first < 200 and done["sent_count"] == 200


def test_recover_on_start_false_leaves_both_kinds_for_the_operator(
    service_factory, database_url: str, target: CountingTarget
) -> None:
    first: ServiceProcess = service_factory(database_url)
    with first.client() as client:
        campaign = make_campaign(
            client,
            make_account(client, target),
            make_audience(client, 60),
            limit=60,
            rate_per_minute=900,
        )
        client.post(f"/api/campaigns/{campaign}/start")
        profile = make_profile(client, requests=[{"method": "GET", "path": "/t"}])
        traffic = make_traffic_campaign(
            client, target.url, profile, duration_minutes=5, total_users=5
        )
        start_traffic(client, traffic)
        wait_until(lambda: len(delivered(target)) >= 10 and target.counts["/t"] >= 10)
    first.kill()

    second: ServiceProcess = service_factory(database_url, CAMPAIGND_RECOVER_ON_START="false")
    with second.client() as client:
        paused = wait_for(client, campaign, "paused")
        assert "CAMPAIGND_RECOVER_ON_START=false" in paused["pause_reason"]
        assert info(client, traffic)["traffic_generation_active"] is False
        sent, hits = len(delivered(target)), target.counts["/t"]
        wait_until(lambda: '"messages.not_recovered"' in second.log)
        # Nothing goes out by itself; Resume sends the rest, to nobody twice.
        assert len(delivered(target)) == sent and target.counts["/t"] == hits
        assert client.post(f"/api/campaigns/{campaign}/resume").status_code == 200
        wait_for(client, campaign, "completed", timeout=60)
    per_recipient = Counter(d["recipient"]["external_id"] for d in delivered(target))
    assert len(per_recipient) == 60 and max(per_recipient.values()) <= 2
