"""A loopback app that wants a login: it issues a token per login (JSON) and a session cookie,
and refuses every other request without that login's own token and cookie."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from typing import Any

from aiohttp import web

from support.net import free_port


class JourneyApp:
    """POST /login {"email", "user"} → {"token", "ok"} + Set-Cookie sid; GET /items/{id} and
    GET /profile need `Authorization: Bearer <token>` and the `sid` cookie of the same login.

    `/profile` answers {"ok": true|false}: false on every third call (counted in
    `profile_false`), so a check on `$.ok` fails an exactly known number of times. A login
    for an email in `refuse_emails` answers 200 without a token (extraction fails there).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.refuse_emails: set[str] = set()
        self.lock = threading.Lock()
        self.logins: dict[str, dict[str, Any]] = {}  # token -> {"sid", "email", "user"}
        self.by_token: dict[str, list[str]] = defaultdict(list)  # paths after login
        self.refused: list[tuple[str, str]] = []  # (path, why)
        self.tokenless_logins = 0
        self.profile_calls = 0
        self.profile_false = 0
        self._counter = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> JourneyApp:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("journey app did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def requests_after_login(self) -> int:
        with self.lock:
            return sum(len(paths) for paths in self.by_token.values())

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        email = body.get("email", "")
        with self.lock:
            if email in self.refuse_emails:
                self.tokenless_logins += 1
                return web.json_response({"ok": False})
            n = next(self._counter)
            token, sid = f"tok-{n}", f"sid-{n}"
            self.logins[token] = {"sid": sid, "email": email, "user": body.get("user")}
        response = web.json_response({"ok": True, "token": token, "data": {"n": n}})
        response.set_cookie("sid", sid)
        return response

    def _authorised(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.lock:
            login = self.logins.get(token)
            if login is None:
                self.refused.append((request.path, f"no token: {auth!r}"))
                return None
            if request.cookies.get("sid") != login["sid"]:
                self.refused.append((request.path, f"wrong cookie for {token}"))
                return None
            self.by_token[token].append(request.path_qs)
        return token

    async def _item(self, request: web.Request) -> web.Response:
        if self._authorised(request) is None:
            return web.json_response({"error": "login first"}, status=401)
        return web.json_response({"id": request.match_info["id"]})

    async def _profile(self, request: web.Request) -> web.Response:
        if self._authorised(request) is None:
            return web.json_response({"error": "login first"}, status=401)
        with self.lock:
            self.profile_calls += 1
            ok = self.profile_calls % 3 != 0
            if not ok:
                self.profile_false += 1
        return web.json_response({"ok": ok})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/login", self._login)
        app.router.add_get("/items/{id}", self._item)
        app.router.add_get("/profile", self._profile)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


DATA = [
    {"email": "ann@example.com", "item": "11"},
    {"email": "bob@example.com", "item": "22"},
    {"email": "cid@example.com", "item": "33"},
]

STEPS: list[dict[str, Any]] = [
    {
        "name": "log in",
        "method": "POST",
        "path": "/login",
        "body": {"email": "{{ data.email }}", "user": "{{ user.index }}"},
        "extract": {"token": {"json": "$.token"}},
        "checks": [{"status": 200}],
    },
    {
        "name": "item",
        "method": "GET",
        "path": "/items/{{ data.item }}?i={{ iteration }}",
        "headers": {"Authorization": "Bearer {{ token }}"},
        "checks": [{"status": 200}],
    },
    {
        "name": "profile",
        "method": "GET",
        "path": "/profile",
        "headers": {"Authorization": "Bearer {{ token }}"},
        "checks": [{"json": "$.ok", "equals": True, "name": "profile ok"}],
    },
]


def journey_profile(**extra: Any) -> dict[str, Any]:
    return {"name": "journey", "steps": STEPS, "data": DATA, **extra}
