"""Bad input gets a clear 4xx sentence; tokens guard every API route; the basics are served."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.service import CAMPAIGND, ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign, make_profile, start, wait_for_status


@pytest.fixture(scope="module")
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _assert_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"].endswith(".")
    assert "Traceback" not in response.text
    return dict(body)


LABELS = {
    "target_url": "Target URL",
    "requests_per_minute": "Requests per minute",
    "duration_minutes": "Duration",
    "total_users": "Virtual users",
    "user_profile_ids": "User profile",
    "name": "Name",
}
BAD_CAMPAIGNS = [
    ({"name": "x"}, "target_url"),
    ({"requests_per_minute": 0}, "requests_per_minute"),
    ({"requests_per_minute": "fast"}, "requests_per_minute"),
    ({"duration_minutes": -1}, "duration_minutes"),
    ({"total_users": 0}, "total_users"),
    ({"user_profile_ids": []}, "user_profile_ids"),
    ({"name": ""}, "name"),
]


@pytest.mark.parametrize(("change", "field"), BAD_CAMPAIGNS)
def test_schema_violations_are_422_naming_the_field(
    client: httpx.Client, change: dict[str, object], field: str
) -> None:
    profile = make_profile(client)
    body = {
        "name": "c",
        "target_url": "http://127.0.0.1:9",
        "user_profile_ids": [profile],
        "requests_per_minute": 60,
        "duration_minutes": 1,
        "total_users": 1,
        **change,
    }
    if change == {"name": "x"}:
        body.pop("target_url")
    error = _assert_error(client.post("/api/traffic/campaigns", json=body), 422)
    assert error["field"] == field
    # The sentence names the field as a form labels it, not by its API name.
    label = LABELS[field]
    assert str(error["error"]).startswith(label) or label.lower() in str(error["error"])


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://10.0.0.1/", 400),
        ("http://192.168.1.10", 400),
        ("http://8.8.8.8", 400),
        ("http://no-such-host.invalid", 400),
        ("ftp://127.0.0.1/", 422),
        ("not a url", 422),
    ],
)
def test_targets_outside_the_allowlist_are_refused(
    client: httpx.Client, url: str, status: int
) -> None:
    profile = make_profile(client)
    body = {
        "name": "c",
        "target_url": url,
        "user_profile_ids": [profile],
        "requests_per_minute": 60,
        "duration_minutes": 1,
        "total_users": 1,
    }
    error = _assert_error(client.post("/api/traffic/campaigns", json=body), status)
    assert error["field"] == "target_url"


def test_editing_the_target_is_checked_too(client: httpx.Client, target: CountingTarget) -> None:
    campaign = make_campaign(client, target.url, make_profile(client))
    error = _assert_error(
        client.patch(f"/api/traffic/campaigns/{campaign}", json={"target_url": "http://10.1.1.1"}),
        400,
    )
    assert error["field"] == "target_url"


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    _assert_error(client.get("/api/traffic/campaigns/999999"), 404)
    _assert_error(client.get("/api/traffic/campaigns/999999/info"), 404)
    _assert_error(
        client.put("/api/traffic/campaigns/999999/status", json={"status": "running"}), 404
    )
    _assert_error(client.post("/api/traffic/generate", json={"campaign_id": 999999}), 404)
    _assert_error(client.delete("/api/traffic/profiles/999999"), 404)
    missing = _assert_error(
        client.post(
            "/api/traffic/campaigns",
            json={
                "name": "c",
                "target_url": "http://127.0.0.1:9",
                "user_profile_ids": [999999],
                "requests_per_minute": 60,
                "duration_minutes": 1,
                "total_users": 1,
            },
        ),
        404,
    )
    assert missing["missing"] == [999999]


def test_illegal_transition_is_409_with_allowed(
    client: httpx.Client, target: CountingTarget
) -> None:
    campaign = make_campaign(client, target.url, make_profile(client))
    body = _assert_error(
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "paused"}), 409
    )
    assert body == {
        "error": "Cannot change status from 'draft' to 'paused'.",
        "current_status": "draft",
        "requested_status": "paused",
        "allowed": ["scheduled", "running"],
        "campaign_id": campaign,
    }
    unknown = _assert_error(
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "exploded"}), 422
    )
    assert unknown["field"] == "status"


def test_malformed_bodies_are_4xx_never_500(client: httpx.Client) -> None:
    for raw, ctype in [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
    ]:
        response = client.post(
            "/api/traffic/campaigns", content=raw, headers={"content-type": ctype}
        )
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()
    _assert_error(client.get("/api/traffic/campaigns/not-a-number"), 422)
    _assert_error(client.get("/no/such/route"), 404)
    _assert_error(client.delete("/healthz"), 405)


def test_request_body_limit(client: httpx.Client) -> None:
    big = b'{"name": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    response = client.post(
        "/api/traffic/profiles", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


def test_health_metrics_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "campaignd_traffic_runners_active" in metrics.text
    schema = client.get("/openapi.json").json()
    assert "/api/traffic/generate" in schema["paths"]


def test_token_guards_every_api_route(tmp_path: Path) -> None:
    proc = ServiceProcess(
        f"sqlite:///{tmp_path / 'auth.db'}", tmp_path / "log", CAMPAIGND_API_TOKEN="s3cret-token"
    ).start()
    try:
        bare = httpx.Client(base_url=proc.url, timeout=5)
        assert bare.get("/healthz").status_code == 200
        schema_paths = proc.client().get("/openapi.json").json()["paths"]
        for path, methods in schema_paths.items():
            concrete = path.replace("{campaign_id}", "1").replace("{profile_id}", "1")
            for method in methods:
                if path == "/healthz":
                    continue
                response = bare.request(method.upper(), concrete)
                assert response.status_code == 401, (method, path, response.status_code)
                assert "s3cret" not in response.text
        wrong = bare.get("/api/traffic/campaigns", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert proc.client().get("/api/traffic/campaigns").status_code == 200
        assert "s3cret-token" not in proc.log
    finally:
        proc.stop()


def test_serve_refuses_a_public_bind_without_a_token() -> None:
    result = subprocess.run(
        [CAMPAIGND, "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "CAMPAIGND_API_TOKEN": ""},
    )
    assert result.returncode == 2
    assert "Refusing to bind 0.0.0.0 without an API token" in result.stderr


def test_lifecycle_events_are_logged_with_ids(
    server: ServiceProcess, client: httpx.Client, target: CountingTarget
) -> None:
    campaign = make_campaign(client, target.url, make_profile(client), duration_minutes=0.02)
    runner_id = start(client, campaign)["thread_id"]
    wait_for_status(client, campaign, "completed", timeout=10)
    lines = [line for line in server.log.splitlines() if f'"runner_id": "{runner_id}"' in line]
    events = {line.split('"event": "')[1].split('"')[0] for line in lines}
    assert {"traffic.runner_started", "traffic.runner_ended"} <= events
    assert all(f'"campaign_id": {campaign}' in line for line in lines)
