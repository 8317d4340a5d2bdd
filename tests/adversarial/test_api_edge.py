"""The HTTP edge under hostile input: odd links, oversized bodies, odd auth headers, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from campaignd.api.edge import BODY_GRACE_SECONDS
from support.service import ServiceProcess

TOKEN = "edge-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One real server with a token, shared by the request-level tests."""
    tmp = tmp_path_factory.mktemp("edge")
    proc = ServiceProcess(
        f"sqlite:///{tmp / 'campaignd.db'}", tmp / "service.log", CAMPAIGND_API_TOKEN=TOKEN
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(guarded: ServiceProcess) -> Iterator[httpx.Client]:
    with guarded.client() as c:
        yield c


@pytest.mark.parametrize("token", ["%C3%A9", "%E2%9C%93" * 8, "%00", "x" * 300])
def test_unsubscribe_link_with_odd_token_is_404(guarded: ServiceProcess, token: str) -> None:
    response = httpx.get(f"{guarded.url}/unsubscribe/1/1/{token}")
    assert response.status_code == 404, response.text
    assert response.json() == {"error": "This unsubscribe link is not valid."}
    assert "Traceback" not in guarded.log


def _chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/accounts", "application/json"),
        ("/api/traffic/campaigns", "application/json"),
        ("/api/audiences/{audience}/contacts", "text/csv"),
        ("/api/audiences/{audience}/contacts", "application/json"),
    ],
)
def test_chunked_body_over_the_limit_is_413(
    client: httpx.Client, path: str, content_type: str
) -> None:
    audience = client.post("/api/audiences", json={"name": "big"}).json()["id"]
    response = client.post(
        path.format(audience=audience),
        content=_chunks(11 * 1024 * 1024),  # a generator: sent chunked, no Content-Length
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 413, response.text
    assert response.json()["limit"] == 10 * 1024 * 1024
    assert "larger than" in response.json()["error"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(guarded: ServiceProcess, scheme: str) -> None:
    response = httpx.get(
        f"{guarded.url}/api/accounts", headers={"Authorization": f"{scheme} {TOKEN}"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "header", [f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "bearer wrong", "bearer", ""]
)
def test_other_authorization_values_stay_401(guarded: ServiceProcess, header: str) -> None:
    response = httpx.get(f"{guarded.url}/api/accounts", headers={"Authorization": header})
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/audiences/3", "GET, DELETE"),
        ("PUT", "/api/accounts/2", "GET, PATCH, DELETE"),
        ("DELETE", "/healthz", "GET"),
        ("PUT", "/unsubscribe/1/1/x", "GET, POST"),
    ],
)
def test_405_names_the_allowed_methods(
    client: httpx.Client, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.json()["error"] == f"Method {method} is not allowed on {path}; use {allowed}."
    assert response.headers["allow"] == allowed


# slow clients and the connection cap ------------------------------------------------------
SLOW_TIMEOUT = 2.0
SLACK = 3.0  # two shared cores: closing 600 sockets and our own polling take a moment


async def _slow_client(port: int, head: bytes, drip: bytes) -> tuple[float, bytes]:
    """Send `head`, then a byte of `drip` every 0.25 s; seconds until the server closed, and
    what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    answer = b""

    async def drip_forever() -> None:
        with contextlib.suppress(OSError):
            while True:
                await asyncio.sleep(0.25)
                writer.write(drip)
                await writer.drain()

    dripping = asyncio.create_task(drip_forever())
    try:
        async with asyncio.timeout(SLOW_TIMEOUT + SLACK + 5):
            with contextlib.suppress(OSError):
                while chunk := await reader.read(4096):
                    answer += chunk
    except TimeoutError:
        answer = b"<still open>"
    finally:
        dripping.cancel()
        writer.close()
    return time.monotonic() - started, answer


async def _health_latencies(url: str, until: asyncio.Future[object]) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not until.done():
            start = time.monotonic()
            response = await client.get("/healthz")
            latencies.append(time.monotonic() - start)
            assert response.status_code == 200
            await asyncio.sleep(0.01)
    return latencies


@pytest.mark.slow
async def test_slow_headers_and_bodies_are_cut_off_and_health_stays_fast(
    service_factory, tmp_path: Path
) -> None:
    server = service_factory(
        f"sqlite:///{tmp_path / 'slow.db'}",
        CAMPAIGND_HEADER_TIMEOUT_SECONDS=str(SLOW_TIMEOUT),
        CAMPAIGND_BODY_TIMEOUT_SECONDS=str(SLOW_TIMEOUT),
    )
    slow_headers = [
        _slow_client(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
        for _ in range(300)
    ]
    slow_bodies = [
        _slow_client(
            server.port,
            b"POST /api/audiences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{",
            b" ",
        )
        for _ in range(300)
    ]
    everything = asyncio.gather(*slow_headers, *slow_bodies)
    health = asyncio.create_task(_health_latencies(server.url, everything))
    results = await everything
    latencies = await health

    for seconds, answer in results:
        assert answer in (b"",) or answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert seconds < SLOW_TIMEOUT + SLACK, seconds
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for _, answer in results) == 600
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if len(latencies) >= 100 else latencies[-1]
    print(f"healthz under 600 slow connections: n={len(latencies)} p99={p99 * 1000:.1f} ms")
    assert len(latencies) >= 20
    assert p99 < 0.5


async def _hold(port: int, count: int, head: bytes) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        if b"100-continue" in head:
            # uvicorn answers 100 Continue once the route reads the body: headers are done.
            async with asyncio.timeout(5):
                assert b"100 Continue" in await reader.readuntil(b"\r\n\r\n")
        writers.append(writer)
    return writers


async def _fresh_request(port: int) -> tuple[float, bytes]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    return time.monotonic() - started, answer


@pytest.mark.slow
async def test_connections_over_the_cap_are_answered_503_at_once(
    service_factory, tmp_path: Path
) -> None:
    cap = 20
    server = service_factory(
        f"sqlite:///{tmp_path / 'cap.db'}",
        CAMPAIGND_MAX_CONNECTIONS=str(cap),
        CAMPAIGND_BODY_TIMEOUT_SECONDS="60",
    )
    busy = (
        b"POST /api/audiences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n{"
    )
    held = await _hold(server.port, cap, busy)
    held_at = time.monotonic()
    try:
        seconds, answer = await _fresh_request(server.port)
        if time.monotonic() - held_at < BODY_GRACE_SECONDS:
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
            assert b"retry-after: 1" in answer.lower()
            assert seconds < 1.0
        # Bodies still arriving after the grace give way to new requests, long before their
        # 60 s body timeout: slow bodies cannot lock the service out either.
        deadline = held_at + BODY_GRACE_SECONDS + SLACK
        while not (await _fresh_request(server.port))[1].startswith(b"HTTP/1.1 200 "):
            assert time.monotonic() < deadline, "no slow body gave way after the grace"
            await asyncio.sleep(0.1)
    finally:
        for w in held:
            w.close()


@pytest.mark.slow
async def test_at_the_cap_a_new_request_pushes_out_the_oldest_slow_client(
    service_factory, tmp_path: Path
) -> None:
    cap = 20
    server = service_factory(f"sqlite:///{tmp_path / 'evict.db'}", CAMPAIGND_MAX_CONNECTIONS="20")
    readers = []
    for _ in range(cap):  # slow clients: never finish their headers (timeout 10 s here)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        readers.append((reader, writer))
    try:
        for _ in range(5):
            seconds, answer = await _fresh_request(server.port)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
            assert seconds < 1.0
        async with asyncio.timeout(2):  # the oldest slow client gave way, closed without a word
            assert await readers[0][0].read() == b""
        # Its place went to the first probe, whose own place was free again after its answer.
        assert not readers[1][0].at_eof()
    finally:
        for _, writer in readers:
            writer.close()


@pytest.mark.slow
async def test_a_kept_alive_connection_gets_the_header_timeout_again(
    service_factory, tmp_path: Path
) -> None:
    server = service_factory(
        f"sqlite:///{tmp_path / 'ka.db'}", CAMPAIGND_HEADER_TIMEOUT_SECONDS=str(SLOW_TIMEOUT)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(len(b'{"status":"ok"}'))
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")  # the second request stalls
        started = time.monotonic()
        async with asyncio.timeout(SLOW_TIMEOUT + SLACK):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert time.monotonic() - started < SLOW_TIMEOUT + SLACK
    finally:
        writer.close()


async def _open(
    port: int, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting, so the advertised window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


@pytest.mark.slow
async def test_clients_that_hold_connections_do_not_hold_up_a_sigterm(
    service_factory, tmp_path: Path
) -> None:
    """uvicorn waits up to 10 s (timeout_graceful_shutdown) for requests in progress. A body
    still arriving or a response the client does not read is waiting on the client, not on
    the server: at a SIGTERM those connections are answered 503 or cut off at once."""
    server = service_factory(f"sqlite:///{tmp_path / 'stop.db'}")
    idle = await _open(server.port)
    idle[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        assert (await idle[0].readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        await idle[0].readexactly(len(b'{"status":"ok"}'))
    half_headers = await _open(server.port)
    half_headers[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    half_body = await _open(server.port)
    half_body[1].write(
        b"POST /api/audiences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    async with asyncio.timeout(5):  # the route waits for the body
        assert b"100 Continue" in await half_body[0].readuntil(b"\r\n\r\n")
    half_body[1].write(b'{"name": ')
    not_reading = await _open(server.port, receive_buffer=4096)
    not_reading[1].write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 40)  # ~5 MB
    async with asyncio.timeout(5):  # answering has begun; then nothing more is read
        assert (await not_reading[0].readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    try:
        started = time.monotonic()
        assert server.signal(signal.SIGTERM) == 0
        took = time.monotonic() - started
        print(f"exited {took:.2f} s after SIGTERM")
        assert took < 5.0, f"exited {took:.1f} s after SIGTERM"
        async with asyncio.timeout(5):
            assert (await half_body[0].read()).startswith(b"HTTP/1.1 503 ")
            assert await idle[0].read() == b"" and await half_headers[0].read() == b""
    finally:
        for _, writer in (idle, half_headers, half_body, not_reading):
            writer.close()
