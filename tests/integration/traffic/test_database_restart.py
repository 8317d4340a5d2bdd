"""PostgreSQL restarted under running campaigns: traffic goes on, sending waits, nothing lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.messaging_flow import delivered, make_account, make_audience, wait_until
from support.messaging_flow import make_campaign as make_message_campaign
from support.messaging_flow import wait_for as wait_for_messages
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign, make_profile, start, wait_for_status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("CAMPAIGND_TEST_RESTART_POSTGRES")
        or not shutil.which("pg_ctlcluster")
        or not Path("/etc/postgresql").is_dir(),
        reason="restarts the shared PostgreSQL server: set CAMPAIGND_TEST_RESTART_POSTGRES=1 "
        "(CI does) on a machine where pg_ctlcluster manages it",
    ),
]


def _cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg(action: str) -> None:
    subprocess.run([*_cluster(), action, *(["-m", "fast"] if action == "stop" else [])], check=True)


def _wait_for_postgres(up: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0
        if ready is up:
            return
        time.sleep(0.2)
    raise AssertionError(f"PostgreSQL did not become {'ready' if up else 'unavailable'}")


@contextlib.contextmanager
def _postgres_stopped() -> Iterator[None]:
    """PostgreSQL is down inside the block and up again after it, whatever the block raised."""
    _pg("stop")
    try:
        _wait_for_postgres(up=False)
        yield
    finally:
        _pg("start")
        _wait_for_postgres(up=True)


def test_campaign_survives_a_postgres_restart(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    proc: ServiceProcess = service_factory(postgres_url)
    with proc.client() as client:
        campaign = make_campaign(
            client, target.url, make_profile(client), requests_per_minute=1200, duration_minutes=0.2
        )
        start(client, campaign)
        time.sleep(2.0)
        with _postgres_stopped():
            during = target.total
            time.sleep(2.5)
            assert target.total > during + 30, "generation goes on while the database is down"
            response = client.get(f"/api/traffic/campaigns/{campaign}")
            assert response.status_code == 503
            assert "database is unavailable" in response.json()["error"]
        done = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                done = wait_for_status(client, campaign, "completed", timeout=40)
                break
            except (AssertionError, httpx.HTTPError):
                time.sleep(0.5)
    assert done is not None
    assert abs(target.total - 240) <= 2
    assert done["stats"]["requests_total"] == target.total, "windows written after the outage"
    assert '"traffic.database_unavailable"' in proc.log
    assert '"traffic.database_recovered"' in proc.log


def test_message_campaign_survives_a_postgres_restart(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    proc: ServiceProcess = service_factory(postgres_url)
    with proc.client() as client:
        campaign = make_message_campaign(
            client, make_account(client, target), make_audience(client, 80), rate_per_minute=1200
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: target.total >= 15)
        with _postgres_stopped():
            time.sleep(2.0)
        done = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and done is None:
            try:
                done = wait_for_messages(client, campaign, "completed", timeout=40)
            except (AssertionError, httpx.HTTPError, ValueError):
                time.sleep(0.5)
    assert done is not None
    keys = [d["key"] for d in delivered(target)]
    assert len(set(keys)) == 80, "everyone got the message"
    assert len(keys) == 80, (
        "and nobody twice: sends in flight during the outage were recorded after it"
    )
    assert done["sent_count"] == 80 and done["sending_count"] == 0
    assert '"messages.database_unavailable"' in proc.log
    assert '"messages.database_recovered"' in proc.log
