"""Stages through the API: duration from their sum, the ramp counted at the target."""

from __future__ import annotations

import pytest

from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign, make_profile, start, wait_for_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(module_service: ServiceProcess) -> ServiceProcess:
    """The staged campaign counts at a target of its own and completes."""
    return module_service


def test_a_staged_campaign_ramps_and_completes_after_its_stages(
    service: ServiceProcess, target: CountingTarget
) -> None:
    stages = [
        {"duration_minutes": 0.05, "target_rpm": 1800},  # 600 -> 1800 rpm in 3 s: 60
        {"duration_minutes": 0.05, "target_rpm": 1800},  # 1800 rpm for 3 s: 90
    ]
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=600, stages=stages
        )
        created = client.get(f"/api/traffic/campaigns/{campaign}").json()
        assert created["duration_minutes"] == pytest.approx(0.1)
        assert created["stages"] == stages
        start(client, campaign)
        refused = client.patch(
            f"/api/traffic/campaigns/{campaign}", json={"requests_per_minute": 60}
        )
        assert refused.status_code == 409
        done = wait_for_status(client, campaign, "completed", timeout=20)
    assert abs(target.total - 150) <= 3, target.total
    assert done["stats"]["requests_total"] == target.total
    assert done["stats"]["requests_dropped"] == 0
    assert done["config"]["stages"] == stages


def test_a_campaign_needs_a_duration_or_stages(service: ServiceProcess) -> None:
    with service.client() as client:
        profile = make_profile(client)
        response = client.post(
            "/api/traffic/campaigns",
            json={
                "name": "x",
                "target_url": "http://127.0.0.1:9",
                "user_profile_ids": [profile],
                "requests_per_minute": 60,
                "total_users": 1,
            },
        )
        assert response.status_code in (400, 422)
