# ruff: noqa: RUF001 - the page really shows en dashes and multiplication signs
"""The operator's everyday UI (issue 15), in Debian's Chromium against the real server:
errors in words beside their fields, one request per click, why things fail, what is running,
the whole lifecycle (edit, clone, archive, delete), tokens, downloads and small screens.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.conftest import SCREENSHOTS
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _open(page, server: ServiceProcess, route: str, heading: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server.url}/{route}")
    page.get_by_role("heading", name=heading, exact=True).wait_for()


def _stat(page, label: str) -> str:  # type: ignore[no-untyped-def]
    return str(page.locator(f'dd[data-stat="{label}"]').inner_text())


def _field_error(page, control_id: str) -> str:  # type: ignore[no-untyped-def]
    """The sentence shown right after a control (where a person looks for it)."""
    note = page.locator(f"#{control_id} + .field-error")
    note.wait_for()
    return str(note.inner_text())


# After a resize, charts are drawn again at their box's width (chart.js: the box's width less
# 16 px, at least 280), on a report at once, on a monitor at its next refresh; and wide tables
# are marked as scrolling (dom.js: markWideTables).
FOLLOWS_THE_WIDTH = """() =>
  [...document.querySelectorAll("svg.chart")].every((svg) =>
    Number(svg.getAttribute("width")) ===
      Math.max(280, Math.round(svg.parentElement.clientWidth || 600) - 16)) &&
  [...document.querySelectorAll(".table-wrap")].every((wrap) =>
    wrap.classList.contains("scrolls") === wrap.scrollWidth > wrap.clientWidth + 1)"""


def _shoot_both(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """The page as it stands, at 1280 px and at 390 px."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for width, suffix in ((1280, "1280"), (390, "390")):
        page.set_viewport_size({"width": width, "height": 900 if width > 600 else 844})
        page.wait_for_function(FOLLOWS_THE_WIDTH)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{suffix}.png"), full_page=True)
    page.set_viewport_size(size)


