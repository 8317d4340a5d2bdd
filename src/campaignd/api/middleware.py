"""ASGI middleware: bearer-token auth and request body limits, before any route runs."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Served without a token: the health probe, the UI's static shell (it holds no data; the
# UI asks the operator for the token and sends it on every API call), and signed
# unsubscribe and tracked links (/l/), which recipients follow from their messages.
PUBLIC_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/", "/ui/", "/unsubscribe/", "/l/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def _reply(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def bearer_token(header: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive."""
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip()


class TokenAuth:
    """When a token is configured, every non-public route needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        token = bearer_token(given)
        if token is not None and hmac.compare_digest(token, self.expected):
            await self.app(scope, receive, send)
            return
        reason = "missing" if not given else "wrong"
        await _reply(
            send,
            401,
            {
                "error": f"Authorization token {reason}: send 'Authorization: Bearer <token>'.",
                "path": scope["path"],
            },
            [(b"www-authenticate", b"Bearer")],
        )


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether announced or streamed.

    A streamed body that grows past the limit is answered here, at once, and the route is
    told the client went away; whatever the route sends after that is dropped. (Raising
    into the route instead lets its body parsing turn the failure into a 400.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = {"error": f"Request body is larger than {self.limit} bytes.", "limit": self.limit}
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _reply(send, 413, too_big, [(b"connection", b"close")])
            return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    if not started:
                        await _reply(send, 413, too_big, [(b"connection", b"close")])
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not refused:
                raise
            # The route failed on the body it was refused; the 413 is already sent.
