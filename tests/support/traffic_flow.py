"""Small steps of the seed flow, shared by the traffic tests."""

from __future__ import annotations

import time
from typing import Any

import httpx


def make_profile(client: httpx.Client, **overrides: Any) -> int:
    body = {
        "name": "browse",
        "requests": [{"method": "GET", "path": "/", "weight": 1}],
        **overrides,
    }
    response = client.post("/api/traffic/profiles", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def make_campaign(client: httpx.Client, target_url: str, profile_id: int, **overrides: Any) -> int:
    body = {
        "name": "load",
        "target_url": target_url,
        "user_profile_ids": [profile_id],
        "requests_per_minute": 600,
        "duration_minutes": 0.05,
        "total_users": 10,
        **overrides,
    }
    response = client.post("/api/traffic/campaigns", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def start(client: httpx.Client, campaign_id: int) -> dict[str, Any]:
    response = client.put(
        f"/api/traffic/campaigns/{campaign_id}/status", json={"status": "running"}
    )
    assert response.status_code == 200, response.text
    response = client.post("/api/traffic/generate", json={"campaign_id": campaign_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


def info(client: httpx.Client, campaign_id: int) -> dict[str, Any]:
    response = client.get(f"/api/traffic/campaigns/{campaign_id}/info")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_status(
    client: httpx.Client, campaign_id: int, status: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = info(client, campaign_id)
        if current["status"] == status and not current["traffic_generation_active"]:
            return current
        time.sleep(0.1)
    raise AssertionError(f"campaign {campaign_id} not {status} after {timeout}s: {current}")
