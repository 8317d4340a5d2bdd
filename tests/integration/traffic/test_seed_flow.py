"""The seed flow and the traffic contract, driven through the real server process."""

from __future__ import annotations

import threading
import time

import pytest

from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import info, make_campaign, make_profile, start, wait_for_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(module_service: ServiceProcess) -> ServiceProcess:
    """Each test counts at a target of its own and stops or completes its campaign."""
    return module_service


def test_seed_flow_draft_refused_then_runs_and_completes(
    service: ServiceProcess, target: CountingTarget
) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(client, target.url, profile, requests_per_minute=1200)

        refused = client.post("/api/traffic/generate", json={"campaign_id": campaign})
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "Campaign must be in 'running' status to start traffic generation. "
            "Current status: draft",
            "current_status": "draft",
            "required_status": "running",
            "campaign_id": campaign,
        }

        started = start(client, campaign)
        assert started["success"] is True
        assert started["message"] == "Traffic generation started successfully"
        assert started["status"] == "running"
        assert started["thread_id"]
        assert started["config"]["requests_per_minute"] == 1200
        assert started["config"]["duration_minutes"] == 0.05
        assert started["config"]["total_users"] == 10
        assert started["config"]["profiles"] == 1
        assert started["config"]["profile_list"] == [{"id": profile, "name": "browse"}]

        again = client.post("/api/traffic/generate", json={"campaign_id": campaign})
        assert again.status_code == 409

        live = info(client, campaign)
        assert live["traffic_generation_active"] is True
        assert live["thread_id"] == started["thread_id"]
        assert live["start_time"]

        done = wait_for_status(client, campaign, "completed", timeout=15)
        stats = done["stats"]
        # 1200/min for 3 s is 60 requests, counted where they land.
        assert target.total == 60
        assert stats["requests_total"] == 60
        assert stats["requests_succeeded"] == 60
        assert stats["success_rate"] == 1.0
        assert stats["achieved_rpm"] == pytest.approx(1200, rel=0.05)
        latency = stats["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_three_campaigns_in_parallel_each_hold_their_rate(
    service: ServiceProcess,
) -> None:
    rates = [600, 1800, 3000]
    with (
        service.client() as client,
        CountingTarget() as a,
        CountingTarget() as b,
        CountingTarget() as c,
    ):
        targets = [a, b, c]
        profile = make_profile(client)
        ids = [
            make_campaign(client, t.url, profile, requests_per_minute=r, duration_minutes=0.1)
            for t, r in zip(targets, rates, strict=True)
        ]
        for campaign in ids:
            start(client, campaign)
        for campaign in ids:
            wait_for_status(client, campaign, "completed", timeout=20)
        for t, rate in zip(targets, rates, strict=True):
            expected = rate * 0.1
            assert abs(t.total - expected) <= expected * 0.05, (t.total, expected)


def test_stop_takes_effect_within_a_second_and_releases(
    service: ServiceProcess, target: CountingTarget
) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=6000, duration_minutes=1
        )
        start(client, campaign)
        time.sleep(1.5)
        response = client.put(
            f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"}
        )
        stopped_at = time.monotonic()
        assert response.json() == {
            "campaign_id": campaign,
            "status": "stopped",
            "previous_status": "running",
        }
        after = info(client, campaign)
        assert after["traffic_generation_active"] is False
        assert after["status"] == "stopped"
        assert target.count_between(stopped_at + 1.0, stopped_at + 60) == 0
        time.sleep(1.2)
        assert target.count_between(stopped_at + 1.0, time.monotonic()) == 0
        assert after["stats"]["requests_total"] >= 100


def test_rate_edit_applies_within_a_second(service: ServiceProcess, target: CountingTarget) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=600, duration_minutes=1
        )
        start(client, campaign)
        time.sleep(1.0)
        response = client.patch(
            f"/api/traffic/campaigns/{campaign}", json={"requests_per_minute": 3000}
        )
        assert response.status_code == 200
        edited_at = time.monotonic()
        time.sleep(3.2)
        # From one second after the edit, the target sees 50/s instead of 10/s.
        window = target.count_between(edited_at + 1.0, edited_at + 3.0)
        assert 95 <= window <= 105, window
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})


def test_pause_holds_and_resume_continues(service: ServiceProcess, target: CountingTarget) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=1200, duration_minutes=0.05
        )
        start(client, campaign)
        time.sleep(1.0)
        assert (
            client.put(
                f"/api/traffic/campaigns/{campaign}/status", json={"status": "paused"}
            ).status_code
            == 200
        )
        paused_at = time.monotonic()
        time.sleep(1.5)
        assert target.count_between(paused_at + 0.2, time.monotonic()) == 0
        assert info(client, campaign)["traffic_generation_active"] is True
        assert (
            client.put(
                f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"}
            ).status_code
            == 200
        )
        done = wait_for_status(client, campaign, "completed", timeout=15)
        # Paused time does not count toward the duration: the full 60 requests arrive.
        assert target.total == 60
        assert done["stats"]["requests_total"] == 60


def test_stopped_campaign_resumes_for_the_remaining_duration(
    service: ServiceProcess, target: CountingTarget
) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client, target.url, profile, requests_per_minute=1200, duration_minutes=0.05
        )
        start(client, campaign)
        time.sleep(1.0)
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
        first = target.total
        assert 15 <= first <= 25
        resumed = client.put(
            f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"}
        )
        assert resumed.json()["previous_status"] == "stopped"
        done = wait_for_status(client, campaign, "completed", timeout=15)
        assert abs(target.total - 60) <= 2
        assert done["stats"]["requests_total"] == target.total


def test_parallel_status_changes_have_one_winner(
    service: ServiceProcess, target: CountingTarget
) -> None:
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(client, target.url, profile, duration_minutes=1)
        start(client, campaign)
    codes: list[int] = []
    bodies: list[dict[str, object]] = []

    def stop() -> None:
        with service.client() as c:
            r = c.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
            codes.append(r.status_code)
            bodies.append(r.json())

    threads = [threading.Thread(target=stop) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 9
    assert all(b["current_status"] == "stopped" for b in bodies if "current_status" in b)
