"""A target that accepts connections and never answers: the generator must stay bounded.

It may hold no more sockets than its per-process budget (so the API keeps answering), stop
within about a second even when saturated, and count every request it started, the ones
still in flight at the stop included, under reasons a person can read.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from campaignd.traffic.connections import ConnectionBudget, port_budget
from campaignd.traffic.generation import Ending, Generation
from campaignd.traffic.plan import LoadPlan, RequestSpec, UserProfile
from campaignd.traffic.worker import EVERY_USER_BUSY, NO_FREE_SLOT, LoadWorker
from support.net import free_port
from support.processes import load_children
from support.traffic_flow import info, make_campaign, make_profile, start

pytestmark = pytest.mark.slow

FD_LIMIT = 1024


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _Silent(asyncio.Protocol):
    def __init__(self, target: SilentTarget) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        with self.target.lock:
            self.target.connections += 1
            self.target.open += 1
            self.target.most_open = max(self.target.most_open, self.target.open)

    def data_received(self, data: bytes) -> None:
        requests = data.count(b"\r\n\r\n")
        with self.target.lock:
            self.target.requests += requests
            self.target.last_request_at = time.monotonic()
        if self.target.answer and self.transport is not None:
            self.transport.write(OK * requests)

    def connection_lost(self, exc: Exception | None) -> None:
        with self.target.lock:
            self.target.open -= 1


class SilentTarget:
    """Accepts every connection, reads every request, never writes a byte (unless `answer`)."""

    def __init__(self, answer: bool = False) -> None:
        self.answer = answer
        self.most_open = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.last_request_at = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SilentTarget:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("silent target did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Silent(self), "127.0.0.1", self.port, backlog=4096)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def settled_requests(self, quiet: float = 0.3, timeout: float = 10.0) -> int:
        """The request count once nothing new has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if time.monotonic() - self.last_request_at >= quiet:
                    return self.requests
            time.sleep(0.05)
        raise AssertionError("the target kept receiving requests")


@pytest.fixture
def silent() -> Iterator[SilentTarget]:
    with SilentTarget() as target:
        yield target


@pytest.fixture
def answering() -> Iterator[SilentTarget]:
    with SilentTarget(answer=True) as target:
        yield target


def _plan(url: str, rate: float, users: int, timeout: float = 30.0) -> LoadPlan:
    profile = UserProfile(1, "hang", (RequestSpec("GET", "/"),))
    return LoadPlan(url, (profile,), users, rate, request_timeout_seconds=timeout)


async def _wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_requests_in_flight_at_stop_are_counted_as_cancelled(silent: SilentTarget) -> None:
    users = 300
    generation = Generation(_plan(silent.url, 1000.0, users), duration_seconds=60.0, workers=1)
    run = asyncio.create_task(generation.run())
    await _wait_until(lambda: silent.requests >= users, timeout=10)
    generation.request_stop()
    stopped_at = time.monotonic()
    assert await asyncio.wait_for(run, 10) is Ending.STOPPED
    assert time.monotonic() - stopped_at < 1.5
    await generation.flush()
    totals = generation.totals
    seen = await asyncio.to_thread(silent.settled_requests)
    assert seen == users
    assert totals.total == seen
    assert totals.failed == seen
    assert totals.errors["cancelled at stop"] == seen
    assert totals.dropped == totals.errors[EVERY_USER_BUSY] > 0


