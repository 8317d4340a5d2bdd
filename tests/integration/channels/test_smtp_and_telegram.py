"""SMTP against a real aiosmtpd server; Telegram against a local server speaking the Bot API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from campaignd.domain.errors import InvalidInput
from campaignd.messaging.channels import build_channel, redact, validate_account_config
from campaignd.messaging.channels.base import OutgoingMessage
from support.net import free_port
from support.smtp import TlsServers


def _message(i: int, **extra: Any) -> OutgoingMessage:
    return OutgoingMessage(
        campaign_id=1,
        contact_id=i,
        external_id=f"u{i}",
        address=f"u{i}@example.test",
        text=f"Hello {i}",
        subject="News",
        **extra,
    )


async def test_smtp_delivers_over_one_reused_connection(smtp_server: Any) -> None:
    mailbox, port = smtp_server
    channel = build_channel(
        "smtp",
        validate_account_config(
            "smtp",
            {
                "host": "127.0.0.1",
                "port": port,
                "from": "news@example.test",
                "username": "mailer",
                "password": "pw-123",
            },
        ),
    )
    headers = {"List-Unsubscribe": "<http://127.0.0.1/unsubscribe/x>"}
    assert redact("smtp", {"password": "pw-123"}) == {"password": "***"}
    results = [await channel.send(_message(i, headers=headers)) for i in range(20)]
    await channel.close()
    assert all(r.ok for r in results)
    assert len(mailbox.messages) == 20
    assert not any(mailbox.encrypted)  # plain SMTP unless the account asks for TLS
    assert channel.connections_opened == 1  # type: ignore[attr-defined]
    first = mailbox.messages[0]
    assert first["From"] == "news@example.test" and first["To"] == "u0@example.test"
    assert first["Subject"] == "News" and first["List-Unsubscribe"] == headers["List-Unsubscribe"]
    assert first.get_payload().strip() == "Hello 0"


def _smtp(port: int, **options: Any) -> Any:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "from": "news@example.test",
        "username": "mailer",
        "password": "pw-123",
        "max_attempts": 1,
        **options,
    }
    return build_channel("smtp", validate_account_config("smtp", config))


async def test_smtp_starttls_and_implicit_tls(tls_smtp_servers: TlsServers) -> None:
    """Both TLS modes against servers that insist on TLS (and on TLS before AUTH), trusting the
    server's certificate through the account's own `ca_cert`."""
    for mode, options in (("starttls", {"starttls": True}), ("implicit", {"use_tls": True})):
        mailbox, port = tls_smtp_servers.servers[mode]
        channel = _smtp(port, ca_cert=tls_smtp_servers.cert_pem, **options)
        results = [await channel.send(_message(i)) for i in range(3)]
        await channel.close()
        assert all(r.ok for r in results), (mode, results)
        assert mailbox.encrypted == [True, True, True], mode
        assert channel.connections_opened == 1
        assert mailbox.messages[0]["To"] == "u0@example.test"


async def test_smtp_tls_checks_certificates_and_plain_text_is_refused(
    tls_smtp_servers: TlsServers,
) -> None:
    starttls_box, starttls_port = tls_smtp_servers.servers["starttls"]
    implicit_box, implicit_port = tls_smtp_servers.servers["implicit"]
    # A self-signed certificate is not trusted by default...
    for port, options in ((starttls_port, {"starttls": True}), (implicit_port, {"use_tls": True})):
        channel = _smtp(port, **options)
        result = await channel.send(_message(1))
        await channel.close()
        assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in (result.error or ""), result
    # ...unless the account says not to check.
    unchecked = _smtp(implicit_port, use_tls=True, validate_certs=False)
    assert (await unchecked.send(_message(2))).ok
    await unchecked.close()
    # Without STARTTLS a server that requires it refuses, and nothing is delivered.
    plain = _smtp(starttls_port)
    result = await plain.send(_message(3))
    await plain.close()
    assert not result.ok and result.error, result
    assert starttls_box.messages == [] and [m["To"] for m in implicit_box.messages] == [
        "u2@example.test"
    ]


def test_a_bad_ca_cert_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_account_config(
            "smtp", {"host": "127.0.0.1", "port": 25, "from": "a@b.test", "ca_cert": "nope"}
        )
    assert info.value.context["field"] == "config.ca_cert"
    assert "PEM" in str(info.value)


async def test_smtp_retries_4xx_hands_try_later_to_the_sender_and_5xx_bounces(
    smtp_server: Any,
) -> None:
    mailbox, port = smtp_server
    config = validate_account_config(
        "smtp",
        {
            "host": "127.0.0.1",
            "port": port,
            "from": "n@example.test",
            "username": "mailer",
            "password": "pw-123",
            "retry_base_seconds": 0.01,
        },
    )
    channel = build_channel("smtp", config)
    mailbox.reply = ["455 Cannot accommodate now"]
    retried = await channel.send(_message(1))
    assert retried.ok and retried.attempts == 2
    mailbox.reply = ["451 Try again later"]  # the domain throttles: the sender backs off
    later = await channel.send(_message(3))
    assert not later.ok and later.domain_busy and later.bounce is None
    mailbox.reply = ["550 No such user"]
    refused = await channel.send(_message(2))
    assert not refused.ok and refused.attempts == 1 and "550" in (refused.error or "")
    assert refused.bounce == "hard" and not refused.domain_busy
    await channel.close()


class BotApi:
    """A local server that speaks the Bot API's sendMessage and enforces its rate limits."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.delivered: list[dict[str, Any]] = []
        self.too_many = 0
        self.force: list[tuple[int, dict[str, Any]]] = []
        self._per_chat: dict[str, float] = defaultdict(float)
        self._bot_times: list[float] = []

    async def send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await request.json()
        if self.force:
            status, payload = self.force.pop(0)
            return web.json_response(payload, status=status)
        now = time.monotonic()
        chat = str(body["chat_id"])
        self._bot_times = [t for t in self._bot_times if now - t < 1.0]
        # A little slack for timer jitter; the limits themselves are the Bot API's.
        if now - self._per_chat[chat] < 0.95 or len(self._bot_times) >= 31:
            self.too_many += 1
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
                status=429,
            )
        self._per_chat[chat] = now
        self._bot_times.append(now)
        self.delivered.append(body)
        return web.json_response({"ok": True, "result": {"message_id": len(self.delivered)}})


