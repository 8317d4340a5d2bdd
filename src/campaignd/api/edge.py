"""The HTTP connection edge: read timeouts and a connection cap that uvicorn does not have.

uvicorn closes idle keep-alive connections, but a client that sends its headers (or its body)
one byte at a time holds a connection, and a file descriptor, for as long as it likes; and
`limit_concurrency` counts requests, not open sockets. This protocol adds:

- a header timeout, from the first byte of a request (or the connection) until its headers
  are complete;
- a body timeout, from the end of the headers until the whole body is in (not counted
  while the server itself has paused reading because the route is slow to consume it);
- a cap on open connections. At the cap, a new connection takes the place of the oldest one
  that is waiting on its client: for complete headers (an idle keep-alive or a slow client),
  or for the rest of a body it has been sending for over BODY_GRACE_SECONDS; that one is
  closed. When every open connection is busy with a request the server is working on, the
  new one is answered 503 and closed at once. So a flood of slow clients, slow headers or
  slow bodies, cannot lock out a health probe: the probe pushes out the oldest waiter and is
  answered in milliseconds.

On expiry the connection is answered 408 when no response has started, then closed.

When the server stops, uvicorn waits up to timeout_graceful_shutdown (10 s) for requests in
progress. A request still waiting on its client is not the server's work: one whose body is
still arriving is answered 503 at once, and a response the client does not read (writes paused
for STALLED_READER_SECONDS) is cut off, so stalled clients cannot hold up the exit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from campaignd.settings import Settings


def _plain(status: bytes, text: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: "
        + str(len(text)).encode()
        + b"\r\nconnection: close\r\n"
        + extra
        + b"\r\n"
        + text
    )


TIMEOUT_408 = _plain(b"408 Request Timeout", b"The request was not received in time.")
BUSY_503 = _plain(
    b"503 Service Unavailable", b"Too many open connections; retry shortly.", b"retry-after: 1\r\n"
)
STOPPING_503 = _plain(
    b"503 Service Unavailable", b"The server is stopping; retry shortly.", b"retry-after: 1\r\n"
)


REFUSED_LINGER_SECONDS = 0.5
# A body still arriving after this long may give way to a new connection at the cap.
BODY_GRACE_SECONDS = 2.0
STALLED_READER_SECONDS = 1.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read timeouts and a connection cap."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    # Connections waiting for a request's headers, oldest first (per server: see for_settings).
    _waiting: dict[GuardedHttpProtocol, None] = {}
    # Connections receiving a request body, with the moment its headers completed.
    _in_body: dict[GuardedHttpProtocol, float] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._stopping = False
        self._stall_timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> type[GuardedHttpProtocol]:
        return type(
            cls.__name__,
            (cls,),
            {
                "header_timeout": settings.header_timeout_seconds,
                "body_timeout": settings.body_timeout_seconds,
                "max_connections": settings.max_connections,
                "_waiting": {},
                "_in_body": {},
            },
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections and not self._evict_oldest_waiter():
            # Never joins the server's connection set. The 503 goes out with a FIN; closing at
            # once with the request unread would send a reset that can destroy the answer, so
            # the socket lingers (reading into the void) for at most REFUSED_LINGER_SECONDS.
            self._refused = True
            self.transport = transport
            transport.write(BUSY_503)
            if transport.can_write_eof():
                transport.write_eof()
            self._read_timer = self.loop.call_later(REFUSED_LINGER_SECONDS, transport.close)
            return
        super().connection_made(transport)
        self._start_waiting()
        self._arm(self.header_timeout, awaiting_headers=True)

    def _evict_oldest_waiter(self) -> bool:
        while self._waiting:
            oldest = next(iter(self._waiting))
            oldest._stop_waiting()
            if oldest._evict():
                return True
        since = self.loop.time() - BODY_GRACE_SECONDS
        for slow, started in list(self._in_body.items()):
            if started > since:
                break  # the rest started later still
            if slow.flow is not None and slow.flow.read_paused:
                continue  # the server is slow to read this body, not the client to send it
            del self._in_body[slow]
            if slow._evict():
                return True
        return False

    def _evict(self) -> bool:
        if self.transport.is_closing():
            return False
        self.connections.discard(self)  # its place is taken now, not at its close
        self._disarm()
        self.transport.close()
        return True

    def _start_waiting(self) -> None:
        self._waiting[self] = None

    def _stop_waiting(self) -> None:
        self._waiting.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._forgive_stall()
        self._stop_waiting()
        self._in_body.pop(self, None)
        if self._refused:
            return
        super().connection_lost(exc)

    # The server stops: see the module's docstring.
    def shutdown(self) -> None:
        self._stopping = True
        if self in self._in_body and self.cycle is not None and not self.cycle.response_started:
            self._disarm()
            self._in_body.pop(self, None)
            self.transport.write(STOPPING_503)
            self.transport.close()
            return
        if self.flow is not None and self.flow.write_paused:
            self._watch_stall()
        super().shutdown()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stopping:
            self._watch_stall()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._forgive_stall()

    def _watch_stall(self) -> None:
        if self._stall_timer is None:
            # abort, not close: close would wait for the client to read what is buffered.
            self._stall_timer = self.loop.call_later(STALLED_READER_SECONDS, self.transport.abort)

    def _forgive_stall(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # Parser callbacks: the header clock starts with each request, the body clock after it.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_timer is None:
            self._arm(self.header_timeout, awaiting_headers=True)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._stop_waiting()
        super().on_headers_complete()
        self._in_body[self] = self.loop.time()
        self._arm(self.body_timeout, awaiting_headers=False)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_body.pop(self, None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._start_waiting()  # an idle keep-alive connection: first to give way

    def _arm(self, seconds: float, *, awaiting_headers: bool) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._expired, seconds, awaiting_headers)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expired(self, seconds: float, awaiting_headers: bool) -> None:
        self._read_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            # The server paused reading (the route is slow to consume); the client is not slow.
            self._arm(seconds, awaiting_headers=awaiting_headers)
            return
        cycle = self.cycle
        if awaiting_headers:
            answer = cycle is None or cycle.response_complete
        else:
            answer = cycle is not None and not cycle.response_started
        if answer:
            self.transport.write(TIMEOUT_408)
        self.transport.close()
