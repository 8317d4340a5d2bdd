"""Journeys through the API: 422s that name step and field, stats per step and check in info,
in the report (JSON and CSV) and after a restart; per-request-name stats for plain profiles."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.journey_app import JourneyApp, journey_profile
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import info, make_campaign, make_profile, start, wait_for_status

pytestmark = pytest.mark.slow


@pytest.fixture
def app() -> Iterator[JourneyApp]:
    with JourneyApp() as server:
        yield server


def _step(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "method": "GET", "path": "/", **fields}


@pytest.mark.parametrize(
    ("steps", "data", "field", "words"),
    [
        ([_step(path="/x/{{ token }}")], None, "steps[0].path", "no earlier step extracts"),
        ([_step(headers={"X-A": "{{ oops("})], None, "steps[0].headers.X-A", "not a valid"),
        ([_step(extract={"t": {"json": "$..a"}})], None, "steps[0].extract.t.json", "JSON path"),
        ([_step(extract={"t": {"regex": "(a"}})], None, "steps[0].extract.t.regex", "regular"),
        ([_step(path="/{{ data.nope }}")], [{"email": "a"}], "steps[0].path", "data row 0"),
        ([_step(body={"a": "{{ 1 / 0 }}"})], None, "steps[0].body", "cannot be rendered"),
        ([_step(checks=[{"json": "a"}])], None, "steps[0].checks[0].json", "starts with '$'"),
        (
            [_step(name="a", extract={"t": {"header": "X"}}), _step(name="b", path="/{{ u }}")],
            None,
            "steps[1].path",
            "'u'",
        ),
    ],
)
def test_a_bad_step_is_a_422_naming_step_and_field(
    server: ServiceProcess, steps: list[dict[str, Any]], data: Any, field: str, words: str
) -> None:
    body: dict[str, Any] = {"name": "bad", "steps": steps}
    if data is not None:
        body["data"] = data
    with server.client() as client:
        response = client.post("/api/traffic/profiles", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert words in error["error"]
    assert "Step '" in error["error"]


def test_a_profile_has_requests_or_steps_not_both(server: ServiceProcess) -> None:
    with server.client() as client:
        both = client.post(
            "/api/traffic/profiles",
            json={"name": "x", "requests": [{"path": "/"}], "steps": [_step()]},
        )
        assert both.status_code == 422
        created = client.post("/api/traffic/profiles", json=journey_profile())
        assert created.status_code == 201, created.text
        profile = created.json()
        assert profile["requests"] == [] and len(profile["steps"]) == 3
        assert len(profile["data"]) == 3
        broken = client.patch(
            f"/api/traffic/profiles/{profile['id']}", json={"data": [{"email": "x"}]}
        )
        assert broken.status_code == 422  # step "item" reads data.item
        assert broken.json()["field"] == "steps[1].path"


def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_journey_campaign_reports_steps_and_checks_and_keeps_them_after_a_restart(
    service: ServiceProcess, app: JourneyApp
) -> None:
    with service.client() as client:
        profile = client.post("/api/traffic/profiles", json=journey_profile()).json()["id"]
        campaign = make_campaign(
            client,
            app.url,
            profile,
            requests_per_minute=3600,
            duration_minutes=0.04,
            total_users=6,
        )
        start(client, campaign)
        done = wait_for_status(client, campaign, "completed", timeout=30)
    assert app.refused == []
    stats = done["stats"]
    steps = {s["name"]: s for s in stats["steps"]}
    assert set(steps) == {"log in", "item", "profile"}
    assert steps["log in"]["requests"] == len(app.logins)
    assert sum(s["requests"] for s in steps.values()) == stats["requests_total"]
    assert stats["requests_total"] == len(app.logins) + app.requests_after_login
    checks = {(c["step"], c["name"]): c for c in stats["checks"]}
    assert checks[("profile", "profile ok")]["fails"] == app.profile_false
    assert stats["iterations"] == steps["profile"]["requests"]
    assert all(0 < s["p50"] <= s["p99"] for s in steps.values())

    service.stop()
    service.start()
    with service.client() as client:
        again = info(client, campaign)["stats"]
        assert again["steps"] == stats["steps"]
        assert again["checks"] == stats["checks"]
        assert again["iterations"] == stats["iterations"]
        report = client.get(f"/api/traffic/campaigns/{campaign}/report").json()
        assert report["steps"] == stats["steps"]
        assert any(w["busy_users"] for w in report["windows"])
        text = client.get(
            f"/api/traffic/campaigns/{campaign}/report", params={"format": "csv", "table": "steps"}
        ).text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["name"]: int(r["requests"]) for r in rows} == {
            n: s["requests"] for n, s in steps.items()
        }
        text = client.get(
            f"/api/traffic/campaigns/{campaign}/report", params={"format": "csv", "table": "checks"}
        ).text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert int(next(r for r in rows if r["name"] == "profile ok")["fails"]) == app.profile_false


def test_plain_requests_get_stats_per_request_name_and_a_busy_users_gauge(
    server: ServiceProcess, target: CountingTarget
) -> None:
    target.delay_for["/slow"] = 0.3
    with server.client() as client:
        profile = make_profile(
            client,
            requests=[
                {"method": "GET", "path": "/fast", "weight": 1, "name": "fast one"},
                {"method": "GET", "path": "/slow", "weight": 1},
            ],
        )
        campaign = make_campaign(
            client,
            target.url,
            profile,
            requests_per_minute=1200,
            duration_minutes=0.05,
            total_users=20,
        )
        start(client, campaign)
        _wait(lambda: info(client, campaign)["stats"]["busy_users"] > 0)
        done = wait_for_status(client, campaign, "completed", timeout=30)
        series = client.get(f"/api/traffic/campaigns/{campaign}/series").json()["points"]
    steps = {s["name"]: s for s in done["stats"]["steps"]}
    assert steps["fast one"]["requests"] == target.counts["/fast"]
    assert steps["GET /slow"]["requests"] == target.counts["/slow"]
    assert steps["GET /slow"]["p50"] >= 300 > steps["fast one"]["p99"]
    assert done["stats"]["busy_users"] == 0
    assert max(p["busy_users"] or 0 for p in series) >= 2


def test_journey_users_respect_think_times(server: ServiceProcess, app: JourneyApp) -> None:
    profile = journey_profile(think_time_ms=0)
    profile["steps"] = [dict(s) for s in profile["steps"]]
    profile["steps"][0]["think_time_ms"] = [200, 300]
    with server.client() as client:
        created = client.post("/api/traffic/profiles", json=profile)
        assert created.status_code == 201, created.text
        assert created.json()["steps"][0]["think_time_ms"] == [200, 300]


def _unused(_: httpx.Client) -> None:  # keeps the import for type checkers
    return None
