"""Shared fixtures: real databases (SQLite and PostgreSQL), real targets, the real server."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from campaignd.services import Services
from campaignd.settings import Settings
from support.databases import (
    create_migrated_postgres_database,
    drop_migrated_template,
    drop_postgres_database,
    postgres_unavailable_reason,
)
from support.service import STOP_TIMEOUT, STOPS, ServiceProcess
from support.smtp import (  # noqa: F401 - real SMTP servers, as fixtures
    smtp_server,
    tls_smtp_servers,
)
from support.target import CountingTarget

TEST_OUTPUT = Path(__file__).parent.parent / "test-output"


@functools.cache
def _postgres_reason() -> str | None:
    return postgres_unavailable_reason()


def _fresh_postgres() -> Iterator[str]:
    reason = _postgres_reason()
    if reason and os.environ.get("CAMPAIGND_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    url = create_migrated_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each kind (SQLite empty, PostgreSQL already migrated); PostgreSQL
    tests skip with a reason when absent."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'campaignd.db'}"
        return
    yield from _fresh_postgres()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like database_url, one of each kind for all the tests of a module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'campaignd.db'}"
        return
    yield from _fresh_postgres()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database only, already migrated."""
    yield from _fresh_postgres()


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    """The service's parts in-process over a real, migrated database (no HTTP)."""
    svc = Services.build(Settings(database_url=database_url, drain_seconds=0.2))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
def target() -> Iterator[CountingTarget]:
    with CountingTarget() as server:
        yield server


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[type]:
    """Start real `campaignd serve` processes; all are stopped at the end of the test.

    `ready=False` only launches one: several then start side by side, each awaited with
    `wait_ready()` (migrate the database with the first one before others start on it)."""
    started: list[ServiceProcess] = []

    def start(database_url: str, ready: bool = True, **kwargs: Any) -> ServiceProcess:
        log = tmp_path / f"service-{len(started)}.log"
        proc = ServiceProcess(database_url, log, **kwargs)
        started.append(proc)
        return proc.start() if ready else proc.launch()

    yield start  # type: ignore[misc]
    for proc in started:
        proc.stop()


@pytest.fixture
def service(service_factory, database_url: str) -> ServiceProcess:  # type: ignore[no-untyped-def]
    return service_factory(database_url)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def module_service(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One real server on each kind of database, shared by the tests of a module that do not
    disturb each other (each works on campaigns of its own, and ends them)."""
    tmp = tmp_path_factory.mktemp("module-service")
    proc = ServiceProcess(module_database_url, tmp / "service.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One real server on a fresh SQLite file, shared by the tests of a module."""
    tmp = tmp_path_factory.mktemp("server")
    proc = ServiceProcess(f"sqlite:///{tmp / 'campaignd.db'}", tmp / "service.log").start()
    yield proc
    proc.stop()


def pytest_sessionfinish() -> None:
    drop_migrated_template()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the campaignd processes took to exit after SIGTERM: a slow stop is a bug."""
    if not STOPS:
        return
    slowest = sorted(STOPS, key=lambda stop: stop.seconds, reverse=True)
    median = slowest[len(slowest) // 2].seconds
    killed = [stop for stop in STOPS if stop.killed]
    terminalreporter.write_sep("=", "campaignd stops (SIGTERM to exit)")
    terminalreporter.write_line(
        f"{len(STOPS)} stops, median {median:.2f} s, {len(killed)} killed after {STOP_TIMEOUT:g} s"
    )
    for stop in slowest[:5]:
        note = " (killed)" if stop.killed else ""
        terminalreporter.write_line(f"{stop.seconds:6.2f}s {stop.test}{note}")
