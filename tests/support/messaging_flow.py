"""Small steps of the message flow, shared by the messaging tests."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from support.target import CountingTarget


def make_account(client: httpx.Client, sink: CountingTarget, **config: Any) -> int:
    body = {
        "name": "hook",
        "channel": "webhook",
        "config": {"url": f"{sink.url}/hook", "retry_base_seconds": 0.05, **config},
    }
    response = client.post("/api/accounts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def make_audience(client: httpx.Client, count: int, start: int = 0, domain: str = "") -> int:
    audience = client.post("/api/audiences", json={"name": "fans"}).json()["id"]
    add_contacts(client, audience, count, start, domain)
    return int(audience)


def add_contacts(
    client: httpx.Client, audience: int, count: int, start: int = 0, domain: str = ""
) -> None:
    """Contacts u{i} at u{i}@{domain or a per-audience domain}.test (suppressions are global)."""
    domain = domain or f"a{audience}"
    contacts = [
        {"external_id": f"u{i}", "address": f"u{i}@{domain}.test", "attributes": {"name": f"N{i}"}}
        for i in range(start, start + count)
    ]
    response = client.post(f"/api/audiences/{audience}/contacts", json={"contacts": contacts})
    assert response.status_code == 200, response.text


def make_campaign(client: httpx.Client, account: int, audience: int, **overrides: Any) -> int:
    body = {
        "name": "hello",
        "account_id": account,
        "audience_id": audience,
        "message": "Hi {{ name }}",
        "limit": 1000,
        **overrides,
    }
    response = client.post("/api/campaigns", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def delivered(sink: CountingTarget) -> list[dict[str, Any]]:
    """What the webhook sink received: one dict per POST (body plus the idempotency key);
    requests without a body (traffic sent to the same server) are not deliveries."""
    received = []
    for _path, body, headers in list(sink.bodies):
        if not body:
            continue
        payload = json.loads(body)
        payload["key"] = headers.get("Idempotency-Key")
        received.append(payload)
    return received


def wait_for(
    client: httpx.Client, campaign: int, status: str, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = client.get(f"/api/campaigns/{campaign}").json()
        if view.get("status") == status and not view.get("sending"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"campaign {campaign} not {status} after {timeout}s: {view}")


def wait_until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
