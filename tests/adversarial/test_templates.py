"""Hostile message templates against the real server: refused with a 422, never a frozen API."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from campaignd.domain import templates
from campaignd.domain.errors import InvalidInput
from campaignd.messaging.template_checker import TemplateChecker
from support.messaging_flow import (
    delivered,
    make_account,
    make_audience,
    make_campaign,
    wait_for,
)
from support.service import ServiceProcess
from support.target import CountingTarget

pytestmark = pytest.mark.slow

HEALTHZ_SECONDS = 0.5
# Each froze the event loop (compile-time folding, lorem ipsum, loops, a 1 GB string).
BAD_TEMPLATES = [
    "{{ 7**10000000 > 1 }}",
    "{{ lipsum(n=20000) }}",
    "{% for i in range(3000) %}{% for j in range(3000) %}{{ j }}{% endfor %}{% endfor %}",
    "{{ 'x'|center(10**9) }}",
]


@pytest.fixture
def service(service_factory: Any, tmp_path: Path) -> ServiceProcess:
    """A server of its own, for the tests that stop or kill it."""
    return service_factory(f"sqlite:///{tmp_path / 'campaignd.db'}")  # type: ignore[no-any-return]


@pytest.fixture
def client(server: ServiceProcess) -> Iterator[httpx.Client]:
    """The module's shared server, for the tests that leave it running."""
    with server.client() as c:
        yield c


def _attacks(client: httpx.Client, account: int, audience: int, campaign: int) -> list[Any]:
    """(name, request) pairs: every route that takes a template, with every bad template."""
    base = {"name": "x", "account_id": account, "audience_id": audience, "limit": 1}
    attacks: list[tuple[str, Callable[[], httpx.Response]]] = []
    for bad in BAD_TEMPLATES:
        attacks += [
            ("preview", lambda b=bad: client.post("/api/campaigns/preview", json={"message": b})),
            ("message", lambda b=bad: client.post("/api/campaigns", json={**base, "message": b})),
            (
                "subject",
                lambda b=bad: client.post(
                    "/api/campaigns", json={**base, "message": "Hi", "subject": b}
                ),
            ),
            (
                "variants[1].message",
                lambda b=bad: client.post(
                    "/api/campaigns",
                    json={
                        **base,
                        "message": "Hi",
                        "variants": [{"name": "a"}, {"name": "b", "message": b}],
                    },
                ),
            ),
            (
                "message",
                lambda b=bad: client.patch(f"/api/campaigns/{campaign}", json={"message": b}),
            ),
            (
                "message",
                lambda b=bad: client.post(f"/update_campaign/{campaign}", json={"message": b}),
            ),
        ]
    return attacks


def test_bad_templates_are_refused_while_healthz_keeps_answering(
    client: httpx.Client, server: ServiceProcess, target: CountingTarget
) -> None:
    account, audience = make_account(client, target), make_audience(client, 3)
    campaign = make_campaign(client, account, audience)
    stored = [c["id"] for c in client.get("/api/campaigns").json()]
    attacks = _attacks(client, account, audience, campaign)
    results: list[tuple[str, httpx.Response]] = []
    lock = threading.Lock()

    def fire(name: str, request: Callable[[], httpx.Response]) -> None:
        response = request()
        with lock:
            results.append((name, response))

    threads = [threading.Thread(target=fire, args=attack) for attack in attacks]
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=30) as probe:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    print(
        f"\n/healthz under {len(attacks)} template attacks: {len(latencies)} polls,"
        f" p50 {statistics.median(ordered) * 1000:.1f} ms,"
        f" p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms,"
        f" max {ordered[-1] * 1000:.1f} ms"
    )
    assert len(latencies) >= 3, "the attacks were in flight while /healthz was polled"
    assert max(latencies) < HEALTHZ_SECONDS, ordered[-5:]
    assert len(results) == len(attacks)
    for name, response in results:
        if name == "preview":
            assert response.status_code == 200, response.text
            assert response.json()["rendered"] is None and response.json()["error"]
            continue
        assert response.status_code == 422, response.text
        assert response.json()["field"] == name
        assert f"Field '{name}'" in response.json()["error"]
    view = client.get(f"/api/campaigns/{campaign}").json()
    assert view["message"] == "Hi {{ name }}", "no bad edit was stored"
    assert [c["id"] for c in client.get("/api/campaigns").json()] == stored, (
        "no bad campaign was stored"
    )


def test_over_budget_errors_name_the_budget(client: httpx.Client, target: CountingTarget) -> None:
    account, audience = make_account(client, target), make_audience(client, 1)
    for message, words in [
        ("{{ 7**10000000 > 1 }}", "over the render budget"),
        ("{{ 'x'|center(10**9) }}", "over the render budget"),
        ("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}", "steps"),
        ("{{ lipsum(n=20000) }}", "cannot be rendered"),
    ]:
        body = {"name": "x", "account_id": account, "audience_id": audience, "limit": 1}
        response = client.post("/api/campaigns", json={**body, "message": message})
        assert response.status_code == 422, response.text
        assert words in response.json()["error"], response.json()


def test_a_memory_address_is_never_shown(client: httpx.Client, target: CountingTarget) -> None:
    account, audience = make_account(client, target), make_audience(client, 1)
    body = {"name": "x", "account_id": account, "audience_id": audience, "limit": 1}
    refused = client.post("/api/campaigns", json={**body, "message": "{{ {}.update }}"})
    assert refused.status_code == 422 and "0x" not in refused.text
    assert refused.json()["field"] == "message"
    for message in ["{{ {}.update }}", "{{ {}.keys|string }}", "{{ cycler(1)|string }}"]:
        preview = client.post("/api/campaigns/preview", json={"message": message})
        assert preview.status_code == 200 and "0x" not in preview.text, preview.text


