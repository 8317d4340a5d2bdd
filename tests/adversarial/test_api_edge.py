"""The HTTP edge under hostile input: odd links, oversized bodies, odd auth headers, slow clients."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

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
        ("DELETE", "/api/audiences/3", "GET"),
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
