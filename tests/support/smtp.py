"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

from __future__ import annotations

from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from support.net import free_port


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and can refuse on demand."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.sessions: set[int] = set()
        self.reply: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.reply:
            return self.reply.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.sessions.add(id(session))
        self.messages.append(message_from_bytes(envelope.content))
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