@pytest.fixture
async def bot_api() -> AsyncIterator[tuple[BotApi, str]]:
    api = BotApi("123:secret-token")
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", api.send_message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield api, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_telegram_keeps_under_the_bot_and_chat_limits(bot_api: tuple[BotApi, str]) -> None:
    api, base = bot_api
    channel = build_channel(
        "telegram",
        validate_account_config("telegram", {"bot_token": api.token, "api_base_url": base}),
    )
    messages = [_message(i) for i in range(60)] + [
        OutgoingMessage(
            campaign_id=1, contact_id=100 + i, external_id=f"x{i}", address="chat-1", text="t"
        )
        for i in range(3)
    ]
    started = time.monotonic()
    results = await asyncio.gather(*(channel.send(m) for m in messages))
    elapsed = time.monotonic() - started
    await channel.close()
    assert all(r.ok for r in results)
    assert api.too_many == 0, "the channel itself keeps under the limits"
    assert len(api.delivered) == 63
    assert Counter(d["chat_id"] for d in api.delivered)["chat-1"] == 3
    assert elapsed >= 2.0  # 63 messages at 30/s, and 3 to one chat 1 s apart


async def test_telegram_honours_retry_after_and_fails_on_403(bot_api: tuple[BotApi, str]) -> None:
    api, base = bot_api
    channel = build_channel(
        "telegram",
        validate_account_config(
            "telegram", {"bot_token": api.token, "api_base_url": base, "retry_base_seconds": 0.01}
        ),
    )
    api.force = [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests",
                "parameters": {"retry_after": 1},
            },
        )
    ]
    started = time.monotonic()
    result = await channel.send(_message(1))
    assert result.ok and result.attempts == 2 and result.throttled_seconds == 1
    assert time.monotonic() - started >= 1.0
    api.force = [
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
        )
    ]
    blocked = await channel.send(_message(2))
    assert not blocked.ok and blocked.attempts == 1 and "blocked" in (blocked.error or "")
    assert api.token not in (blocked.error or "")
    await channel.close()


def test_account_configs_are_validated_field_by_field() -> None:
    for kind, config, field in [
        ("smtp", {"host": "h", "port": 0, "from": "a@b"}, "config.port"),
        ("smtp", {"host": "h"}, "config.from"),
        ("smtp", {"host": "h", "port": 70000, "from": "a@b"}, "config.port"),
        ("telegram", {}, "config.bot_token"),
        ("telegram", {"bot_token": "t", "api_base_url": "ftp://x"}, "config.api_base_url"),
        ("webhook", {"url": "http://127.0.0.1", "nope": 1}, "config.nope"),
        ("webhook", {"url": "http://127.0.0.1", "max_attempts": "five"}, "config.max_attempts"),
    ]:
        with pytest.raises(InvalidInput) as info:
            validate_account_config(kind, config)
        assert info.value.context["field"] == field
    # Without a port an SMTP account gets the usual one for its security.
    assert validate_account_config("smtp", {"host": "h", "from": "a@b"})["port"] == 25
    assert (
        validate_account_config("smtp", {"host": "h", "from": "a@b", "starttls": True})["port"]
        == 587
    )
    assert (
        validate_account_config("smtp", {"host": "h", "from": "a@b", "use_tls": True})["port"]
        == 465
    )
