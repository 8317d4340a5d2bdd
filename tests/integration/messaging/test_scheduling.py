"""start_at: a campaign waits in 'scheduled', starts by itself, and survives a restart before."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from support.messaging_flow import make_account, make_audience, make_campaign, wait_for
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.slow


def test_scheduled_campaign_starts_by_itself_even_after_a_restart(
    service_factory, database_url: str, target: CountingTarget
) -> None:
    first: ServiceProcess = service_factory(database_url)
    start = datetime.now(UTC) + timedelta(seconds=6)
    start_at = start.isoformat()
    with first.client() as client:
        campaign = make_campaign(
            client, make_account(client, target), make_audience(client, 5), start_at=start_at
        )
        view = client.get(f"/api/campaigns/{campaign}").json()
        assert view["status"] == "scheduled"
        assert view["start_at"].startswith(start_at[:19])
    assert first.signal(signal.SIGTERM) == 0
    assert target.total == 0
    second: ServiceProcess = service_factory(database_url)
    with second.client() as client:
        status = client.get(f"/api/campaigns/{campaign}").json()["status"]
        if datetime.now(UTC) < start - timedelta(seconds=0.5):  # a slow restart may be later
            assert status == "scheduled"
        done = wait_for(client, campaign, "completed", timeout=20)
    assert done["sent_count"] == 5 and target.total == 5


def test_a_closed_sending_window_holds_messages(
    service: ServiceProcess, target: CountingTarget
) -> None:
    now = datetime.now(UTC)
    closed = {
        "start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    with service.client() as client:
        campaign = make_campaign(
            client, make_account(client, target), make_audience(client, 3), send_window=closed
        )
        client.post(f"/api/campaigns/{campaign}/start")
        time.sleep(1.5)
        assert target.total == 0
        opened = client.patch(f"/api/campaigns/{campaign}", json={"send_window": None})
        assert opened.status_code == 200
        done = wait_for(client, campaign, "completed", timeout=15)
    assert done["sent_count"] == 3 and target.total == 3