def test_preview_renders_the_unsubscribe_link(client: httpx.Client, target: CountingTarget) -> None:
    plain = client.post("/api/campaigns/preview", json={"message": "Bye: {{ unsubscribe_url }}"})
    assert plain.status_code == 200, plain.text
    assert plain.json()["error"] is None
    assert plain.json()["rendered"].startswith("Bye: https://")
    audience = make_audience(client, 2)
    sampled = client.post(
        "/api/campaigns/preview",
        json={"message": "{{ name }}: {{ unsubscribe_url }}", "audience_id": audience},
    )
    assert sampled.status_code == 200 and sampled.json()["rendered"].startswith("N0: https://")


def test_one_contact_over_the_budget_fails_alone(
    client: httpx.Client, target: CountingTarget
) -> None:
    audience = make_audience(client, 4)
    # The last contact's note makes the template loop 27 million times (seconds of CPU, in the
    # event loop, before the budget); the others' notes are short.
    contacts = [{"external_id": "heavy", "address": "heavy@a.test", "attributes": {"name": "H"}}]
    contacts[0]["attributes"]["note"] = "n" * 300
    added = client.post(f"/api/audiences/{audience}/contacts", json={"contacts": contacts})
    assert added.status_code == 200, added.text
    message = (
        "Hi {{ name }}{% for a in note|default('') %}{% for b in note %}"
        "{% for c in note %}{% endfor %}{% endfor %}{% endfor %}"
    )
    campaign = make_campaign(client, make_account(client, target), audience, message=message)
    client.post(f"/api/campaigns/{campaign}/start")
    done = wait_for(client, campaign, "completed")
    assert done["sent_count"] == 4 and done["failed_count"] == 1
    assert sorted(d["message"] for d in delivered(target)) == ["Hi N0", "Hi N1", "Hi N2", "Hi N3"]
    report = client.get(f"/api/campaigns/{campaign}/report").json()
    [failure] = report["failures_by_reason"]
    assert failure["count"] == 1
    assert failure["reason"].startswith("template: over the render budget"), failure


def _workers(pid: int, pool_only: bool = False) -> list[psutil.Process]:
    """Child processes of `pid`: the pool's workers, and the resource tracker unless pool_only."""
    children = [p for p in psutil.Process(pid).children(recursive=True) if p.is_running()]
    return [p for p in children if not pool_only or "spawn_main" in " ".join(p.cmdline())]


async def test_the_checker_replaces_a_killed_or_late_worker_and_leaves_none() -> None:
    checker = TemplateChecker(workers=1)
    sample = {"external_id": "s", "address": "s@example.test", "attributes": {"name": "Sam"}}
    before = {p.pid for p in _workers(os.getpid(), pool_only=True)}
    try:
        # A filter: a template that can compute is checked in a worker process.
        assert await checker.preview("Hi {{ name|upper }}", sample) == "Hi SAM"
        [worker] = [p for p in _workers(os.getpid(), pool_only=True) if p.pid not in before]
        worker.kill()
        worker.wait(5)
        assert await checker.preview("Hi {{ name|upper }}", sample) == "Hi SAM", "a fresh pool"
        checker.task_seconds = 0.000_001
        with pytest.raises(InvalidInput, match="took longer than"):
            await checker.check("Hi {{ name|upper }}", "subject", sample)
        checker.task_seconds = 5.0
        await checker.check("Hi {{ name|upper }}", "subject", sample)
    finally:
        await checker.shutdown()
    left = [p for p in _workers(os.getpid(), pool_only=True) if p.pid not in before]
    assert left == [], left


async def test_a_small_plain_template_is_checked_without_a_worker_process() -> None:
    checker = TemplateChecker(workers=1)
    sample = {"external_id": "s", "address": "s@example.test", "attributes": {"name": "Sam"}}
    before = {p.pid for p in _workers(os.getpid(), pool_only=True)}
    try:
        assert await checker.preview("Hi {{ name }}", sample) == "Hi Sam"
        await checker.check("Hi {{ name }}, {{ address }}", "subject", sample)
        with pytest.raises(InvalidInput) as refused:
            await checker.check("Hi {{ nickname }}", "subject", sample)
        assert refused.value.message == (
            "Field 'subject' cannot be rendered for contact 's': 'nickname' is undefined."
        )
        assert [p for p in _workers(os.getpid(), pool_only=True) if p.pid not in before] == []
        assert templates.is_small_plain("x {{ a }}" * 50)
        assert not templates.is_small_plain("x {{ a }}" * 51), "compiling many takes long"
        assert not templates.is_small_plain("x {{ a|upper }}")
    finally:
        await checker.shutdown()


def _previewed_in_workers(service: ServiceProcess) -> list[psutil.Process]:
    """The template workers a preview ran in."""
    with service.client() as client:
        preview = client.post("/api/campaigns/preview", json={"message": "{{ 'Hi'|upper }}"})
        assert preview.json()["rendered"] == "HI"
    assert service.process is not None
    workers = _workers(service.process.pid)
    assert workers, "the preview ran in a worker process"
    return workers


def test_service_stop_leaves_no_template_worker(service: ServiceProcess) -> None:
    workers = _previewed_in_workers(service)
    assert service.signal(signal.SIGTERM) == 0
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


def test_a_killed_service_leaves_no_template_worker(service: ServiceProcess) -> None:
    workers = _previewed_in_workers(service)
    service.kill()  # kill -9: the service stops nothing itself
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], "an orphaned worker outlived the service"
