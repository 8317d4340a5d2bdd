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

from campaignd.domain.http_rules import (
    FRAMING_HEADERS,
    HttpRuleError,
    check_header_name,
    check_header_value,
    normalize_path,
)
from campaignd.domain.journeys import MAX_BODY_BYTES, CompiledStep, Scope
from campaignd.traffic.connections import ConnectionBudget
from campaignd.traffic.plan import RequestSpec

USER_AGENT = "campaignd"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class HeaderInjection(ValueError):
    """Raised when a request line or header could not be sent as written (RFC 9110/9112)."""


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where requests go: connection address, TLS, and what the request line and Host say.

    `addresses`, when given, are the IP addresses the allowlist check resolved `host` to:
    connections go to them, in order, and never resolve `host` again (no DNS rebinding
    between the check and the use); `host` stays the TLS server name and the Host header.
    """

    host: str
    port: int
    tls: bool
    host_header: str
    base_path: str
    addresses: tuple[str, ...] = ()

    @classmethod
    def parse(cls, url: str, addresses: tuple[str, ...] = ()) -> HttpTarget:
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
            host_header=_checked("Host", name if default else f"{name}:{port}"),
            base_path=parts.path.rstrip("/"),
            addresses=tuple(addresses),
        )


def _checked(name: str, value: str) -> str:
    try:
        return check_header_value(name, value)
    except HttpRuleError as exc:
        raise HeaderInjection(str(exc)) from None


def _request_line(spec: RequestSpec, target: HttpTarget) -> str:
    try:
        return f"{spec.method} {normalize_path(target.base_path + spec.path)} HTTP/1.1"
    except HttpRuleError as exc:
        raise HeaderInjection(str(exc)) from None


def encode_request(spec: RequestSpec, target: HttpTarget) -> bytes:
    """The whole request as bytes, built once and written as-is for every send.

    Rows stored before the rules were enforced get the same treatment as new input: framing
    headers are dropped (after trimming and case-folding their names), anything else that
    breaks the rules raises HeaderInjection.
    """
    lines = [_request_line(spec, target)]
    headers: list[tuple[str, str]] = []
    for raw_name, value in spec.headers.items():
        name = raw_name.strip(" \t")
        if name.lower() in FRAMING_HEADERS:
            continue
        try:
            check_header_name(name)
        except HttpRuleError as exc:
            raise HeaderInjection(str(exc)) from None
        headers.append((name, _checked(name, value)))
    given = {name.lower() for name, _ in headers}
    if "host" not in given:
        lines.append(f"Host: {target.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in given:
        lines.append("Accept: */*")
    lines.extend(f"{name}: {value}" for name, value in headers)
    body = spec.body or b""
    if body or spec.method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


class StepEncoder:
    """A journey step's request from pre-encoded parts: only what a template fills in, the
    cookies and the Content-Length are built per send. A step with no template is encoded once.
    """

    __slots__ = ("_body", "_fixed", "_head", "_headers", "_line", "_path", "_prefix", "_static")

    def __init__(self, step: CompiledStep, target: HttpTarget) -> None:
        headers: list[tuple[str, str]] = []
        dynamic: list[tuple[bytes, object]] = []
        for raw_name, template in step.headers:
            name = raw_name.strip(" \t")
            if name.lower() in FRAMING_HEADERS:
                continue
            try:
                check_header_name(name)
            except HttpRuleError as exc:
                raise HeaderInjection(str(exc)) from None
            if template.constant:
                headers.append((name, _checked(name, template.text)))
            else:
                dynamic.append((f"{name}: ".encode("latin-1"), template))
        given = {name.lower() for name, _ in headers} | {
            n.decode("latin-1")[:-2].lower() for n, _ in dynamic
        }
        lines = []
        if "host" not in given:
            lines.append(f"Host: {target.host_header}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        if "accept" not in given:
            lines.append("Accept: */*")
        lines.extend(f"{name}: {value}" for name, value in headers)
        self._static = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._headers = tuple(dynamic)
        self._head = step.method == "HEAD"
        self._prefix = f"{step.method} {target.base_path}".encode("latin-1")
        self._path = None if step.path.constant else step.path
        self._line = (
            _request_line(RequestSpec(step.method, step.path.text), target).encode("latin-1")
            + b"\r\n"
            if step.path.constant
            else b""
        )
        body = step.body
        constant = body.constant if body is not None else b""
        self._body = body if constant is None else None
        self._fixed = (constant or b"") if body is None or constant is not None else None
        if self._fixed is not None and (self._fixed or step.method in _BODY_METHODS):
            self._static += f"Content-Length: {len(self._fixed)}\r\n".encode()
        if body is not None and body.json_strings and "content-type" not in given:
            self._static += b"Content-Type: application/json\r\n"

    @property
    def head(self) -> bool:
        return self._head

    def build(self, scope: Scope, cookie: str | None) -> bytes:
        """The request for this user now; TemplateFailure when a template cannot render."""
        if self._path is not None:
            line = self._prefix + self._path.render(scope).encode() + b" HTTP/1.1\r\n"
        else:
            line = self._line
        parts = [line, self._static]
        for name, template in self._headers:
            parts.append(name + template.render(scope).encode() + b"\r\n")  # type: ignore[attr-defined]
        if cookie:
            parts.append(b"Cookie: " + cookie.encode("latin-1", "replace") + b"\r\n")
        if self._fixed is not None:
            parts.append(b"\r\n")
            parts.append(self._fixed)
        else:
            assert self._body is not None
            body = self._body.render(scope)
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
            parts.append(body)
        return b"".join(parts)


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


_SET_COOKIE_LENGTH = frozenset({len(b"set-cookie")})
# The header-name lengths worth a look, per set of wanted headers (a few per profile).
_LENGTHS: dict[frozenset[bytes], frozenset[int]] = {}


class JourneyConnection(HttpConnection):
    """A connection that also keeps, per response, what a journey step reads: Set-Cookie
    lines, the headers it extracts and, only when the step needs it, the body."""

    __slots__ = ("_lengths", "_want_body", "_wanted", "body", "cookies", "headers")

    def __init__(self, on_done: Outcome) -> None:
        super().__init__(on_done)
        self.cookies: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self._want_body = False
        self._wanted: frozenset[bytes] = frozenset()
        self._lengths: frozenset[int] = _SET_COOKIE_LENGTH

    def expect(self, wanted_headers: frozenset[bytes], want_body: bool) -> None:
        """What the next response should keep (called just before its request is sent)."""
        self._wanted = wanted_headers
        lengths = _LENGTHS.get(wanted_headers)
        if lengths is None:
            lengths = _LENGTHS[wanted_headers] = _SET_COOKIE_LENGTH | {
                len(h) for h in wanted_headers
            }
        self._lengths = lengths
        self._want_body = want_body
        self.cookies = []
        self.headers = {}
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # Most headers are of no interest: their length alone says so, without a lower().
        if len(name) not in self._lengths:
            return
        lowered = name.lower()
        if lowered == b"set-cookie":
            self.cookies.append(value)
        elif lowered in self._wanted and lowered.decode("latin-1") not in self.headers:
            self.headers[lowered.decode("latin-1")] = value.decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        if self._want_body and sum(map(len, self.body)) < MAX_BODY_BYTES:
            self.body.append(chunk)


async def open_connection(
    target: HttpTarget,
    on_done: Outcome,
    ssl_context: ssl.SSLContext | None,
    budget: ConnectionBudget,
    factory: type[HttpConnection] = HttpConnection,
) -> HttpConnection:
    """Connect to the pinned addresses in order (or to the host by name when none are pinned)
    on a slot already taken from `budget`; the slot goes back when the socket closes.

    A connect that fails or is cancelled has closed its socket already: the slot goes back here.
    """
    loop = asyncio.get_running_loop()
    tls = ssl_context if target.tls else None
    server_name = target.host if target.tls else None
    try:
        error: OSError | None = None
        for address in target.addresses or (target.host,):
            try:
                _, protocol = await loop.create_connection(
                    lambda: factory(on_done),
                    address,
                    target.port,
                    ssl=tls,
                    server_hostname=server_name,
                )
                break
            except OSError as exc:
                error = exc
        else:
            assert error is not None
            raise error
    except BaseException:
        budget.release()
        raise
    protocol.hold(budget)
    return protocol
