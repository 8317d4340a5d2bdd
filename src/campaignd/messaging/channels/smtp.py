"""SMTP channel: one reused connection, STARTTLS or TLS, transient failures retried."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from campaignd.domain.bounces import HARD
from campaignd.domain.domains import THROTTLE_CODES
from campaignd.messaging.channels.base import (
    ChannelSpec,
    CheckedTarget,
    HostGuard,
    OutgoingMessage,
    SendResult,
    header_refusal,
)
from campaignd.messaging.channels.retry import backoff_seconds

SPEC = ChannelSpec(
    kind="smtp",
    required=frozenset({"host", "port", "from"}),
    optional=frozenset(
        {
            "username",
            "password",
            "starttls",
            "use_tls",
            "validate_certs",
            "ca_cert",
            "timeout_seconds",
            "max_attempts",
            "retry_base_seconds",
        }
    ),
    secret=frozenset({"password"}),
    defaults={
        "starttls": False,
        "use_tls": False,
        "validate_certs": True,
        "timeout_seconds": 30.0,
        "max_attempts": 3,
        "retry_base_seconds": 0.5,
    },
)


def check_ca_cert(pem: str) -> None:
    """Raise ValueError unless `pem` holds at least one PEM certificate a TLS context accepts."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("no PEM certificate found")
    try:
        ssl.create_default_context(cadata=pem)
    except ssl.SSLError as exc:
        raise ValueError(exc.reason or str(exc)) from None


class SmtpChannel:
    """Keeps one connection open across messages; reconnects when the server drops it."""

    def __init__(self, config: dict[str, Any], host_guard: HostGuard | None = None) -> None:
        self.config = {**SPEC.defaults, **config}
        self._retry_base = float(self.config["retry_base_seconds"])
        self._checked_host = CheckedTarget.host(
            str(self.config["host"]), int(self.config["port"]), host_guard
        )
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.config.get("ca_cert") or None)
        if not self.config["validate_certs"]:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(
            hostname=self.config["host"],
            port=int(self.config["port"]),
            use_tls=bool(self.config["use_tls"]),
            start_tls=bool(self.config["starttls"]),
            tls_context=self._tls_context(),
            timeout=float(self.config["timeout_seconds"]),
        )
        await client.connect()
        if self.config.get("username"):
            try:
                await client.login(self.config["username"], self.config.get("password") or "")
            except BaseException:
                client.close()  # a refused login must not leave its connection open
                raise
        self._client = client
        self.connections_opened += 1
        return client

    def _compose(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.config["from"]
        email["To"] = message.address
        email["Subject"] = message.subject or "(no subject)"
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(idstring=message.idempotency_key.replace(":", "."))
        for name, value in message.headers.items():
            email[name] = value
        if message.test:
            email["X-Campaignd-Test"] = "true"
        email.set_content(message.text)
        return email

    async def send(self, message: OutgoingMessage) -> SendResult:
        host_refused = await self._checked_host.refusal()
        if host_refused is not None:
            return SendResult(ok=False, attempts=0, error=host_refused)
        unfit = header_refusal(
            {
                "subject": message.subject,
                "address": message.address,
                "external_id": message.external_id,  # in the Message-ID
                **message.headers,
            }
        )
        if unfit is not None:
            return SendResult(ok=False, attempts=0, error=unfit)
        try:
            email = self._compose(message)
        except (ValueError, TypeError) as exc:
            return SendResult(ok=False, attempts=0, error=f"cannot compose the email: {exc}"[:300])
        attempts = int(self.config["max_attempts"])
        error = "not sent"
        for attempt in range(1, attempts + 1):
            try:
                async with self._lock:
                    client = await self._connect()
                    await client.send_message(email)
                return SendResult(ok=True, attempts=attempt)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refusal = exc.recipients[0]
                error = f"SMTP {refusal.code}: {refusal.message}"[:300]
                if 500 <= refusal.code < 600:  # the recipient is refused for good
                    return SendResult(ok=False, attempts=attempt, error=error, bounce=HARD)
                if refusal.code in THROTTLE_CODES:
                    return await self._domain_busy(refusal.code, attempt, error)
            except aiosmtplib.SMTPResponseException as exc:
                error = f"SMTP {exc.code}: {exc.message}"[:300]
                if 500 <= exc.code < 600:
                    return SendResult(ok=False, attempts=attempt, error=error)
                if exc.code in THROTTLE_CODES:
                    return await self._domain_busy(exc.code, attempt, error)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                await self._drop()
            if attempt < attempts:
                await asyncio.sleep(backoff_seconds(attempt, self._retry_base))
        return SendResult(ok=False, attempts=attempts, error=error)

    async def _domain_busy(self, code: int, attempt: int, error: str) -> SendResult:
        """'Try later': the sender backs off this recipient's domain instead of retrying now."""
        if code == 421:  # the server is closing the connection
            await self._drop()
        return SendResult(ok=False, attempts=attempt, error=error, domain_busy=True)

    async def _drop(self) -> None:
        if self._client is not None:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await self._client.quit()
        await self._drop()
