"""Message operations in a real browser: test send, Recipients tab, retry, the link report."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from campaignd.domain.links import find_links
from e2e.conftest import shoot
from support.messaging_flow import delivered, make_account, make_audience, make_campaign, wait_for
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.e2e
SHOP = "https://shop.example/spring?ref=mail"


def _rows(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator("#r-rows tr[data-recipient]").count()


def _wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_test_send_recipients_retry_and_link_report(
    page, ui_server: ServiceProcess, target: CountingTarget, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with ui_server.client() as client:
        account = make_account(client, target, max_attempts=1)
        audience = make_audience(client, 12)
        campaign = make_campaign(
            client,
            account,
            audience,
            message="Hi {{ name }}: " + SHOP,
            limit=6,
            track_links=True,
            name="spring sale",
        )
    page.goto(f"{ui_server.url}/#/messages/{campaign}")
    page.get_by_role("heading", name="spring sale").wait_for()

    page.get_by_role("button", name="Edit").click()  # a draft opens in the editor
    page.get_by_role("heading", name="Edit spring sale").wait_for()
    page.get_by_label("Test recipients").fill("qa@ops.test, u3")
    page.get_by_role("button", name="Send test").click()
    page.locator("#test-result", has_text="Test sent to 2 recipient(s).").wait_for()
    tests = [d for d in delivered(target) if d.get("test")]
    assert sorted(d["recipient"]["address"] for d in tests) == [
        "qa@ops.test",
        f"u3@a{audience}.test",
    ]
    shoot(page, "message-test-send")
    page.get_by_role("link", name="← Back to the campaign").click()
    page.get_by_role("heading", name="spring sale").wait_for()

    page.get_by_role("button", name="Start").click()
    page.locator("#campaign-status .badge-completed").wait_for(timeout=20_000)
    target.status_for["/hook"] = 500
    with ui_server.client() as client:
        client.patch(f"/api/campaigns/{campaign}", json={"limit": 12})
        client.post(f"/api/campaigns/{campaign}/resume")
        wait_for(client, campaign, "completed")

    page.get_by_role("tab", name="Recipients").click()
    _wait(lambda: _rows(page) == 12)
    page.get_by_label("Status").select_option("failed")
    _wait(lambda: _rows(page) == 6)
    assert page.locator("#r-rows .badge-failed").count() == 6
    page.get_by_label("Search recipients").fill("u1")
    _wait(
        lambda: (
            page.locator("#r-rows tr[data-recipient]").all_inner_texts() != []
            and all("u1" in t for t in page.locator("#r-rows tr[data-recipient]").all_inner_texts())
        )
    )
    page.get_by_label("Search recipients").fill("")
    _wait(lambda: _rows(page) == 6)
    shoot(page, "message-recipients-failed")

    target.status_for["/hook"] = 200
    page.get_by_role("button", name="Retry failed").click()
    page.locator("#r-note", has_text="6 failed recipient(s) get one more try").wait_for()
    page.locator("#campaign-status .badge-completed").wait_for(timeout=20_000)
    page.get_by_label("Status").select_option("sent")
    _wait(
        lambda: (page.get_by_role("button", name="Refresh").click() or True) and _rows(page) == 12
    )
    real = [d for d in delivered(target) if not d.get("test")]
    ok_keys = {d["key"] for d in real}
    assert len(ok_keys) == 12 and len(real) == 6 + 6 + 6  # 6 sent, 6 refused, 6 retried

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    saved = tmp_path / "deliveries.csv"
    download_info.value.save_as(saved)
    assert len(saved.read_text().strip().splitlines()) == 13

    link = next(u for u in find_links(real[0]["message"]) if "/l/" in u)
    for _ in range(2):
        assert httpx.get(link, follow_redirects=False).headers["location"] == SHOP
    page.get_by_role("link", name="Full report").click()
    page.get_by_role("heading", name="Report: spring sale").wait_for()
    row = page.get_by_role("row").filter(has_text=SHOP)
    cells = row.get_by_role("cell").all_inner_texts()
    assert cells == [SHOP, "2", "1"]
    shoot(page, "message-link-report")
