"""A real HTTP target on loopback that counts what it receives, in its own thread and loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web

from support.net import free_port


class CountingTarget:
    """Counts requests by path; can answer slowly or with a chosen status per path."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.counts: Counter[str] = Counter()
        self.times: list[float] = []
        self.bodies: list[tuple[str, bytes, dict[str, str]]] = []
        self.status_for: dict[str, int] = {}
        self.delay_for: dict[str, float] = {}
        self.redirect_for: dict[str, str] = {}  # path -> Location, answered with a 302
        self.open_connections = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> CountingTarget:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("target server did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def count_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.times if start <= t < end)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.counts[request.path] += 1
            self.times.append(time.monotonic())
            if len(self.bodies) < 10_000:
                self.bodies.append((request.path, body, dict(request.headers)))
        delay = self.delay_for.get(request.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        location = self.redirect_for.get(request.path)
        if location is not None:
            return web.Response(status=302, headers={"Location": location}, text="moved")
        return web.Response(status=self.status_for.get(request.path, 200), text="ok")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
