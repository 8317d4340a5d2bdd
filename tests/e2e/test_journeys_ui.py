"""A journey made in the profile editor (steps, CSV data rows) and watched on the monitor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.conftest import shoot
from support.journey_app import JourneyApp
from support.service import ServiceProcess
from support.traffic_flow import make_campaign, start

pytestmark = pytest.mark.e2e


@pytest.fixture
def app() -> Iterator[JourneyApp]:
    with JourneyApp() as server:
        yield server


def _fill_step(page, n: int, **fields: str) -> None:  # type: ignore[no-untyped-def]
    for name, value in fields.items():
        locator = page.locator(f"#s{n}-{name}")
        if name == "method":
            locator.select_option(value)
        else:
            locator.fill(value)


def test_a_journey_from_the_editor_runs_and_the_monitor_shows_steps_and_checks(
    page, ui_server: ServiceProcess, app: JourneyApp, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{ui_server.url}/#/setup")
    page.get_by_role("heading", name="Journey profiles (scripted users)").wait_for()
    page.get_by_label("Journey name").fill("shop journey")
    _fill_step(
        page,
        0,
        name="log in",
        method="POST",
        path="/login",
        body='{"email": "{{ data.email }}", "user": "{{ user.index }}"}',
        extract="token = json $.token",
        checks="status 200",
    )
    page.get_by_role("button", name="Add step").click()
    _fill_step(
        page,
        1,
        name="profile",
        path="/profile",
        headers="Authorization: Bearer {{ tokn }}",
        checks="json $.ok == true",
    )
    csv_file = tmp_path / "users.csv"
    csv_file.write_text('email,item\nann@example.com,11\n"bob@example.com",22\n')
    page.get_by_label("Data rows from a CSV file").set_input_files(str(csv_file))
    page.get_by_text("2 data rows from users.csv").wait_for()

    # a typo in a variable is refused, naming the step and the field
    page.get_by_role("button", name="Create journey").click()
    error = page.locator("#journey-error")
    error.wait_for()
    assert "Step 'profile' (steps[1].headers.Authorization)" in error.inner_text()
    assert "'tokn'" in error.inner_text()
    _fill_step(page, 1, headers="Authorization: Bearer {{ token }}")
    page.get_by_role("button", name="Create journey").click()
    page.get_by_text(
        "journey: log in (POST /login) → profile (GET /profile), 2 data rows"
    ).wait_for()
    shoot(page, "journey-editor")

    with ui_server.client() as client:
        profiles = client.get("/api/traffic/profiles").json()
        profile = next(p for p in profiles if p["name"] == "shop journey")
        assert profile["data"] == [
            {"email": "ann@example.com", "item": "11"},
            {"email": "bob@example.com", "item": "22"},
        ]
        campaign = make_campaign(
            client,
            app.url,
            profile["id"],
            requests_per_minute=600,
            duration_minutes=1,
            total_users=4,
        )
        start(client, campaign)
    page.goto(f"{ui_server.url}/#/traffic/{campaign}")
    table = page.locator("#request-names")
    table.wait_for()
    deadline = time.monotonic() + 15
    while app.profile_false < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#check-table tr.check-failing')].length > 0"
    )
    rows = table.locator("tbody tr")
    assert rows.nth(0).locator("td").nth(0).inner_text() == "log in"
    assert rows.nth(1).locator("td").nth(0).inner_text() == "profile"
    assert int(rows.nth(0).locator("td").nth(1).inner_text().replace(",", "")) > 0
    assert page.locator("#check-table").get_by_text("$.ok == true").is_visible()
    assert page.locator("#iterations").is_visible()
    shoot(page, "journey-monitor")
    with ui_server.client() as client:
        stopped = client.put(
            f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"}
        )
        assert stopped.status_code == 200, stopped.text
    assert app.refused == []
    assert {login["email"] for login in app.logins.values()} == {
        "ann@example.com",
        "bob@example.com",
    }
    page.goto(f"{ui_server.url}/#/traffic/{campaign}/report")
    page.locator("#request-names").wait_for()
    page.locator("#check-table").wait_for()
