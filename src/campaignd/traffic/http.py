"""A lean HTTP/1.1 keep-alive client for load generation: one connection per virtual user.

Requests are serialized once per `RequestSpec` and written as bytes; responses are parsed by
httptools (llhttp, in C) through protocol callbacks, so a request costs no Task, no Future and
no per-request objects beyond the parser's. Measured against aiohttp's ClientSession on one
core (see bench/traffic_peers.py): aiohttp spends most of each request building request and
response objects, which caps it below Locust's FastHttpUser.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from campaignd.traffic.connections import ConnectionBudget
from campaignd.traffic.plan import RequestSpec

USER_AGENT = "campaignd"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class HeaderInjection(ValueError):
    """Raised when a header name or value would break out of its line."""


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where requests go: connection address, TLS, and what the request line and Host say."""

    host: str
    port: int
    tls: bool
    host_header: str
    base_path: str

    @classmethod
    def parse(cls, url: str) -> HttpTarget:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{url}' is not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        default = port == (443 if tls else 80)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            host_header=name if default else f"{name}:{port}",
            base_path=parts.path.rstrip("/"),
        )


def _checked(text: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise HeaderInjection(f"header {text!r} contains a line break or NUL")
    return text


def encode_request(spec: RequestSpec, target: HttpTarget) -> bytes:
    """The whole request as bytes, built once and written as-is for every send."""
    lines = [f"{spec.method} {_checked(target.base_path + spec.path)} HTTP/1.1"]
    given = {k.lower() for k in spec.headers}
    if "host" not in given:
        lines.append(f"Host: {target.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in given:
        lines.append("Accept: */*")
    for name, value in spec.headers.items():
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{_checked(name)}: {_checked(value)}")
    body = spec.body or b""
    if body or spec.method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


# Called with (connection, status, keep_alive); status 0 means the exchange failed.
Outcome = Callable[["HttpConnection", int, bool], None]


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    __slots__ = ("_budget", "_head", "_on_done", "_parser", "_waiting", "closed", "transport")

    def __init__(self, on_done: Outcome) -> None:
        self._on_done = on_done
        self._budget: ConnectionBudget | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiting = False
        self._head = False
        self.closed = False
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._budget is not None:
            self._budget.release()
            self._budget = None
        self._fail()

    # httptools callbacks ----------------------------------------------------------------
    def on_headers_complete(self) -> None:
        # A HEAD response announces a body it never sends; the exchange ends here.
        if self._head:
            parser = self._parser
            self._parser = httptools.HttpResponseParser(self)
            self._complete(parser.get_status_code(), parser.should_keep_alive())

    def on_message_complete(self) -> None:
        if not self._head:
            self._complete(self._parser.get_status_code(), self._parser.should_keep_alive())

    # requests ---------------------------------------------------------------------------
    def send(self, payload: bytes, head: bool) -> None:
        assert self.transport is not None
        self._waiting = True
        self._head = head
        self.transport.write(payload)

    def hold(self, budget: ConnectionBudget) -> None:
        """Own one slot of `budget` from now on; give it back when the socket closes."""
        if self.closed:
            budget.release()
        else:
            self._budget = budget

    def lend(self, on_done: Outcome) -> None:
        """Report outcomes to `on_done` from now on: an idle connection changes users."""
        self._on_done = on_done

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _complete(self, status: int, keep_alive: bool) -> None:
        if not self._waiting:
            return
        self._waiting = False
        if not keep_alive:
            self.close()
        self._on_done(self, status, keep_alive)

    def _fail(self) -> None:
        if self._waiting:
            self._waiting = False
            self.close()
            self._on_done(self, 0, False)


async def open_connection(
    target: HttpTarget,
    on_done: Outcome,
    ssl_context: ssl.SSLContext | None,
    budget: ConnectionBudget,
) -> HttpConnection:
    """Connect on a slot already taken from `budget`; the slot goes back when the socket closes.

    A connect that fails or is cancelled has closed its socket already: the slot goes back here.
    """
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await loop.create_connection(
            lambda: HttpConnection(on_done),
            target.host,
            target.port,
            ssl=ssl_context if target.tls else None,
        )
    except BaseException:
        budget.release()
        raise
    protocol.hold(budget)
    return protocol