def _traffic(client: httpx.Client, target: CountingTarget, name: str, **extra: Any) -> int:
    profile = client.post(
        "/api/traffic/profiles",
        json={
            "name": f"{name} users",
            "requests": [
                {"method": "GET", "path": "/home", "weight": 3},
                {"method": "GET", "path": "/missing", "weight": 1},
            ],
        },
    ).json()["id"]
    body = {
        "name": name,
        "target_url": target.url,
        "user_profile_ids": [profile],
        "requests_per_minute": 1200,
        "duration_minutes": 2,
        "total_users": 10,
        **extra,
    }
    response = client.post("/api/traffic/campaigns", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _messages(
    client: httpx.Client, sink: CountingTarget, name: str, contacts: int, **extra: Any
) -> tuple[int, int, int]:
    account = client.post(
        "/api/accounts",
        json={
            "name": f"{name} hook",
            "channel": "webhook",
            "config": {"url": f"{sink.url}/{name}", "max_attempts": 1},
        },
    ).json()["id"]
    audience = client.post("/api/audiences", json={"name": f"{name} people"}).json()["id"]
    if contacts:
        rows = [
            {"external_id": f"{name}{i}", "address": f"{name}{i}@x.test", "attributes": {"n": i}}
            for i in range(contacts)
        ]
        client.post(f"/api/audiences/{audience}/contacts", json={"contacts": rows})
    body = {
        "name": name,
        "account_id": account,
        "audience_id": audience,
        "message": "Hi {{ external_id }}",
        "limit": 1000,
        **extra,
    }
    response = client.post("/api/campaigns", json=body)
    assert response.status_code == 201, response.text
    return account, audience, int(response.json()["id"])


# 1, 2: blank names and errors in words beside their fields ---------------------------------
def test_errors_are_sentences_beside_their_fields(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/traffic/new", "New traffic campaign")
    page.get_by_label("Name", exact=True).fill("   ")
    page.get_by_label("Target URL").fill("127.0.0.1:9000")
    page.get_by_label("Requests per minute").fill("0")
    page.get_by_role("button", name="Create campaign").click()
    assert _field_error(page, "t-name") == "Name cannot be blank."
    assert _field_error(page, "t-target") == (
        "Target URL must be a web address starting with http:// or https:// and a host, "
        "like http://127.0.0.1:9000."
    )
    assert _field_error(page, "t-rpm") == "Requests per minute must be more than 0."
    profiles = page.locator("fieldset[data-field=user_profile_ids] + .field-error")
    assert profiles.inner_text() == "Choose at least one user profile."
    assert page.locator("#t-name").get_attribute("aria-invalid") == "true"
    text = page.locator("main").inner_text()
    assert "should" not in text and "Field '" not in text and "List should" not in text
    _shoot_both(page, "traffic-editor-errors")

    with ui_server.client() as client:
        _messages(client, target, "words", 2)
    _open(page, ui_server, "#/messages/new", "New message campaign")
    page.get_by_label("Audience", exact=True).select_option(label="words people (2 contacts)")
    page.get_by_label("Message", exact=True).fill("Bye: {{ unsubscribe_url }}")
    page.locator("#m-preview", has_text="Bye: http").wait_for()  # item 4: no 500
    page.get_by_label("Name", exact=True).fill("words")
    page.get_by_label("Message", exact=True).fill("Hi {{ name }")
    page.get_by_role("button", name="Create campaign").click()
    sentence = _field_error(page, "m-message")
    assert sentence.startswith("Message is not a valid template") and not sentence.endswith("..")


def test_an_smtp_account_needs_no_port_and_reads_in_words(page, ui_server: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Account name").fill("relay")
    page.get_by_label("Channel").select_option("smtp")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_role("button", name="Create account").click()
    assert _field_error(page, "acc-from") == "From address is required for an SMTP account."
    page.get_by_label("From address").fill("news@example.test")
    page.get_by_role("button", name="Create account").click()
    page.get_by_text("E-mail through 127.0.0.1:587 from news@example.test (STARTTLS)").wait_for()
    assert "timeout_seconds=" not in page.content() and "max_attempts=" not in page.content()

    _open(page, ui_server, "#/messages/new", "New message campaign")
    page.get_by_label("Account", exact=True).select_option(label="relay – SMTP (e-mail)")
    page.get_by_label("Subject").wait_for()  # the Subject field appears for e-mail only


# 3, 5, 6, 7, 14: the traffic monitor --------------------------------------------------------
def test_traffic_monitor_one_click_one_request_reasons_and_figures(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    target.status_for["/missing"] = 404
    with ui_server.client() as client:
        campaign = _traffic(client, target, "monitored")
    status_puts: list[str] = []
    page.on(
        "request",
        lambda r: status_puts.append(r.url) if r.method == "PUT" and "/status" in r.url else None,
    )
    _open(page, ui_server, f"#/traffic/{campaign}", "monitored")
    assert page.title() == "monitored – campaignd"
    assert _stat(page, "Current rpm") == "–"
    for label in ("Target", "Profiles", "Duration", "Elapsed", "Remaining"):
        page.locator(f'dd[data-fact="{label}"]').wait_for()
    assert page.locator('dd[data-fact="Target"]').inner_text() == target.url
    assert "GET /home ×3, GET /missing" in page.locator('dd[data-fact="Profiles"]').inner_text()
    # Empty charts say so instead of drawing "1, 1, 0" ticks.
    assert page.locator("#chart-a").get_attribute("data-empty") == "true"
    assert page.locator("#chart-a text.axis").count() == 0

    page.get_by_role("button", name="Start").dblclick()
    page.locator("#campaign-status .badge-running").wait_for()
    assert len(status_puts) == 1, status_puts
    assert page.locator("#action-error").is_hidden()
    _wait(lambda: target.counts["/missing"] >= 3 and target.counts["/home"] >= 6)
    page.locator("#failure-reasons td", has_text="HTTP 404").wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-a polyline')?.dataset.points) >= 3"
    )
    assert _stat(page, "Current rpm") != "–"
    page.locator('dt:text-is("Average rpm (whole run)")').wait_for()
    titles = page.locator(".chart-title").all_inner_texts()
    assert titles[:2] == ["Requests per minute: achieved and target", "Latency p50 and p99 (ms)"]
    assert titles[2] == "Busy users (concurrency)"
    assert page.locator("#chart-a text.time").count() == 3  # a time axis: start, middle, end
    ticks = page.locator("#chart-a text.axis:not(.time):not(.unit)").evaluate_all(
        "nodes => nodes.map((n) => n.textContent)"
    )
    assert len(ticks) == len(set(ticks)) >= 2, ticks
    rows = page.locator("#request-names tbody tr")
    assert rows.count() >= 1
    first = rows.first.locator("td").all_inner_texts()
    assert int(first[1].replace(",", "")) > 0
    # One row per request name, and the busy-users chart drawn from the windows.
    _wait(
        lambda: (
            {"GET /home", "GET /missing"}
            <= set(page.locator("#request-names tbody tr td:first-child").all_inner_texts())
        )
    )
    page.wait_for_function(
        "() => Number(document.querySelector('#chart-c polyline')?.dataset.points) >= 3"
    )
    _shoot_both(page, "traffic-monitor")

    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Keep running").click()
    assert page.locator("#campaign-status .badge-running").count() == 1
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("dialog").get_by_role("button", name="Stop campaign").click()
    page.locator("#campaign-status .badge-stopped").wait_for()
    failed = int(_stat(page, "Failed").replace(",", ""))
    count = page.locator("#failure-reasons tbody tr").first.locator("td").nth(1).inner_text()
    assert int(count.replace(",", "")) == failed == target.counts["/missing"]

    page.get_by_role("link", name="Full report").click()
    page.get_by_role("heading", name="Report: monitored").wait_for()
    page.locator("#failure-reasons td", has_text="HTTP 404").wait_for()
    page.locator("#request-names").wait_for()
    assert page.title() == "Report: monitored – campaignd"
    _shoot_both(page, "traffic-report")


# 9, 10, 11: warnings, auto-pause with its reason, no silent Resume --------------------------
def test_message_monitor_warns_pauses_on_failures_and_says_why(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    with ui_server.client() as client:
        _, _, empty = _messages(client, target, "nobody", 0)
    _open(page, ui_server, f"#/messages/{empty}", "nobody")
    page.get_by_text("The audience has no contacts: starting sends nothing.").wait_for()
    page.get_by_role("button", name="Start").click()
    page.get_by_role("heading", name="Start nobody anyway?").wait_for()
    page.get_by_role("button", name="Not now").click()
    assert page.locator("#campaign-status .badge-draft").count() == 1

    target.status_for["/dead"] = 500
    with ui_server.client() as client:
        _, _, dead = _messages(
            client, target, "dead", 60, rate_per_minute=1200, max_consecutive_failures=5
        )
    _open(page, ui_server, f"#/messages/{dead}", "dead")
    assert "Posts to" in page.locator('dd[data-fact="Account"]').inner_text()
    assert "60 contacts" in page.locator('dd[data-fact="Audience"]').inner_text()
    assert page.locator('dd[data-fact="Message"]').inner_text() == "Hi {{ external_id }}"
    page.get_by_role("button", name="Start").click()
    page.locator("#campaign-status .badge-paused").wait_for(timeout=20_000)
    problem = page.locator("#campaign-problem")
    problem.get_by_text("Paused by itself after 5 failed deliveries in a row").wait_for()
    assert "HTTP 500" in problem.inner_text()
    assert int(_stat(page, "Failed")) < 60 and target.counts["/dead"] < 60
    page.get_by_role("button", name="Resume").wait_for()
    _shoot_both(page, "message-monitor-paused")

    with ui_server.client() as client:
        _, _, done = _messages(client, target, "done", 3)
        client.post(f"/api/campaigns/{done}/start")
        _wait(lambda: client.get(f"/api/campaigns/{done}").json()["status"] == "completed")
        client.patch(f"/api/campaigns/{done}", json={"limit": 1})
    _open(page, ui_server, f"#/messages/{done}", "done")
    page.get_by_text("The limit (1) is below what was already sent (3)").wait_for()
    page.get_by_text("Everyone this campaign can reach has the message.").wait_for()
    assert page.get_by_role("button", name="Resume").count() == 0
    _shoot_both(page, "message-monitor-completed")
    page.get_by_role("link", name="Full report").click()
    page.get_by_role("heading", name="Report: done").wait_for()
    assert page.title() == "Report: done – campaignd"
    _shoot_both(page, "message-report")


# 13: full editing of drafts, clone, archive, delete; refusals in words ----------------------
def test_a_draft_is_edited_in_full_cloned_archived_and_deleted(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    with ui_server.client() as client:
        _, _, draft = _messages(client, target, "draft", 4)
        mail = client.post(
            "/api/accounts",
            json={
                "name": "mailer",
                "channel": "smtp",
                "config": {"host": "127.0.0.1", "from": "a@example.test"},
            },
        ).json()["id"]
    _open(page, ui_server, f"#/messages/{draft}", "draft")
    page.get_by_role("button", name="Edit").click()
    page.get_by_role("heading", name="Edit draft").wait_for()
    page.get_by_label("Name", exact=True).fill("edited draft")
    page.get_by_label("Account", exact=True).select_option(label="mailer – SMTP (e-mail)")
    page.get_by_label("Subject").fill("Hello {{ external_id }}")
    page.get_by_label("Limit", exact=True).fill("3")
    page.get_by_text("Segment (who in the audience gets it)").click()
    page.get_by_role("button", name="Add a condition").click()
    page.get_by_label("Attribute", exact=True).fill("n")
    page.get_by_label("Test", exact=True).select_option("exists")
    page.get_by_text("Matches 4 of 4 contacts.").wait_for()
    page.get_by_text("A/B variants").click()
    page.get_by_role("button", name="Add a variant").click()
    page.locator("#variants-0-name").fill("A")
    page.get_by_role("button", name="Add a variant").click()
    page.locator("#variants-1-name").fill("B")
    page.locator("#variants-1-message").fill("B {{ external_id }}")
    page.get_by_text("Schedule", exact=True).click()
    page.get_by_label("Start by itself at (your local time; empty to start by hand)").fill(
        "2999-01-01T09:00"
    )
    _shoot_both(page, "message-editor")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="edited draft").wait_for()
    with ui_server.client() as client:
        saved = client.get(f"/api/campaigns/{draft}").json()
    assert saved["account_id"] == mail and saved["subject"] == "Hello {{ external_id }}"
    assert saved["limit"] == 3 and saved["segment"] == [{"attribute": "n", "exists": True}]
    assert [v["name"] for v in saved["variants"]] == ["A", "B"]
    assert saved["status"] == "scheduled" and saved["start_at"].startswith("2999-01-01")

    page.get_by_role("button", name="Clone").click()
    page.get_by_role("heading", name="Edit edited draft (copy)").wait_for()
    copy = int(re.search(r"#/messages/(\d+)/edit", page.url).group(1))  # type: ignore[union-attr]
    _open(page, ui_server, f"#/messages/{copy}", "edited draft (copy)")
    page.get_by_role("button", name="Archive").click()
    page.get_by_text("(archived)").wait_for()
    _open(page, ui_server, "#/?kind=message&archived=true", "Campaigns")
    page.get_by_role("link", name="edited draft (copy)").wait_for()
    _open(page, ui_server, "#/?kind=message", "Campaigns")
    page.get_by_role("link", name="edited draft").wait_for()
    assert page.get_by_role("link", name="edited draft (copy)").count() == 0
    _open(page, ui_server, f"#/messages/{copy}", "edited draft (copy)")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete campaign").click()
    page.get_by_role("heading", name="Campaigns").wait_for()
    with ui_server.client() as client:
        assert client.get(f"/api/campaigns/{copy}").status_code == 404

    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    item = page.locator("#account-list li", has_text="mailer")
    item.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.locator("#setup-error").get_by_text(
        "Account 'mailer' is used by campaign 'edited draft' (scheduled); stop and delete that "
        "campaign first."
    ).wait_for()


def test_profiles_hold_several_weighted_requests_with_headers_and_bodies(
    page, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    page.get_by_label("Profile name").fill("shop")
    page.locator("#requests-0-path").fill("/items")
    page.locator("#requests-0-weight").fill("3")
    page.get_by_role("button", name="Add a request").click()
    page.locator("#requests-1-method").select_option("POST")
    page.locator("#requests-1-path").fill("/cart")
    page.locator("#requests-1-headers").fill("X-Shop: yes")
    page.locator("#requests-1-body").fill('{"sku": 7}')
    page.get_by_role("button", name="Create profile").click()
    page.get_by_text("GET /items ×3, POST /cart").wait_for()
    _shoot_both(page, "setup")
    with ui_server.client() as client:
        profile = next(p for p in client.get("/api/traffic/profiles").json() if p["name"] == "shop")
        campaign = client.post(
            "/api/traffic/campaigns",
            json={
                "name": "shopping",
                "target_url": target.url,
                "user_profile_ids": [profile["id"]],
                "requests_per_minute": 2400,
                "duration_minutes": 0.05,
                "total_users": 5,
            },
        ).json()["id"]
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
        client.post("/api/traffic/generate", json={"campaign_id": campaign})
    _wait(lambda: target.counts["/cart"] >= 3 and target.counts["/items"] >= 3)
    posted = [(body, headers) for path, body, headers in target.bodies if path == "/cart"]
    assert json.loads(posted[0][0]) == {"sku": 7} and posted[0][1]["X-Shop"] == "yes"


# 8: a failed import creates nothing ---------------------------------------------------------
def test_a_failed_csv_import_leaves_no_empty_audience(
    page, ui_server: ServiceProcess, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    no_address = tmp_path / "no-address.csv"
    no_address.write_text("external_id,name\n1,Ann\n2,Bob\n")
    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    for name, upload in (("no address", no_address), ("binary", binary)):
        page.get_by_label("Audience name").fill(name)
        page.get_by_label("Contacts CSV (external_id,address,…)").set_input_files(str(upload))
        page.get_by_role("button", name="Create audience").click()
        assert "the audience was not created" in _field_error(page, "aud-file").lower()
    with ui_server.client() as client:
        names = [a["name"] for a in client.get("/api/audiences").json()]
        assert "no address" not in names and "binary" not in names
        client.post("/api/audiences", json={"name": "aaa empty"})
        _messages(client, CountingTarget(), "filled", 1)
    # An empty audience is never the editor's default choice.
    _open(page, ui_server, "#/messages/new", "New message campaign")
    chosen = page.locator("#m-audience option:checked")
    assert int(chosen.get_attribute("data-count") or 0) > 0, chosen.inner_text()
    page.get_by_label("Audience", exact=True).select_option(label="aaa empty (no contacts)")
    page.get_by_text("This audience has no contacts").wait_for()


# 12: a token: sign in, downloads that carry it, sign out ------------------------------------
def test_with_a_token_sign_in_download_and_sign_out(
    browser, service_factory, tmp_path: Path, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    server = service_factory(f"sqlite:///{tmp_path / 'token.db'}", CAMPAIGND_API_TOKEN="t0ken")
    with server.client() as client:
        campaign = _traffic(client, target, "guarded", duration_minutes=0.05)
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
        client.post("/api/traffic/generate", json={"campaign_id": campaign})
        _wait(
            lambda: client.get(f"/api/traffic/campaigns/{campaign}").json()["status"] == "completed"
        )
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert "Loading" not in page.locator("main").inner_text()
    assert page.title() == "Sign in – campaignd"
    _shoot_both(page, "sign-in")
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That token was not accepted").wait_for()
    page.get_by_label("API token").fill("t0ken")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="guarded").click()
    page.get_by_role("heading", name="guarded").wait_for()
    for button, suffix in (("JSON", ".json"), ("CSV", ".csv")):
        with page.expect_download() as info:
            page.get_by_role("button", name=button, exact=True).click()
        name = info.value.suggested_filename
        assert name == f"traffic-campaign-{campaign}{suffix}"
        saved = tmp_path / name
        info.value.save_as(saved)
        if suffix == ".json":
            assert json.loads(saved.read_text())["stats"]["requests_total"] > 0
        else:
            assert saved.read_text().startswith("at,requests,failed")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("localStorage.getItem('campaignd-token')") is None
    context.close()


# the HTML report: one file, charts inline, nothing fetched ----------------------------------
def test_the_html_report_is_one_self_contained_file(
    page, ui_server: ServiceProcess, target: CountingTarget, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    target.status_for["/missing"] = 404
    with ui_server.client() as client:
        campaign = _traffic(client, target, "exported", duration_minutes=0.05)
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
        client.post("/api/traffic/generate", json={"campaign_id": campaign})
        _wait(
            lambda: client.get(f"/api/traffic/campaigns/{campaign}").json()["status"] == "completed"
        )
    _open(page, ui_server, f"#/traffic/{campaign}/report", "Report: exported")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download HTML report").click()
    assert info.value.suggested_filename == f"traffic-campaign-{campaign}-report.html"
    saved = tmp_path / "report.html"
    info.value.save_as(saved)
    html = saved.read_text()
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    fetched: list[str] = []
    offline = page.context.browser.new_context()
    viewer = offline.new_page()
    viewer.route("**/*", lambda route: (fetched.append(route.request.url), route.abort()))
    viewer.route(saved.as_uri(), lambda route: route.fulfill(path=str(saved)))
    viewer.goto(saved.as_uri())
    viewer.get_by_role("heading", name="Report: exported").first.wait_for()
    assert viewer.locator("svg.chart").count() == 3
    assert viewer.locator("#failure-reasons td", has_text="HTTP 404").count() == 1
    data = json.loads(viewer.locator("#report-data").inner_text())
    assert data["stats"]["requests_total"] == target.total
    assert fetched == [], fetched
    offline.close()


# 14: navigation, titles, filters in the URL, phones -----------------------------------------
def test_current_page_titles_and_filters_live_in_the_url(page, ui_server: ServiceProcess) -> None:  # type: ignore[no-untyped-def]
    _open(page, ui_server, "#/setup", "Profiles, accounts, audiences")
    current = page.locator('#main-nav a[aria-current="page"]')
    assert current.inner_text() == "Profiles, accounts, audiences"
    assert page.title() == "Profiles, accounts, audiences – campaignd"
    _open(page, ui_server, "#/", "Campaigns")
    assert current.inner_text() == "Campaigns" and page.title() == "Campaigns – campaignd"
    page.get_by_label("Kind").select_option("traffic")
    page.get_by_label("Status").select_option("stopped")
    _wait(lambda: "kind=traffic" in page.url and "status=stopped" in page.url)
    page.reload()
    page.get_by_role("heading", name="Campaigns").wait_for()
    assert page.get_by_label("Kind").input_value() == "traffic"
    assert page.get_by_label("Status").input_value() == "stopped"
    _shoot_both(page, "campaign-list")
    _open(page, ui_server, "#/traffic/new", "New traffic campaign")
    assert current.inner_text() == "New traffic campaign"
    _shoot_both(page, "traffic-editor")


def test_phone_pages_fit_stack_tables_and_keep_chart_labels_readable(
    browser, ui_server: ServiceProcess, target: CountingTarget
) -> None:  # type: ignore[no-untyped-def]
    with ui_server.client() as client:
        campaign = _traffic(client, target, "phone", duration_minutes=0.05)
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
        client.post("/api/traffic/generate", json={"campaign_id": campaign})
        _wait(
            lambda: client.get(f"/api/traffic/campaigns/{campaign}").json()["status"] == "completed"
        )
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    routes = ("#/", "#/setup", "#/messages/new", "#/traffic/new", f"#/traffic/{campaign}",
              f"#/traffic/{campaign}/report")  # fmt: skip
    for route in routes:
        page.goto(f"{ui_server.url}/{route}")
        page.wait_for_timeout(900)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, (route, width)
    # The campaign list stacks: no header row to scroll past, each cell labelled.
    page.goto(f"{ui_server.url}/#/")
    page.get_by_role("link", name="phone").wait_for()
    assert page.locator("table.stack thead").bounding_box()["height"] <= 1  # type: ignore[index]
    label = page.evaluate(
        "getComputedStyle(document.querySelector('table.stack td[data-label]'), '::before').content"
    )
    assert label == '"Name"'
    page.goto(f"{ui_server.url}/#/traffic/{campaign}/report")
    page.get_by_role("heading", name="Report: phone").wait_for()
    page.wait_for_timeout(300)
    heights = page.evaluate(
        "[...document.querySelectorAll('#chart-a text.axis')].map(t => t.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 11, heights  # ~12 px text, not 5 px
    page.get_by_text("Scroll sideways for more columns →").first.wait_for()
    context.close()
