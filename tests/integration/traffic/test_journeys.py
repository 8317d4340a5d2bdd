"""Journeys against a loopback app that wants each user's own token and cookie."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from campaignd.traffic.generation import Ending, Generation
from campaignd.traffic.plan import LoadPlan, UserProfile
from campaignd.traffic.stats import summarize
from support.journey_app import DATA, JourneyApp, journey_profile


@pytest.fixture
def app() -> Iterator[JourneyApp]:
    with JourneyApp() as server:
        yield server


def _plan(app: JourneyApp, rate: float, users: int = 6, **extra: object) -> LoadPlan:
    profile = UserProfile.from_row({"id": 1, **journey_profile(**extra), "requests": []})
    return LoadPlan(app.url, (profile,), total_users=users, rate_per_second=rate)


async def _run(app: JourneyApp, rate: float, seconds: float, workers: int = 1, **extra: object):
    generation = Generation(
        _plan(app, rate, **extra), duration_seconds=seconds, workers=workers, drain_seconds=2.0
    )
    assert await asyncio.wait_for(generation.run(), 30) is Ending.COMPLETED
    await generation.flush()
    return generation.totals


def _check_order(app: JourneyApp) -> None:
    """Every login's token is used by its own user, for the steps after the login, in order."""
    assert app.refused == []
    for token, paths in app.by_token.items():
        login = app.logins[token]
        row = DATA[int(login["user"]) % len(DATA)]
        assert login["email"] == row["email"]
        expected = [f"/items/{row['item']}", "/profile"]
        assert [p.split("?")[0] for p in paths] == expected[: len(paths)], (token, paths)


async def test_each_user_carries_its_own_token_and_cookie_in_step_order(app: JourneyApp) -> None:
    totals = await _run(app, rate=60.0, seconds=3.0)
    _check_order(app)
    stats = summarize(totals, 3.0, 3600.0, ["log in", "item", "profile"])
    steps = {s["name"]: s for s in stats["steps"]}
    assert list(steps) == ["log in", "item", "profile"]
    logins = len(app.logins)
    assert steps["log in"]["requests"] == logins
    assert steps["item"]["requests"] + steps["profile"]["requests"] == app.requests_after_login
    assert stats["requests_total"] == 180  # the open-model rate holds for journeys
    assert stats["requests_failed"] == 0
    checks = {(c["step"], c["name"]): c for c in stats["checks"]}
    assert checks[("profile", "profile ok")]["fails"] == app.profile_false
    assert checks[("profile", "profile ok")]["passes"] == app.profile_calls - app.profile_false
    assert checks[("item", "status is 200")]["passes"] == steps["item"]["requests"]
    assert stats["iterations"] == steps["profile"]["requests"]
    assert stats["iterations_aborted"] == 0
    users = {int(login["user"]) for login in app.logins.values()}
    assert users == set(range(6))
    # each user's iteration number goes up by one per pass
    seen: dict[int, list[int]] = {}
    for token in sorted(app.by_token, key=lambda t: int(t.split("-")[1])):
        user = int(app.logins[token]["user"])
        items = [p for p in app.by_token[token] if p.startswith("/items")]
        seen.setdefault(user, []).extend(int(p.split("?i=")[1]) for p in items)
    assert all(numbers == list(range(len(numbers))) for numbers in seen.values()), seen


async def test_a_failed_extraction_aborts_the_iteration(app: JourneyApp) -> None:
    app.refuse_emails = {"bob@example.com"}
    totals = await _run(app, rate=60.0, seconds=2.0)
    _check_order(app)
    assert totals.iterations_aborted == app.tokenless_logins > 0
    assert all(login["email"] != "bob@example.com" for login in app.logins.values())


async def test_two_worker_processes_merge_the_same_step_stats(app: JourneyApp) -> None:
    totals = await _run(app, rate=90.0, seconds=2.0, workers=2)
    _check_order(app)
    stats = summarize(totals, 2.0, 5400.0, ["log in", "item", "profile"])
    steps = {s["name"]: s for s in stats["steps"]}
    assert stats["requests_total"] == 180
    assert sum(s["requests"] for s in steps.values()) == 180
    assert steps["log in"]["requests"] == len(app.logins)
    checks = {(c["step"], c["name"]): c for c in stats["checks"]}
    assert checks[("profile", "profile ok")]["fails"] == app.profile_false
    assert checks[("profile", "profile ok")]["passes"] == app.profile_calls - app.profile_false
