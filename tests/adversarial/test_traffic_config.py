"""Traffic configuration attacks: allowlist at every start, DNS pinning, request-line and header
smuggling, stage sums past the cap, and reports that never decode a day of histograms."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import insert, select, update

from campaignd.api.app import create_app
from campaignd.domain.statuses import CampaignStatus
from campaignd.services import Services
from campaignd.settings import Settings
from campaignd.store.tables import traffic_stats
from campaignd.traffic import headless
from campaignd.traffic.connections import ConnectionBudget
from campaignd.traffic.generation import Generation
from campaignd.traffic.http import HeaderInjection, HttpTarget, encode_request, open_connection
from campaignd.traffic.plan import LoadPlan, RequestSpec, UserProfile
from campaignd.traffic.scenario import ScenarioError, load_scenario
from campaignd.traffic.stats import WindowStats, latency_summary
from support.service import ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import make_campaign, make_profile, start, wait_for_status

ALLOWLIST_SENTENCE = "is not in the allowed targets"


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout}s: {what}")


# 6. The allowlist holds when generation starts, not only when the campaign was saved ------
@pytest.mark.slow
def test_a_narrowed_allowlist_stops_recovery_generate_and_resume(
    service_factory: Any, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'campaignd.db'}"
    wide = service_factory(database, CAMPAIGND_ALLOWED_TARGETS="127.0.0.0/8")
    with CountingTarget(host="127.0.0.2") as elsewhere:
        with wide.client() as client:
            profile = make_profile(client)
            slow = {"duration_minutes": 10, "requests_per_minute": 600}
            generating = make_campaign(client, elsewhere.url, profile, **slow)
            start(client, generating)
            stopped = make_campaign(client, elsewhere.url, profile, **slow)
            start(client, stopped)
            put = client.put(f"/api/traffic/campaigns/{stopped}/status", json={"status": "stopped"})
            assert put.status_code == 200, put.text
            draft = make_campaign(client, elsewhere.url, profile, **slow)
            _wait(lambda: elsewhere.total > 0, 10, "the wide allowlist lets traffic through")
        wide.stop()  # a shutdown leaves `generating` marked: the restart would resume it
        sent_before = elsewhere.total

        narrow = service_factory(database, CAMPAIGND_ALLOWED_TARGETS="127.0.0.1/32")
        with narrow.client() as client:
            recovered = client.get(f"/api/traffic/campaigns/{generating}").json()
            assert recovered["status"] == "failed"
            assert recovered["traffic_generation_active"] is False
            assert ALLOWLIST_SENTENCE in recovered["last_error"]
            assert "127.0.0.1/32" in recovered["last_error"]

            running = client.put(
                f"/api/traffic/campaigns/{draft}/status", json={"status": "running"}
            )
            assert running.status_code == 200, running.text
            refused = client.post("/api/traffic/generate", json={"campaign_id": draft})
            assert refused.status_code == 400, refused.text
            assert ALLOWLIST_SENTENCE in refused.json()["error"]
            assert "CAMPAIGND_ALLOWED_TARGETS" in refused.json()["error"]

            resumed = client.put(
                f"/api/traffic/campaigns/{stopped}/status", json={"status": "running"}
            )
            assert resumed.status_code == 400, resumed.text
            assert ALLOWLIST_SENTENCE in resumed.json()["error"]
            row = client.get(f"/api/traffic/campaigns/{stopped}").json()
            assert row["status"] == "stopped"

            for campaign in (generating, stopped, draft):
                row = client.get(f"/api/traffic/campaigns/{campaign}").json()
                assert row["traffic_generation_active"] is False
        assert elsewhere.total == sent_before
        assert "traffic.target_refused" in narrow.log


# 6. DNS pinning: the generator connects where the check resolved, never looks the name up again
async def test_a_connection_goes_to_the_pinned_address_and_names_the_host(
    target: CountingTarget,
) -> None:
    pinned = HttpTarget.parse(f"http://pinned.invalid:{target.port}", ("127.0.0.1",))
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[int] = loop.create_future()
    budget = ConnectionBudget(1)
    assert budget.try_acquire()
    conn = await open_connection(
        pinned, lambda _c, status, _k: answered.set_result(status), None, budget
    )
    try:
        conn.send(encode_request(RequestSpec("GET", "/pinned"), pinned), head=False)
        assert await asyncio.wait_for(answered, 5) == 200
    finally:
        conn.close()
    assert target.counts["/pinned"] == 1
    for _ in range(100):  # the slot comes back once the transport has closed the socket
        if budget.open == 0:
            break
        await asyncio.sleep(0.01)
    assert budget.open == 0
    _, _, headers = target.bodies[-1]
    assert headers["Host"] == f"pinned.invalid:{target.port}"


async def test_a_pinned_plan_sends_every_request_without_resolving_its_host(
    target: CountingTarget,
) -> None:
    profile = UserProfile(1, "p", (RequestSpec("GET", "/g"),))
    plan = LoadPlan(
        target_url=f"http://pinned.invalid:{target.port}",
        profiles=(profile,),
        total_users=5,
        rate_per_second=40.0,
        request_timeout_seconds=2.0,
        target_addresses=("127.0.0.1",),
    )
    generation = Generation(plan, duration_seconds=0.5, drain_seconds=0.5)
    await generation.run()
    await generation.flush()
    assert generation.totals.failed == 0
    assert target.counts["/g"] == generation.totals.succeeded >= 10


@pytest.fixture
async def narrow_services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'campaignd.db'}",
        allowed_targets="127.0.0.0/8",
        traffic_workers=1,
        drain_seconds=0.2,
    )
    svc = Services.build(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_a_name_rebound_after_the_check_still_reaches_the_checked_address(
    narrow_services: Services, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name passes the check as 127.0.0.1, then points somewhere else."""
    real = socket.getaddrinfo
    answer = {"address": "127.0.0.1"}

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            return real(answer["address"], *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    svc = narrow_services
    profile = await svc.traffic.create_profile(
        {"name": "p", "requests": [{"method": "GET", "path": "/r"}], "headers": {}}
    )
    row = await svc.traffic.create_campaign(
        {
            "name": "c",
            "target_url": f"http://rebind.test:{target.port}",
            "user_profile_ids": [profile["id"]],
            "requests_per_minute": 1200.0,
            "duration_minutes": 1.0,
            "total_users": 5,
            "request_timeout_seconds": 2.0,
        }
    )
    await svc.traffic.transition(row["id"], CampaignStatus.RUNNING)
    await svc.traffic_app.generate(row["id"])
    runner = svc.traffic_supervisor.runner(row["id"])
    assert runner is not None
    # Re-pointed at a loopback address nobody listens on, once the check has passed.
    answer["address"] = "127.0.0.3"
    try:
        deadline = time.monotonic() + 10
        while target.counts["/r"] < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert target.counts["/r"] >= 20
        assert runner.totals.failed == 0
    finally:
        await svc.traffic_app.change_status(row["id"], CampaignStatus.STOPPED)
    _, _, headers = target.bodies[-1]
    assert headers["Host"] == f"rebind.test:{target.port}"


async def test_the_headless_runner_is_pinned_like_the_server(
    target: CountingTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    answer = {"address": "127.0.0.1"}

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(answer["address"] if host == "rebind.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    scenario = load_scenario(
        _scenario(
            tmp_path,
            target=f"http://rebind.test:{target.port}",
            users=2,
            rpm=1200,
            duration_minutes=0.01,
            options={"workers": 1, "request_timeout_seconds": 2},
        )
    )
    await headless.check_target(scenario, Settings(allowed_targets="127.0.0.0/8"))
    answer["address"] = "127.0.0.3"
    result = await headless.run_scenario(scenario)
    assert result.summary["requests_failed"] == 0
    assert target.total == result.summary["requests_total"] > 0


# 12. Header names, values and paths that would go out raw ---------------------------------
@pytest.fixture(scope="module")
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


BAD_HEADERS = [
    {"X-A:b": "1"},
    {"X\vY": "1"},
    {"Transfer-Encoding ": "chunked"},
    {"transfer-encoding": "chunked"},
    {"Content-Length": "5"},
    {"CONNECTION": "close"},
    {"": "x"},
    {"X-Ok": "a\x01b"},
    {"X-Ok": "a\x7fb"},
    {"X-Ok": "a\nb"},
    {"X-Ok": " padded"},
    {"X-Ok": "caf\u20ac"},
    {"X-Ok": "1", "x-ok": "2"},
]


def _refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field, body
    assert "Traceback" not in response.text
    return str(body["error"])


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_bad_headers_are_refused_on_requests_and_profiles(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    request = {"method": "GET", "path": "/", "headers": headers}
    created = client.post("/api/traffic/profiles", json={"name": "h", "requests": [request]})
    _refused(created, "requests.0.headers")
    plain = {"name": "h", "requests": [{"method": "GET", "path": "/"}], "headers": headers}
    _refused(client.post("/api/traffic/profiles", json=plain), "headers")
    profile = make_profile(client)
    _refused(
        client.patch(f"/api/traffic/profiles/{profile}", json={"requests": [request]}),
        "requests.0.headers",
    )
    _refused(client.patch(f"/api/traffic/profiles/{profile}", json={"headers": headers}), "headers")


@pytest.mark.parametrize(
    "path", ["/a\tb", "/a b", "/a\vb", "/a\x00", "/a#top", '/a"b', "/a{b}", "/%zz", "/a%2", "a"]
)
def test_paths_that_are_not_request_targets_are_refused(client: httpx.Client, path: str) -> None:
    request = {"method": "GET", "path": path}
    message = _refused(
        client.post("/api/traffic/profiles", json={"name": "p", "requests": [request]}),
        "requests.0.path",
    )
    assert "path" in message
    profile = make_profile(client)
    _refused(
        client.patch(f"/api/traffic/profiles/{profile}", json={"requests": [request]}),
        "requests.0.path",
    )


def test_a_target_url_path_with_a_space_is_refused(client: httpx.Client) -> None:
    profile = make_profile(client)
    body = {
        "name": "c",
        "target_url": "http://127.0.0.1:9/a b",
        "user_profile_ids": [profile],
        "requests_per_minute": 60,
        "duration_minutes": 1,
        "total_users": 1,
    }
    _refused(client.post("/api/traffic/campaigns", json=body), "target_url")


def test_good_headers_pass_and_a_non_ascii_path_is_sent_percent_encoded(
    client: httpx.Client, target: CountingTarget
) -> None:
    request = {
        "method": "GET",
        "path": "/caf\u00e9?q=\u00fc",
        "headers": {"X-Tab": "a\tb", "Host": "example.test", "X-Latin": "caf\u00e9"},
    }
    created = client.post("/api/traffic/profiles", json={"name": "ok", "requests": [request]})
    assert created.status_code == 201, created.text
    assert created.json()["requests"][0]["path"] == "/caf%C3%A9?q=%C3%BC"
    campaign = make_campaign(
        client, target.url, int(created.json()["id"]), duration_minutes=0.02, total_users=2
    )
    started = start(client, campaign)
    assert started["config"]["profiles"] == 1
    assert started["config"]["profile_list"] == [{"id": created.json()["id"], "name": "ok"}]
    done = wait_for_status(client, campaign, "completed", timeout=20)
    assert done["config"]["profiles"] == 1
    assert done["stats"]["requests_failed"] == 0
    assert target.counts["/caf\u00e9"] == done["stats"]["requests_total"] > 0
    _, _, headers = target.bodies[-1]
    assert headers["X-Tab"] == "a\tb"
    assert headers["Host"] == "example.test"


def test_rows_stored_before_the_rules_are_sent_safely_or_not_at_all() -> None:
    target = HttpTarget.parse("http://127.0.0.1:9")
    framing = {"Transfer-Encoding ": "chunked", " content-length": "1", "X-Ok": "1"}
    payload = encode_request(RequestSpec("POST", "/caf\u00e9", headers=framing, body=b"ab"), target)
    head = payload.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.splitlines()[0] == "POST /caf%C3%A9 HTTP/1.1"
    assert "transfer-encoding" not in head.lower()
    assert [h for h in head.splitlines() if h.lower().startswith("content-length")] == [
        "Content-Length: 2"
    ]
    for spec in (
        RequestSpec("GET", "/", headers={"X-A:b": "1"}),
        RequestSpec("GET", "/", headers={"X\vY": "1"}),
        RequestSpec("GET", "/", headers={"X": "caf\u20ac"}),
        RequestSpec("GET", "/a\tb"),
    ):
        with pytest.raises(HeaderInjection):
            encode_request(spec, target)


def _scenario(tmp_path: Path, **fields: Any) -> Path:
    body = {
        "target": "http://127.0.0.1:9",
        "users": 1,
        "rpm": 60,
        "duration_minutes": 1,
        "profiles": [{"name": "p", "requests": [{"method": "GET", "path": "/"}]}],
        **fields,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize(
    ("profile", "where"),
    [
        ({"name": "p", "requests": [{"path": "/", "headers": {"X:y": "1"}}]}, "headers"),
        ({"name": "p", "requests": [{"path": "/a\tb"}]}, "path"),
        ({"name": "p", "requests": [{"path": "/"}], "headers": {"Connection": "x"}}, "headers"),
    ],
)
def test_scenario_files_get_the_same_header_and_path_rules(
    tmp_path: Path, profile: dict[str, Any], where: str
) -> None:
    with pytest.raises(ScenarioError) as refused:
        load_scenario(_scenario(tmp_path, profiles=[profile]))
    assert where in refused.value.message


# 13. Stages may not add up past the one-year cap -------------------------------------------
def test_stages_adding_up_past_a_year_are_refused(client: httpx.Client, tmp_path: Path) -> None:
    profile = make_profile(client)
    year = [{"duration_minutes": 525_600, "target_rpm": 60}]
    body = {
        "name": "c",
        "target_url": "http://127.0.0.1:9",
        "user_profile_ids": [profile],
        "requests_per_minute": 60,
        "total_users": 1,
    }
    ok = client.post("/api/traffic/campaigns", json={**body, "stages": year})
    assert ok.status_code == 201, ok.text
    assert ok.json()["duration_minutes"] == 525_600
    too_long = year * 1000
    message = _refused(
        client.post("/api/traffic/campaigns", json={**body, "stages": too_long}), "body"
    )
    assert "525600" in message
    patched = client.patch(f"/api/traffic/campaigns/{ok.json()['id']}", json={"stages": year * 2})
    assert patched.status_code == 422, patched.text
    with pytest.raises(ScenarioError):
        load_scenario(_scenario(tmp_path, rpm=None, duration_minutes=None, stages=year * 2))


# Reports read stored percentiles, bucketed in SQL ------------------------------------------
@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://campaignd") as c:
        yield c


async def _campaign(svc: Services) -> int:
    profile = await svc.traffic.create_profile(
        {"name": "p", "requests": [{"method": "GET", "path": "/"}], "headers": {}}
    )
    row = await svc.traffic.create_campaign(
        {
            "name": "c",
            "target_url": "http://127.0.0.1:9",
            "user_profile_ids": [profile["id"]],
            "requests_per_minute": 600.0,
            "duration_minutes": 1440.0,
            "total_users": 10,
        }
    )
    return int(row["id"])


@pytest.mark.slow
async def test_a_day_report_is_bucketed_in_sql_from_stored_percentiles(
    services: Services, api: httpx.AsyncClient
) -> None:
    campaign = await _campaign(services)
    day = 86_400
    start_at = datetime(2024, 1, 1, tzinfo=UTC)
    # No histogram at all: the figures can only come from the stored columns.
    rows = [
        {
            "campaign_id": campaign,
            "window_start": start_at + timedelta(seconds=i),
            "window_seconds": 1.0,
            "requests_succeeded": 10,
            "requests_failed": 1 if i % 60 == 0 else 0,
            "requests_dropped": 0,
            "target_rpm": 600.0,
            "latency_sum_us": 0,
            "histogram": None,
            "p50_ms": 1.0,
            "p90_ms": 2.0,
            "p99_ms": 3.0 + (i % 60) / 100,
            "max_ms": 4.0 + (i % 60) / 100,
        }
        for i in range(day)
    ]
    async with services.db.transaction() as conn:
        for chunk in range(0, day, 10_000):
            await conn.execute(insert(traffic_stats), rows[chunk : chunk + 10_000])

    report = (await api.get(f"/api/traffic/campaigns/{campaign}/report")).json()
    points = report["windows"]
    assert report["bucket_seconds"] == 60
    assert len(points) == 1440
    assert sum(p["requests"] for p in points) == day * 10 + 1440
    assert all(p["failed"] == 1 for p in points)
    assert all(p["rpm"] == pytest.approx(601.0) for p in points)
    assert all(p["p99_ms"] == pytest.approx(3.59) for p in points)
    assert all(p["max_ms"] == pytest.approx(4.59) for p in points)
    assert all(p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"] <= p["max_ms"] for p in points)
    assert points[0]["at"] == "2024-01-01T00:00:00Z"

    csv = await api.get(f"/api/traffic/campaigns/{campaign}/report", params={"format": "csv"})
    lines = csv.text.strip().splitlines()
    assert lines[0] == (
        "at,requests,failed,dropped,rpm,target_rpm,p50_ms,p90_ms,p99_ms,max_ms,busy_users"
    )
    assert len(lines) == 1441

    hourly = await api.get(
        f"/api/traffic/campaigns/{campaign}/series", params={"bucket_seconds": 3600, "limit": 24}
    )
    assert [p["requests"] for p in hourly.json()["points"]] == [3600 * 10 + 60] * 24


async def test_windows_are_stored_with_percentiles_and_old_ones_filled_once(
    services: Services, api: httpx.AsyncClient
) -> None:
    campaign = await _campaign(services)
    window = WindowStats(started_at=1_700_000_000.0, seconds=1.0, succeeded=100)
    for micros in [1_000] * 97 + [50_000, 123_457, 999_999]:
        window.histogram.record_value(micros)
    expected = latency_summary(window.histogram, 0)
    await services.traffic.record_window(campaign, window, 600.0, 1.0)

    async with services.db.read() as conn:
        stored = (await conn.execute(select(traffic_stats))).one()
    assert stored.p99_ms == expected["p99"] <= stored.max_ms == expected["max"]

    # A row from before revision 0004: histogram only.
    async with services.db.transaction() as conn:
        await conn.execute(
            update(traffic_stats).values(p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
        )
    points = (await api.get(f"/api/traffic/campaigns/{campaign}/series")).json()["points"]
    assert [(p["p50_ms"], p["p99_ms"], p["max_ms"]) for p in points] == [
        (expected["p50"], expected["p99"], expected["max"])
    ]
    assert await services.traffic.fill_missing_percentiles(campaign) == 0
    async with services.db.read() as conn:
        assert (await conn.execute(select(traffic_stats.c.max_ms))).scalar() == expected["max"]


# Found by bench/hardening.py: a request saved without "method" broke generate with a 500.
def test_a_request_saved_with_only_a_path_takes_the_defaults_and_generates(
    server: ServiceProcess, target: CountingTarget
) -> None:
    with server.client() as client:
        profile = make_profile(client, requests=[{"path": "/only-a-path"}])
        stored = client.get(f"/api/traffic/profiles/{profile}").json()["requests"]
        assert stored == [{"method": "GET", "path": "/only-a-path", "weight": 1.0}]
        campaign = make_campaign(client, target.url, profile, requests_per_minute=1200)
        started = start(client, campaign)
        assert started["success"] is True
        _wait(lambda: target.counts["/only-a-path"] >= 5, 10, "requests reach the target")
        wait_for_status(client, campaign, "completed", timeout=15)
