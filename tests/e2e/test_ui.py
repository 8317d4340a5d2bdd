"""The operator's path through the web UI, in a real browser, checked at the far end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from e2e.conftest import shoot
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.e2e


def _stat(page, label: str) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator(f'dd[data-stat="{label}"]').inner_text())


def _open(page, server: ServiceProcess, route: str, heading: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server.url}/{route}")
    page.get_by_role("heading", name=heading, exact=True).wait_for()


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_traffic_campaign_from_the_ui(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Profile name").fill("browse")
    page.get_by_label("Path", exact=True).fill("/home")
    page.get_by_role("button", name="Create profile").click()
    page.get_by_text("browse: GET /home").wait_for()

    _open(page, ui_server, "#/traffic/new", "New traffic campaign")
    page.get_by_label("Name", exact=True).fill("ui load")
    page.get_by_label("Target URL").fill(target.url)
    page.get_by_label("browse").check()
    page.get_by_label("Requests per minute").fill("1200")
    page.get_by_label("Duration (minutes)").fill("2")
    page.get_by_role("button", name="Create campaign").click()
    page.get_by_role("button", name="Start").click()
    page.locator("#campaign-status .badge-running").wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-a polyline')?.dataset.points) >= 3"
    )
    first = _stat(page, "Requests")
    _wait(lambda: _stat(page, "Requests") > first)
    shoot(page, "traffic-monitor-running")
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Requests per minute").fill("600")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Stop campaign").click()
    page.locator("#campaign-status .badge-stopped").wait_for()
    assert target.counts["/home"] >= 20
    page.get_by_role("link", name="Full report").click()
    page.get_by_role("heading", name="Report: ui load").wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-b polyline')?.dataset.points) >= 3"
    )
    assert _stat(page, "Requests") == target.counts["/home"]
    shoot(page, "traffic-report")
    _open(page, ui_server, "#/", "Campaigns")
    page.get_by_role("link", name="ui load").wait_for()
    shoot(page, "campaign-list")


def test_message_campaign_edit_stop_resume(
    page,
    ui_server: ServiceProcess,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    # The log channel writes only in its directory: channel-logs beside the server's database.
    database = Path(ui_server.database_url.removeprefix("sqlite:///"))
    log_file = database.parent / "channel-logs" / "ui" / "sent.jsonl"
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Account name").fill("dry run")
    page.get_by_label("Channel").select_option("log")
    page.get_by_label("File path").fill("ui/sent.jsonl")
    page.get_by_role("button", name="Create account").click()
    page.locator("#account-list li", has_text="dry run").wait_for()
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "external_id,address,name\n"
        + "".join(f"p{i},p{i}@example.test,Person{i}\n" for i in range(40))
        + "bad,,Nobody\n"
    )
    page.get_by_label("Audience name").fill("people")
    page.get_by_label("Contacts CSV (external_id,address,…)").set_input_files(str(csv_file))
    page.get_by_role("button", name="Create audience").click()
    page.get_by_text("Imported 40, duplicates 0, rejected 1").wait_for()
    shoot(page, "setup")

    _open(page, ui_server, "#/messages/new", "New message campaign")
    page.get_by_label("Name", exact=True).fill("welcome")
    page.get_by_label("Audience", exact=True).select_option(label="people (40 contacts)")
    page.get_by_label("Message", exact=True).fill("Hi {{ name }}")
    page.locator("#m-preview", has_text="Hi Person0").wait_for()
    page.get_by_label("Limit", exact=True).fill("40")
    page.get_by_label("Rate (messages per minute, empty for no limit)").fill("300")
    shoot(page, "message-editor")
    page.get_by_role("button", name="Create campaign").click()
    page.get_by_role("button", name="Start").click()
    page.locator("#campaign-status .badge-running").wait_for()
    _wait(lambda: _stat(page, "Sent") >= 3)

    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Message", exact=True).fill("Bye {{ name }")
    page.get_by_role("button", name="Save").click()
    page.locator("#edit-message + .field-error", has_text="not a valid template").wait_for()
    page.get_by_label("Message", exact=True).fill("Bye {{ name }}")
    page.get_by_label("Limit", exact=True).fill("30")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Stop campaign").click()
    page.locator("#campaign-status .badge-stopped").wait_for()
    stopped_at = _stat(page, "Sent")
    shoot(page, "message-monitor-stopped")
    page.get_by_role("button", name="Resume").click()
    page.locator("#campaign-status .badge-completed").wait_for(timeout=20_000)
    _wait(lambda: _stat(page, "Sent") == 30)
    assert stopped_at < 30
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-a polyline')?.dataset.points) >= 2"
    )
    shoot(page, "message-monitor-completed")

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert len(lines) == 30 and len({line["external_id"] for line in lines}) == 30
    assert lines[0]["message"].startswith("Hi Person")
    assert lines[-1]["message"].startswith("Bye Person"), "the edit reached later messages"
    # Everyone it can reach has the message: no Resume that would do nothing, and a note why.
    page.get_by_text("Everyone this campaign can reach has the message.").wait_for()
    assert page.get_by_role("button", name="Resume").count() == 0

    page.get_by_role("link", name="Full report").click()
    page.get_by_role("heading", name="Report: welcome").wait_for()
    assert _stat(page, "Sent") == 30
    variant_row = page.get_by_role("row").filter(has_text="default")
    assert variant_row.get_by_role("cell").nth(1).inner_text() == "30"
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    saved = tmp_path / "report.csv"
    download_info.value.save_as(saved)
    rows = saved.read_text().splitlines()
    assert rows[0] == "at,sent,failed"
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == 30
    shoot(page, "message-report")


def test_errors_are_shown_in_words(page, ui_server: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/traffic/new", "New traffic campaign")
    page.get_by_label("Name", exact=True).fill("bad target")
    page.get_by_label("Target URL").fill("http://10.1.2.3")
    page.locator("input[name=profile]").first.check()
    page.get_by_role("button", name="Create campaign").click()
    page.locator("#t-target + .field-error", has_text="not in the allowed targets").wait_for()


def test_phone_width_has_no_horizontal_scroll(browser, ui_server: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    for route in ("#/", "#/setup", "#/messages/new", "#/messages/1"):
        page.goto(f"{ui_server.url}/{route}")
        page.wait_for_timeout(700)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, (route, width)
    shoot(page, "phone-monitor")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.tagName")
    assert focused in ("A", "BUTTON", "INPUT", "SELECT", "TEXTAREA")
    context.close()


def test_secrets_never_reach_the_page(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Account name").fill("signed hook")
    page.get_by_label("URL", exact=True).fill(f"{target.url}/hook")
    page.get_by_label("Signing secret").fill("ui-Secret-9876")
    page.get_by_role("button", name="Create account").click()
    page.locator("#account-list li", has_text="signed hook").get_by_text(
        f"Posts to {target.url}/hook, signed"
    ).wait_for()
    assert "ui-Secret-9876" not in page.content()
    assert "ui-Secret-9876" not in ui_server.log


def test_smtp_account_with_starttls_from_the_ui(page, ui_server: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Account name").fill("mail relay")
    page.get_by_label("Channel").select_option("smtp")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill("587")
    page.get_by_label("From address").fill("news@example.test")
    page.get_by_label("Password").fill("smtp-Secret-4321")
    page.get_by_label("Connection security").select_option("starttls")
    page.get_by_label("CA certificate for a private server (PEM, optional)").fill("not a cert")
    page.get_by_role("button", name="Create account").click()
    error = page.locator("#acc-ca_cert + .field-error")
    error.wait_for()
    assert error.inner_text().startswith("CA certificate must be one or more PEM certificates")
    page.get_by_label("CA certificate for a private server (PEM, optional)").fill("")
    page.get_by_role("button", name="Create account").click()
    page.locator("#account-list li", has_text="mail relay").wait_for()
    shoot(page, "setup-smtp")
    with ui_server.client() as client:
        accounts = client.get("/api/accounts").json()
    config = next(a["config"] for a in accounts if a["name"] == "mail relay")
    assert config["starttls"] is True and config["use_tls"] is False
    assert config["password"] == "***" and "smtp-Secret-4321" not in page.content()
