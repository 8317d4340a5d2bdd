"""Channel accounts cannot point the service anywhere: SMTP and Telegram meet the target
allowlist, and the log channel writes only inside its one directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaignd.settings import Settings
from support.messaging_flow import make_audience, make_campaign, wait_for
from support.service import ServiceProcess


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("channel-logs")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("accounts")
    proc = ServiceProcess(
        f"sqlite:///{tmp / 'campaignd.db'}",
        tmp / "service.log",
        CAMPAIGND_LOG_CHANNEL_DIR=str(logs_dir),
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _account(client: httpx.Client, channel: str, config: dict[str, Any]) -> httpx.Response:
    return client.post("/api/accounts", json={"name": "acct", "channel": channel, "config": config})


def _names(client: httpx.Client) -> list[str]:
    return [
        a["config"].get("host") or a["config"].get("path")
        for a in client.get("/api/accounts").json()
    ]


def _refused(response: httpx.Response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    return str(response.json()["error"])


# SMTP and Telegram: the target allowlist -------------------------------------------------
SMTP = {"port": 25, "from": "news@example.test"}


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("10.0.0.1", 25),
        ("169.254.169.254", 80),
        ("192.168.1.10", 587),
        ("0.0.0.0", 25),
        ("::ffff:10.0.0.1", 25),
        ("[fd00::1]", 25),
    ],
)
def test_smtp_host_outside_the_allowlist_is_refused_at_creation(
    client: httpx.Client, host: str, port: int
) -> None:
    error = _refused(
        _account(client, "smtp", {**SMTP, "host": host, "port": port}), 400, "config.host"
    )
    assert "not in the allowed targets" in error and "CAMPAIGND_ALLOWED_TARGETS" in error
    assert host not in _names(client)


@pytest.mark.parametrize(
    "base", ["http://169.254.169.254", "http://10.0.0.1:8080/", "https://192.168.0.1"]
)
def test_telegram_api_base_outside_the_allowlist_is_refused_at_creation(
    client: httpx.Client, base: str
) -> None:
    response = _account(client, "telegram", {"bot_token": "123:abc", "api_base_url": base})
    error = _refused(response, 400, "config.api_base_url")
    assert "not in the allowed targets" in error


def test_patching_an_account_to_a_forbidden_host_is_refused(client: httpx.Client) -> None:
    mail = _account(client, "smtp", {**SMTP, "host": "127.0.0.1"}).json()["id"]
    patched = client.patch(f"/api/accounts/{mail}", json={"config": {"host": "169.254.169.254"}})
    _refused(patched, 400, "config.host")
    assert client.get(f"/api/accounts/{mail}").json()["config"]["host"] == "127.0.0.1"

    bot = _account(client, "telegram", {"bot_token": "1:x", "api_base_url": "http://127.0.0.1:9"})
    bot_id = bot.json()["id"]
    patched = client.patch(
        f"/api/accounts/{bot_id}", json={"config": {"api_base_url": "http://10.0.0.1"}}
    )
    _refused(patched, 400, "config.api_base_url")
    view = client.get(f"/api/accounts/{bot_id}").json()
    assert view["config"]["api_base_url"] == "http://127.0.0.1:9"


def test_smtp_host_refused_at_send_when_the_allowlist_narrowed(
    service_factory: Any, tmp_path: Path, smtp_server: Any
) -> None:
    """An account stored while its host was allowed sends nothing once it is not."""
    mailbox, port = smtp_server
    database = f"sqlite:///{tmp_path / 'narrow.db'}"
    first = service_factory(database, CAMPAIGND_ALLOWED_TARGETS="127.0.0.1/32")
    with first.client() as client:
        account = _account(client, "smtp", {**SMTP, "host": "127.0.0.1", "port": port})
        assert account.status_code == 201, account.text
        campaign = make_campaign(client, account.json()["id"], make_audience(client, 3))
    first.stop()

    narrowed = service_factory(database, CAMPAIGND_ALLOWED_TARGETS="127.0.0.2/32")
    with narrowed.client() as client:
        assert client.post(f"/api/campaigns/{campaign}/start").status_code == 200
        done = wait_for(client, campaign, "completed")
        report = client.get(f"/api/campaigns/{campaign}/report").json()
    assert done["sent_count"] == 0 and done["failed_count"] == 3
    [reason] = report["failures_by_reason"]
    assert "127.0.0.1:" in reason["reason"] and "not in the allowed targets" in reason["reason"]
    assert mailbox.messages == []


# the log channel: one directory ------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/etc/cron.d/campaignd",
        "../../root/.ssh/authorized_keys",
        "../outside.jsonl",
        "sub/../../outside.jsonl",
        "/tmp/campaignd-outside.jsonl",
        ".",
        "",
        "bad\x00name",
    ],
)
def test_log_path_outside_the_directory_is_refused(
    client: httpx.Client, logs_dir: Path, path: str
) -> None:
    response = _account(client, "log", {"path": path})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "config.path"
    assert not (logs_dir.parent / "root").exists()
    assert not (logs_dir.parent / "outside.jsonl").exists()


def test_log_path_through_a_symlink_out_is_refused(
    client: httpx.Client, logs_dir: Path, tmp_path: Path
) -> None:
    (logs_dir / "escape").symlink_to(tmp_path, target_is_directory=True)
    response = _account(client, "log", {"path": "escape/stolen.jsonl"})
    _refused(response, 422, "config.path")
    made = _account(client, "log", {"path": "fine.jsonl"}).json()["id"]
    patched = client.patch(f"/api/accounts/{made}", json={"config": {"path": "escape/x.jsonl"}})
    _refused(patched, 422, "config.path")
    assert list(tmp_path.iterdir()) == []


def test_log_channel_writes_inside_its_directory(client: httpx.Client, logs_dir: Path) -> None:
    inside = str(logs_dir / "absolute-inside.jsonl")
    assert _account(client, "log", {"path": inside}).status_code == 201
    account = _account(client, "log", {"path": "runs/dry.jsonl"})
    assert account.status_code == 201, account.text
    campaign = make_campaign(client, account.json()["id"], make_audience(client, 4))
    client.post(f"/api/campaigns/{campaign}/start")
    assert wait_for(client, campaign, "completed")["sent_count"] == 4
    lines = (logs_dir / "runs" / "dry.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["external_id"] for line in lines) == [f"u{i}" for i in range(4)]


def test_log_path_turned_into_a_symlink_out_fails_at_send(
    client: httpx.Client, logs_dir: Path, tmp_path: Path
) -> None:
    (logs_dir / "later").mkdir()
    account = _account(client, "log", {"path": "later/out.jsonl"})
    assert account.status_code == 201, account.text
    (logs_dir / "later").rmdir()
    (logs_dir / "later").symlink_to(tmp_path, target_is_directory=True)  # swapped after the check
    campaign = make_campaign(client, account.json()["id"], make_audience(client, 2))
    client.post(f"/api/campaigns/{campaign}/start")
    done = wait_for(client, campaign, "completed")
    assert done["sent_count"] == 0 and done["failed_count"] == 2
    [reason] = client.get(f"/api/campaigns/{campaign}/report").json()["failures_by_reason"]
    assert "log channel directory" in reason["reason"]
    assert list(tmp_path.iterdir()) == []


def test_log_directory_defaults_beside_the_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGND_LOG_CHANNEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    beside = Settings(database_url=f"sqlite:///{tmp_path / 'db' / 'c.db'}").channel_log_dir()
    assert beside == tmp_path / "db" / "channel-logs"
    relative = Settings(database_url="sqlite:///./c.db").channel_log_dir()
    assert relative == tmp_path / "channel-logs"
    assert Settings(database_url="postgresql://h/db").channel_log_dir() == tmp_path / "channel-logs"
    chosen = Settings(log_channel_dir="mine").channel_log_dir()
    assert chosen == tmp_path / "mine"
