"""What an operator does around campaigns: names, human errors, edit, clone, archive, delete,
warnings, and the auto-pause of a message campaign whose channel is dead.

Each test runs on SQLite and PostgreSQL against the real app in-process (ASGI) over a real
migrated database; webhooks go to a real loopback sink.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from campaignd.api.app import create_app
from campaignd.services import Services
from support.target import CountingTarget


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services=services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://campaignd") as client:
        yield client


async def _ok(response: Any, status: int = 200) -> Any:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _refused(response: Any, status: int) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return dict(response.json())


async def _profile(api: httpx.AsyncClient, name: str = "browse") -> int:
    body = {"name": name, "requests": [{"method": "GET", "path": "/"}]}
    return int((await _ok(api.post("/api/traffic/profiles", json=body), 201))["id"])


async def _traffic(api: httpx.AsyncClient, target: CountingTarget, profile: int) -> int:
    body = {
        "name": "load",
        "target_url": target.url,
        "user_profile_ids": [profile],
        "requests_per_minute": 60,
        "duration_minutes": 1,
        "total_users": 2,
    }
    return int((await _ok(api.post("/api/traffic/campaigns", json=body), 201))["id"])


async def _messages(
    api: httpx.AsyncClient, sink: CountingTarget, contacts: int, **overrides: Any
) -> tuple[int, int, int]:
    account = await _ok(
        api.post(
            "/api/accounts",
            json={
                "name": "hook",
                "channel": "webhook",
                "config": {"url": f"{sink.url}/hook", "max_attempts": 1},
            },
        ),
        201,
    )
    audience = await _ok(api.post("/api/audiences", json={"name": "fans"}), 201)
    rows = [{"external_id": f"u{i}", "address": f"u{i}@x.test"} for i in range(contacts)]
    if rows:
        await _ok(api.post(f"/api/audiences/{audience['id']}/contacts", json={"contacts": rows}))
    body = {
        "name": "hello",
        "account_id": account["id"],
        "audience_id": audience["id"],
        "message": "Hi {{ external_id }}",
        "limit": 1000,
        **overrides,
    }
    campaign = await _ok(api.post("/api/campaigns", json=body), 201)
    return int(account["id"]), int(audience["id"]), int(campaign["id"])


async def _status(api: httpx.AsyncClient, campaign: int, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = await _ok(api.get(f"/api/campaigns/{campaign}"))
        if view["status"] == wanted and not view["sending"]:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign} not {wanted}: {view}")


# 1 and 2: names and schema errors in words -------------------------------------------------
async def test_blank_names_are_refused_in_words_and_names_are_stripped(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    for route, body in [
        ("/api/audiences", {"name": "   "}),
        ("/api/traffic/profiles", {"name": " ", "requests": [{"path": "/"}]}),
        ("/api/accounts", {"name": "\t", "channel": "log", "config": {"path": "x.log"}}),
    ]:
        error = await _refused(api.post(route, json=body), 422)
        assert error["error"] == "Name cannot be blank." and error["field"] == "name"
    profile = await _profile(api, "  browse  ")
    assert (await _ok(api.get(f"/api/traffic/profiles/{profile}")))["name"] == "browse"
    campaign = await _traffic(api, target, profile)
    error = await _refused(api.patch(f"/api/traffic/campaigns/{campaign}", json={"name": ""}), 422)
    assert error["error"] == "Name cannot be blank."
    assert (await _ok(api.get(f"/api/traffic/campaigns/{campaign}")))["name"] == "load"


@pytest.mark.parametrize(
    ("change", "field", "sentence"),
    [
        (
            {"target_url": "127.0.0.1:9000"},
            "target_url",
            "Target URL must be a web address starting with http:// or https:// and a host, "
            "like http://127.0.0.1:9000.",
        ),
        ({"user_profile_ids": []}, "user_profile_ids", "Choose at least one user profile."),
        (
            {"requests_per_minute": 0},
            "requests_per_minute",
            "Requests per minute must be more than 0.",
        ),
        ({"total_users": "many"}, "total_users", "Virtual users must be a whole number."),
        ({"target_url": None}, "target_url", "Target URL must be text."),
    ],
)
async def test_schema_errors_read_like_a_form(
    api: httpx.AsyncClient,
    target: CountingTarget,
    change: dict[str, Any],
    field: str,
    sentence: str,
) -> None:
    body = {
        "name": "c",
        "target_url": target.url,
        "user_profile_ids": [await _profile(api)],
        "requests_per_minute": 60,
        "duration_minutes": 1,
        "total_users": 1,
        **change,
    }
    error = await _refused(api.post("/api/traffic/campaigns", json=body), 422)
    assert (error["field"], error["error"]) == (field, sentence)
    assert "should" not in error["error"] and "Field '" not in error["error"]


async def test_an_smtp_account_without_a_port_gets_the_usual_one(api: httpx.AsyncClient) -> None:
    config = {"host": "127.0.0.1", "from": "me@example.test", "starttls": True}
    body = {"name": "mail", "channel": "smtp", "config": config}
    account = await _ok(api.post("/api/accounts", json=body), 201)
    assert account["config"]["port"] == 587
    missing = {"name": "mail", "channel": "smtp", "config": {"host": "127.0.0.1"}}
    error = await _refused(api.post("/api/accounts", json=missing), 422)
    assert error["error"] == "From address is required for an SMTP account."
    assert error["field"] == "config.from"


async def test_a_template_error_ends_with_one_full_stop(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    _, _, campaign = await _messages(api, target, 1)
    error = await _refused(
        api.patch(f"/api/campaigns/{campaign}", json={"message": "Hi {{ name }"}), 422
    )
    assert error["field"] == "message" and not error["error"].endswith("..")


async def test_preview_of_the_unsubscribe_link_renders(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    _, audience, _ = await _messages(api, target, 1)
    body = {"message": "Bye: {{ unsubscribe_url }}", "audience_id": audience}
    preview = await _ok(api.post("/api/campaigns/preview", json=body))
    assert preview["error"] is None and preview["rendered"].startswith("Bye: ")


# 13: full editing of drafts, clone, archive and delete ---------------------------------------
async def test_a_draft_takes_every_field_and_a_started_campaign_refuses_its_audience(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    account, _, campaign = await _messages(api, target, 2)
    other = await _ok(api.post("/api/audiences", json={"name": "others"}), 201)
    rows = [{"external_id": "o1", "address": "o1@x.test", "attributes": {"tier": "gold"}}]
    await _ok(api.post(f"/api/audiences/{other['id']}/contacts", json={"contacts": rows}))
    edit = {
        "name": "renamed",
        "audience_id": other["id"],
        "account_id": account,
        "segment": [{"attribute": "tier", "in": ["gold"]}],
        "variants": [{"name": "a", "message": "A {{ external_id }}"}, {"name": "b"}],
        "ab_test": {"sample_percent": 50, "metric": "delivery_rate"},
        "subject": "News",
        "limit": 5,
        "rate_per_minute": 600,
        "max_consecutive_failures": 7,
    }
    view = await _ok(api.patch(f"/api/campaigns/{campaign}", json=edit))
    for key in ("name", "audience_id", "segment", "subject", "limit", "max_consecutive_failures"):
        assert view[key] == edit[key], key
    assert [v["name"] for v in view["variants"]] == ["a", "b"]
    assert view["ab_test"]["sample_percent"] == 50
    scheduled = await _ok(
        api.patch(f"/api/campaigns/{campaign}", json={"start_at": "2999-01-01T09:00:00Z"})
    )
    assert scheduled["status"] == "scheduled"
    back = await _ok(api.patch(f"/api/campaigns/{campaign}", json={"start_at": None}))
    assert back["status"] == "draft" and back["start_at"] is None

    await _ok(api.post(f"/api/campaigns/{campaign}/start"))
    await _status(api, campaign, "completed")
    late = await _refused(
        api.patch(f"/api/campaigns/{campaign}", json={"audience_id": other["id"]}), 409
    )
    assert late["field"] == "audience_id" and "clone" in late["error"]


async def test_clone_archive_and_delete_of_campaigns(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    _, _, campaign = await _messages(
        api, target, 0, max_consecutive_failures=3, track_links=True, shards=2
    )
    copy = await _ok(api.post(f"/api/campaigns/{campaign}/clone"), 201)
    assert copy["name"] == "hello (copy)" and copy["status"] == "draft"
    assert copy["max_consecutive_failures"] == 3 and copy["id"] != campaign
    assert copy["track_links"] is True and copy["shards"] == 2
    await _ok(api.post(f"/api/campaigns/{campaign}/archive"))
    listed = [c["id"] for c in await _ok(api.get("/api/campaigns"))]
    archived = [c["id"] for c in await _ok(api.get("/api/campaigns?archived=true"))]
    assert listed == [copy["id"]] and archived == [campaign]
    await _ok(api.post(f"/api/campaigns/{campaign}/unarchive"))
    await _ok(api.delete(f"/api/campaigns/{campaign}"), 204)
    await _refused(api.get(f"/api/campaigns/{campaign}"), 404)

    profile = await _profile(api)
    traffic = await _traffic(api, target, profile)
    twin = await _ok(api.post(f"/api/traffic/campaigns/{traffic}/clone"), 201)
    assert twin["name"] == "load (copy)" and twin["user_profile_ids"] == [profile]
    await _ok(api.put(f"/api/traffic/campaigns/{traffic}/status", json={"status": "running"}))
    for refused in (
        api.delete(f"/api/traffic/campaigns/{traffic}"),
        api.post(f"/api/traffic/campaigns/{traffic}/archive"),
    ):
        error = await _refused(refused, 409)
        assert error["error"].startswith("Campaign 'load' is running; stop it before")
    error = await _refused(api.post(f"/api/traffic/profiles/{profile}/archive"), 409)
    assert error["error"] == (
        "Profile 'browse' is used by running campaign 'load'; stop it before archiving the profile."
    )
    await _ok(api.put(f"/api/traffic/campaigns/{traffic}/status", json={"status": "stopped"}))
    error = await _refused(api.delete(f"/api/traffic/profiles/{profile}"), 409)
    assert "delete those campaigns first, or archive the profile instead" in error["error"]
    await _ok(api.post(f"/api/traffic/profiles/{profile}/archive"))
    assert await _ok(api.get("/api/traffic/profiles")) == []
    await _ok(api.delete(f"/api/traffic/campaigns/{traffic}"), 204)
    await _ok(api.delete(f"/api/traffic/campaigns/{twin['id']}"), 204)
    await _ok(api.delete(f"/api/traffic/profiles/{profile}"), 204)


async def test_accounts_and_audiences_in_use_are_refused_with_the_campaign_named(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    target.delay_for["/hook"] = 0.5
    account, audience, campaign = await _messages(api, target, 20, rate_per_minute=60)
    await _ok(api.post(f"/api/campaigns/{campaign}/start"))
    error = await _refused(api.post(f"/api/accounts/{account}/archive"), 409)
    assert error["error"] == (
        "Account 'hook' is used by running campaign 'hello'; stop it before archiving the account."
    )
    assert error["campaign_ids"] == [campaign]
    error = await _refused(api.delete(f"/api/audiences/{audience}"), 409)
    assert error["error"] == (
        "Audience 'fans' is used by campaign 'hello' (running); stop and delete that campaign "
        "first."
    )
    error = await _refused(api.delete(f"/api/campaigns/{campaign}"), 409)
    assert error["error"] == "Campaign 'hello' is running; stop it before deleting it."
    await _ok(api.post(f"/api/campaigns/{campaign}/stop"))
    await _status(api, campaign, "stopped")
    await _ok(api.post(f"/api/accounts/{account}/archive"))
    assert await _ok(api.get("/api/accounts")) == []
    await _ok(api.delete(f"/api/campaigns/{campaign}"), 204)
    await _ok(api.delete(f"/api/accounts/{account}"), 204)
    await _ok(api.delete(f"/api/audiences/{audience}"), 204)
    assert await _ok(api.get("/api/audiences")) == []


# 9, 10, 11: warnings and the auto-pause ----------------------------------------------------
async def test_warnings_for_an_empty_audience_and_a_limit_below_sent(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    _, _, empty = await _messages(api, target, 0)
    view = await _ok(api.get(f"/api/campaigns/{empty}"))
    assert view["warnings"] == [
        "The audience has no contacts: starting sends nothing. Import contacts first."
    ]
    _, _, campaign = await _messages(api, target, 3)
    assert (await _ok(api.get(f"/api/campaigns/{campaign}")))["warnings"] == []
    await _ok(api.post(f"/api/campaigns/{campaign}/start"))
    await _status(api, campaign, "completed")
    view = await _ok(api.patch(f"/api/campaigns/{campaign}", json={"limit": 1}))
    assert view["warnings"] == [
        "The limit (1) is below what was already sent (3): nobody else will get the message."
    ]


async def test_a_dead_webhook_pauses_the_campaign_after_a_run_of_failures(
    api: httpx.AsyncClient, target: CountingTarget
) -> None:
    target.status_for["/hook"] = 404
    _, _, campaign = await _messages(
        api, target, 40, max_consecutive_failures=5, rate_per_minute=1200
    )
    await _ok(api.post(f"/api/campaigns/{campaign}/start"))
    view = await _status(api, campaign, "paused")
    assert view["pause_reason"].startswith("Paused by itself after 5 failed deliveries in a row")
    assert "404" in view["pause_reason"] and view["last_error"] == view["pause_reason"]
    # The fifth failure plus whatever was already in flight: not the whole audience.
    assert 5 <= view["failed_count"] < 10 and target.counts["/hook"] == view["failed_count"]
    target.status_for["/hook"] = 200
    await _ok(api.post(f"/api/campaigns/{campaign}/resume"))
    done = await _status(api, campaign, "completed")
    assert done["pause_reason"] is None and done["sent_count"] == 40 - done["failed_count"]
