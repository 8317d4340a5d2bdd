"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from support.net import free_port
from support.tls import server_context


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and can refuse on demand."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.sessions: set[int] = set()
        self.reply: list[str] = []
        self.encrypted: list[bool] = []  # per message: did it arrive over TLS
        # domain -> (reply, seconds): answer RCPTs to that domain with `reply` for `seconds`
        # from the first RCPT to it (a provider throttling one domain).
        self.refuse_domain: dict[str, tuple[str, float]] = {}
        self._refusing_until: dict[str, float] = {}
        self.rcpts: list[tuple[float, str, str]] = []  # (monotonic time, address, reply)
        self.received_at: list[float] = []  # per message, monotonic

    def _answer(self, address: str) -> str | None:
        if self.reply:
            return self.reply.pop(0)
        domain = address.rpartition("@")[2].lower()
        if domain in self.refuse_domain:
            reply, seconds = self.refuse_domain[domain]
            until = self._refusing_until.setdefault(domain, time.monotonic() + seconds)
            if time.monotonic() < until:
                return reply
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        refusal = self._answer(address)
        self.rcpts.append((time.monotonic(), address, refusal or "250 OK"))
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.sessions.add(id(session))
        self.messages.append(message_from_bytes(envelope.content))
        self.received_at.append(time.monotonic())
        # session.ssl is set by STARTTLS only; a TLS-from-the-start transport says so itself.
        tls_transport = server.transport.get_extra_info("ssl_object") is not None
        self.encrypted.append(session.ssl is not None or tls_transport)
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = auth_data.login == b"mailer" and auth_data.password == b"pw-123"
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Any:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield mailbox, port
    controller.stop()


@dataclass
class TlsServers:
    """Mailbox and port per mode ("starttls", "implicit"), and the PEM certificate they use."""

    servers: dict[str, tuple[Mailbox, int]]
    cert_pem: str


@pytest.fixture
def tls_smtp_servers(tmp_path: Path) -> Iterator[TlsServers]:
    """Two TLS servers with a self-signed certificate: one that requires STARTTLS before
    anything (and before AUTH), one that speaks TLS from the first byte (port 465 style)."""
    context = server_context(tmp_path)
    servers: dict[str, tuple[Mailbox, int]] = {}
    controllers = []
    for mode in ("starttls", "implicit"):
        mailbox, port = Mailbox(), free_port()
        options: dict[str, Any] = (
            {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
            if mode == "starttls"
            # aiosmtpd only counts STARTTLS as TLS for AUTH; here every byte is encrypted anyway.
            else {"ssl_context": context, "auth_require_tls": False}
        )
        controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=port,
            authenticator=_authenticate,
            **options,
        )
        controller.start()
        controllers.append(controller)
        servers[mode] = (mailbox, port)
    yield TlsServers(servers, (tmp_path / "cert.pem").read_text())
    for controller in controllers:
        controller.stop()