async def test_saturated_worker_processes_stop_within_a_second_and_lose_no_counts(
    silent: SilentTarget,
) -> None:
    # More users than local ports: unbounded, the children fill the port range and every
    # connect() then walks it in the kernel, so a child's loop answered nothing for seconds.
    users = 30_000
    cap = port_budget() // 2 * 2
    plan = _plan(silent.url, 30_000.0, users)
    generation = Generation(plan, duration_seconds=60.0, workers=2, drain_seconds=0.5)
    run = asyncio.create_task(generation.run())
    await _wait_until(lambda: silent.requests >= cap, timeout=20)
    await asyncio.sleep(0.5)  # saturated: every slot waits on the target, arrivals are dropped
    generation.request_stop()
    stopped_at = time.monotonic()
    assert await asyncio.wait_for(run, 15) is Ending.STOPPED
    took = time.monotonic() - stopped_at
    await generation.flush()
    totals = generation.totals
    seen = await asyncio.to_thread(silent.settled_requests)
    assert load_children() == []
    assert took < 1.5, took
    assert seen == silent.connections == cap
    assert totals.total == seen, (totals.total, seen, dict(totals.errors))
    assert totals.errors["cancelled at stop"] == seen
    assert totals.errors[NO_FREE_SLOT] > 0
    assert totals.dropped == totals.errors[NO_FREE_SLOT] + totals.errors[EVERY_USER_BUSY]


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_silent_target_cannot_starve_the_api_of_file_descriptors(
    service_factory: Any, silent: SilentTarget, tmp_path: Path
) -> None:
    service = service_factory(
        f"sqlite:///{tmp_path / 'campaignd.db'}", CAMPAIGND_TRAFFIC_WORKERS="1"
    )
    pid = service.process.pid
    psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    with service.client() as client:
        profile = make_profile(client)
        campaign = make_campaign(
            client,
            silent.url,
            profile,
            requests_per_minute=60_000,
            duration_minutes=5,
            total_users=12_000,
            request_timeout_seconds=1.5,
        )
        start(client, campaign)
        most_fds = 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            most_fds = max(most_fds, _fd_count(pid))
            # A fresh connection each time: the server must still be able to accept one.
            assert httpx.get(service.url + "/healthz", timeout=5).status_code == 200
            assert info(client, campaign)["traffic_generation_active"]
            time.sleep(0.1)
        errors = info(client, campaign)["stats"]["errors"]
        asked = time.monotonic()
        stopped = client.put(
            f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"}
        )
        took = time.monotonic() - asked
        assert stopped.status_code == 200, stopped.text
        done = info(client, campaign)
    assert took < 1.5, took
    assert not done["traffic_generation_active"]
    assert most_fds < FD_LIMIT - 128, most_fds
    assert any(reason.startswith("timeout after 1.5 s") for reason in errors), errors
    assert any("no free connection slot" in reason for reason in errors), errors
    with silent.lock:
        connections = silent.connections
    time.sleep(0.5)
    with silent.lock:
        assert silent.connections == connections  # nothing started after the stop
    assert done["stats"]["requests_total"] == silent.settled_requests()


async def _run_for(worker: LoadWorker, seconds: float) -> None:
    start = time.monotonic()
    worker.set_deadline(start + seconds)
    run = asyncio.create_task(worker.run(drain_seconds=1.0, start_at=start))
    await asyncio.sleep(seconds)
    worker.stop()
    await asyncio.wait_for(run, 5)


async def test_users_beyond_the_budget_share_its_connections(answering: SilentTarget) -> None:
    budget = ConnectionBudget(5)
    worker = LoadWorker(_plan(answering.url, 200.0, users=50), budget=budget)
    await _run_for(worker, 1.0)
    window = worker.cut_window()
    # Without lending only the first 5 users would ever send: 10 % of the arrivals.
    assert answering.settled_requests() == window.succeeded >= 190
    assert window.succeeded + window.dropped == 200
    assert window.failed == 0
    assert answering.most_open <= 5
    assert budget.open == 0


async def test_closed_loop_users_wait_for_a_connection_slot(answering: SilentTarget) -> None:
    budget = ConnectionBudget(3)
    worker = LoadWorker(_plan(answering.url, math.inf, users=20), budget=budget)
    await _run_for(worker, 0.5)
    window = worker.cut_window()
    assert answering.settled_requests() == window.succeeded > 100
    assert window.failed == window.dropped == 0
    assert answering.most_open <= 3
    assert budget.open == 0


async def test_failures_name_their_cause(silent: SilentTarget) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    refused = LoadWorker(_plan(closed, 100.0, users=5), budget=ConnectionBudget(5))
    await _run_for(refused, 0.3)
    assert set(refused.cut_window().errors) == {"connection refused"}
    slow = LoadWorker(_plan(silent.url, 20.0, users=5, timeout=0.2), budget=ConnectionBudget(5))
    await _run_for(slow, 0.8)
    errors = slow.cut_window().errors
    assert errors["timeout after 0.2 s"] > 0
    assert set(errors) <= {"timeout after 0.2 s", "cancelled at stop", EVERY_USER_BUSY}
