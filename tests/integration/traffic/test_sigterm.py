"""SIGTERM: stop accepting work, finish in-flight requests, persist, exit 0, resume on restart."""

from __future__ import annotations

import signal

import pytest

from support.messaging_flow import wait_until
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import info, make_campaign, make_profile, start, wait_for_status

pytestmark = pytest.mark.slow


def test_sigterm_drains_exits_zero_and_the_campaign_resumes(
    service_factory, database_url: str, target: CountingTarget
) -> None:
    first: ServiceProcess = service_factory(database_url)
    with first.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=1200, duration_minutes=0.05
        )
        start(client, campaign)
        wait_until(lambda: target.total >= 20)  # a second of the campaign's three
    assert first.signal(signal.SIGTERM) == 0
    sent_before = target.total
    assert '"traffic.runner_ended"' in first.log and '"outcome": "shutdown"' in first.log

    second: ServiceProcess = service_factory(database_url)
    with second.client() as client:
        resumed = info(client, campaign)
        # A graceful stop persists every request it made: nothing to lose.
        assert resumed["stats"]["requests_total"] == sent_before
        assert resumed["traffic_generation_active"] is True
        done = wait_for_status(client, campaign, "completed", timeout=20)
    assert abs(target.total - 60) <= 2
    assert done["stats"]["requests_total"] == target.total
