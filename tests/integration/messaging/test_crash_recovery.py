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
