"""The webhook channel's own POST client against real servers on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from campaignd.messaging.channels import build_channel, validate_account_config
from campaignd.messaging.channels.base import OutgoingMessage
from campaignd.messaging.channels.http_post import PostClient, PostError
from support.tls import server_context

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PEER = web.RequestKey("peer", object)  # the client's address, kept while it is known


@asynccontextmanager
async def aiohttp_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.StreamResponse:
        await request.read()
        request[PEER] = request.transport.get_extra_info("peername") if request.transport else None
        seen.append(request)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(
    on_connection: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_posts_keep_one_connection_alive_and_carry_body_headers_and_query() -> None:
    async with aiohttp_server(ok) as (url, seen):
        client = PostClient(f"{url}/hook/ü?a=1&b=2", timeout=5)
        for i in range(5):
            answer = await client.post(b'{"i": %d}' % i, {"Idempotency-Key": f"1:u{i}-ключ"})
            assert answer.status == 200 and answer.body == b"ok"
        await client.close()
    assert [r.query_string for r in seen] == ["a=1&b=2"] * 5
    assert {r.path for r in seen} == {"/hook/ü"}
    assert [r.headers["Idempotency-Key"] for r in seen] == [f"1:u{i}-ключ" for i in range(5)]
    assert {r.headers["Host"] for r in seen} == {url.removeprefix("http://")}
    # One TCP connection carried every POST (same client port each time).
    assert len({r[PEER] for r in seen}) == 1


async def test_concurrent_posts_open_more_connections_and_all_arrive() -> None:
    async with aiohttp_server(ok) as (url, seen):
        client = PostClient(url, timeout=5)
        answers = await asyncio.gather(*(client.post(b"x", {}) for _ in range(50)))
        await client.close()
    assert [a.status for a in answers] == [200] * 50 and len(seen) == 50


async def test_an_error_answer_keeps_its_status_retry_after_and_the_start_of_its_body() -> None:
    async def busy(_request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down " * 1000, headers={"Retry-After": "7"})

    async with aiohttp_server(busy) as (url, _):
        client = PostClient(url, timeout=5)
        answer = await client.post(b"x", {})
        await client.close()
    assert (answer.status, answer.retry_after) == (429, "7")
    assert answer.body.startswith(b"slow down") and len(answer.body) == 2048


async def test_a_kept_connection_the_server_closed_is_replaced_without_a_failure() -> None:
    connections = 0

    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1)
        # Keep-alive promised, then the connection is closed while idle (a server timeout).
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(one_answer_then_close) as url:
        client = PostClient(url, timeout=5)
        statuses = []
        for _ in range(3):
            statuses.append((await client.post(b"x", {})).status)
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        await client.close()
    assert statuses == [204, 204, 204] and connections == 3


async def test_connection_close_chunked_answers_and_a_timeout() -> None:
    async def chunked_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1)
        writer.write(
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"4\r\nboom\r\n0\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(5)  # the client closes, as Connection: close says
        writer.close()

    async with raw_server(chunked_then_close) as url:
        client = PostClient(url, timeout=5)
        answer = await client.post(b"x", {})
        assert (answer.status, answer.body) == (500, b"boom")
        assert client._idle == []
        await client.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async with raw_server(silent) as url:
        client = PostClient(url, timeout=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await client.post(b"x", {})
        assert asyncio.get_running_loop().time() - started < 2
        await client.close()


async def test_refused_and_garbled_answers_are_post_errors() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(PostError) as refused:
        await PostClient(f"http://127.0.0.1:{port}/", timeout=5).post(b"x", {})
    assert refused.value.kind == "ConnectError"

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP? 220 hello\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async with raw_server(garbage) as url:
        with pytest.raises(PostError) as garbled:
            await PostClient(url, timeout=5).post(b"x", {})
    assert garbled.value.kind == "BadResponse"


async def test_https_is_verified_and_works_with_a_trusted_certificate(tmp_path: Path) -> None:
    tls = server_context(tmp_path)
    async with aiohttp_server(ok, tls) as (url, seen):
        with pytest.raises(PostError) as untrusted:
            await PostClient(url, timeout=5).post(b"x", {})
        assert untrusted.value.kind in {"TLSError", "ConnectError"}
        trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        client = PostClient(url, timeout=5, ssl_context=trusting)
        answer = await client.post(b"x", {})
        await client.close()
    assert answer.status == 200 and len(seen) == 1


async def test_the_webhook_channel_says_why_a_delivery_failed() -> None:
    async def refuse(_request: web.Request) -> web.Response:
        return web.Response(status=422, text="no such user")

    async with aiohttp_server(refuse) as (url, seen):
        config = validate_account_config("webhook", {"url": url, "max_attempts": 2})
        channel = build_channel("webhook", config)
        message = OutgoingMessage(
            campaign_id=3, contact_id=1, external_id="u1", address="u1@x.test", text="hi"
        )
        result = await channel.send(message)
        await channel.close()
    assert not result.ok and result.error == "HTTP 422: no such user" and len(seen) == 1
