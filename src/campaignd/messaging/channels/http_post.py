"""A lean HTTP/1.1 POST client for webhook deliveries: keep-alive connections, httptools.

aiohttp's ClientSession builds a request object, a response object, a timer and several
tasks per request; at thousands of deliveries a second that was a third of the sender's
time (bench/messages.py --profile). Here a POST is one pre-built byte string written to an
idle keep-alive connection and one Future completed by the parser's callbacks.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from campaignd.domain.http_rules import HttpRuleError, check_header_value, normalize_path

USER_AGENT = "campaignd"
# Enough of an error answer to say what went wrong; the rest is read and dropped.
BODY_KEPT = 2048


class PostError(Exception):
    """The exchange failed before a whole response arrived (refused, reset, bad answer)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class PostTarget:
    host: str
    port: int
    tls: bool
    head: bytes  # "POST <target> HTTP/1.1\r\nHost: ..\r\nUser-Agent: ..\r\n"

    @classmethod
    def parse(cls, url: str) -> PostTarget:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{url}' is not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host_header = name if port == (443 if tls else 80) else f"{name}:{port}"
        try:
            target = normalize_path(parts.path or "/")
            check_header_value("Host", host_header)
        except HttpRuleError as exc:
            raise ValueError(str(exc)) from None
        if parts.query:
            target += "?" + parts.query
        head = f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        return cls(parts.hostname, port, tls, head.encode("latin-1"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time."""

    __slots__ = (
        "_body",
        "_parser",
        "_retry_after",
        "_waiter",
        "closed",
        "got_data",
        "transport",
    )

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._retry_after: str | None = None
        self._body: list[bytes] = []
        self.got_data = False
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_data = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(PostError("BadResponse", "the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(PostError("BadResponse", str(exc)[:200]))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        detail = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        self._fail(PostError("ServerDisconnected", detail[:200]))

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        if sum(map(len, self._body)) < BODY_KEPT:
            self._body.append(chunk)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if not self._parser.should_keep_alive():
            self.close()
        answer = Answer(
            self._parser.get_status_code(), self._retry_after, b"".join(self._body)[:BODY_KEPT]
        )
        waiter.set_result(answer)

    def exchange(self, payload: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._retry_after = None
        self._body = []
        self.got_data = False
        self.transport.write(payload)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: PostError) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class PostClient:
    """POSTs to one URL over a pool of keep-alive connections (at most `max_idle` kept)."""

    def __init__(
        self,
        url: str,
        timeout: float,
        *,
        max_idle: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.target = PostTarget.parse(url)
        self.timeout = timeout
        self.max_idle = max_idle
        self._ssl = (ssl_context or ssl.create_default_context()) if self.target.tls else None
        self._idle: list[_Connection] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One POST; raises TimeoutError (after `timeout` seconds in all) or PostError."""
        lines = [self.target.head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode())
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        payload = b"".join(lines)
        async with asyncio.timeout(self.timeout):
            while True:
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                if connection.closed:
                    continue
                try:
                    answer = await connection.exchange(payload)
                except PostError:
                    # A kept-alive connection the server closed before it read this request:
                    # try another. Anything it answered counts as an answer.
                    if reused and not connection.got_data:
                        continue
                    raise
                except BaseException:  # timed out or cancelled: the answer may still come
                    connection.close()
                    raise
                self._keep(connection)
                return answer

    def _keep(self, connection: _Connection) -> None:
        if connection.closed:
            return
        if len(self._idle) < self.max_idle:
            self._idle.append(connection)
        else:
            connection.close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self.target.host,
                self.target.port,
                ssl=self._ssl,
                server_hostname=self.target.host if self._ssl else None,
            )
        except ssl.SSLError as exc:
            raise PostError("TLSError", str(exc)[:200]) from None
        except OSError as exc:
            raise PostError("ConnectError", f"{type(exc).__name__}: {exc}"[:200]) from None
        return connection

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
