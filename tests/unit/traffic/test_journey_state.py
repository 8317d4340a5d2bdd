"""One user's journey state: request bytes from pre-encoded parts, cookies, moving on."""

from __future__ import annotations

import random

from campaignd.traffic.http import HttpTarget, JourneyConnection
from campaignd.traffic.journey import CompiledJourney, JourneyState
from campaignd.traffic.plan import UserProfile

STEPS = [
    {
        "name": "login",
        "method": "POST",
        "path": "/login",
        "body": {"email": "{{ data.email }}"},
        "extract": {"token": {"json": "$.token"}},
    },
    {
        "name": "me",
        "path": "/me/{{ user.index }}",
        "headers": {"Authorization": "Bearer {{ token }}"},
        "checks": [{"status": 200}],
    },
]


def _state(user: int = 1) -> JourneyState:
    profile = UserProfile.from_row(
        {
            "id": 1,
            "name": "j",
            "requests": [],
            "steps": STEPS,
            "data": [{"email": "a"}, {"email": "b"}],
        }
    )
    target = HttpTarget.parse("http://127.0.0.1:8080/base")
    journey = CompiledJourney.build(profile, target, ["login", "me"])
    return JourneyState(journey, user, random.Random(0))


def _answer(
    state: JourneyState, status: int, body: bytes, cookies: tuple[bytes, ...] = ()
) -> object:
    conn = JourneyConnection(lambda *a: None)
    state.prepare(conn)
    conn.cookies = list(cookies)
    conn.on_body(body)
    return state.answered(status, conn)


def test_requests_are_built_per_user_and_carry_its_cookies() -> None:
    state = _state()
    payload, head = state.request()
    assert not head
    assert payload.startswith(b"POST /base/login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert payload.endswith(b'Content-Length: 14\r\n\r\n{"email": "b"}')
    assert b"Content-Type: application/json" in payload
    checks, ended = _answer(state, 200, b'{"token": "T"}', [b"sid=S1; Path=/; HttpOnly", b"x=1"])
    assert (checks, ended) == ([], None)
    payload, _ = state.request()
    assert payload.startswith(b"GET /base/me/1 HTTP/1.1\r\n")
    assert b"Authorization: Bearer T\r\n" in payload
    assert b"Cookie: sid=S1; x=1\r\n" in payload
    checks, ended = _answer(state, 200, b"", [b"x=; Max-Age=0"])
    assert checks == [("status is 200", True)] and ended is False
    assert state.step == 0 and state.scope.iteration == 1
    assert state.cookie == "sid=S1"


def test_a_failed_extraction_aborts_and_starts_over() -> None:
    state = _state()
    state.request()
    assert _answer(state, 200, b'{"nope": 1}') == ([], True)
    assert state.step == 0 and state.scope.iteration == 1
    state.request()
    assert _answer(state, 0, b"") == ([], True)  # a lost connection extracts nothing


def test_a_connection_keeps_only_set_cookie_and_the_wanted_headers() -> None:
    conn = JourneyConnection(lambda *a: None)
    conn.expect(frozenset({b"location"}), want_body=False)
    for name, value in [
        (b"Server", b"nginx"),
        (b"LOCATION", b"/next"),
        (b"Set-Cookie", b"a=1"),
        (b"Connection", b"keep-alive"),  # as long as Set-Cookie: looked at, not kept
        (b"set-cookie", b"b=2"),
    ]:
        conn.on_header(name, value)
    conn.on_body(b"not kept")
    assert conn.headers == {"location": "/next"}
    assert conn.cookies == [b"a=1", b"b=2"]
    assert conn.body == []
