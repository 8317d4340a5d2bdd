"""Command line: `campaignd serve`, `campaignd migrate`, `campaignd traffic run`."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
import resource
import signal
import sys
from pathlib import Path

import typer

from campaignd import logs
from campaignd.settings import Settings
from campaignd.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
traffic_app = typer.Typer(no_args_is_help=True, help="Traffic campaigns from the command line.")
app.add_typer(traffic_app, name="traffic")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _raise_open_file_limit(connections: int) -> None:
    """Room for the connection cap plus the service's own files, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, ceiling), hard))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8080, help="Port to bind."),
    database_url: str = typer.Option(
        None, help="sqlite:///file.db or postgresql://... (env CAMPAIGND_DATABASE_URL)."
    ),
    api_token: str = typer.Option(None, help="Bearer token for the API (env CAMPAIGND_API_TOKEN)."),
    no_engine: bool = typer.Option(
        False,
        "--no-engine",
        help="Serve the API and UI only; campaigns run on `campaignd worker` nodes.",
    ),
    name: str = typer.Option(None, help="This node's name in the cluster (default host-role-pid)."),
) -> None:
    """Serve the API and the web UI (and run campaigns, unless --no-engine)."""
    import uvicorn

    from campaignd.api.app import create_app
    from campaignd.api.edge import GuardedHttpProtocol

    settings = _settings(
        database_url=database_url,
        api_token=api_token,
        host=host,
        port=port,
        node_name=name,
        engine=False if no_engine else None,
    )
    logs.configure(settings.log_level)
    if settings.engine:
        _refuse_a_second_sqlite_engine(settings)
    if not _is_loopback(host) and not settings.api_token:
        typer.echo(
            f"Refusing to bind {host} without an API token: set CAMPAIGND_API_TOKEN or "
            "--api-token (only loopback addresses may be served without one).",
            err=True,
        )
        raise typer.Exit(2)
    _raise_open_file_limit(settings.max_connections)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, freeze_heap=True),
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=10,
            http=GuardedHttpProtocol.for_settings(settings),
        )
    )
    # uvicorn re-raises the signal it caught once it has shut down; the contract is a clean
    # exit 0 after the drain, so the re-raised signal lands on a handler that ignores it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:
        raise typer.Exit(1)


def _refuse_a_second_sqlite_engine(settings: Settings) -> None:
    from campaignd.engine.engine_lock import EngineAlreadyRunning, EngineLock
    from campaignd.settings import async_database_url

    if not async_database_url(settings.database_url).startswith("sqlite"):
        return
    lock = EngineLock(settings.database_url)
    try:
        lock.acquire()
    except EngineAlreadyRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    lock.release()


@app.command()
def worker(
    database_url: str = typer.Option(
        None, help="postgresql://... shared with the other nodes (env CAMPAIGND_DATABASE_URL)."
    ),
    name: str = typer.Option(None, help="This node's name in the cluster (default host-role-pid)."),
    nice: int = typer.Option(
        None,
        min=0,
        max=19,
        help="Raise this process's nice value by N (env CAMPAIGND_WORKER_NICE, default 0): a "
        "worker on the API's machine then leaves the CPU to the API when both want it.",
    ),
) -> None:
    """Run campaigns for the cluster (no API): one more node on a shared PostgreSQL."""
    from campaignd.settings import async_database_url

    settings = _settings(database_url=database_url, node_name=name, engine=True, worker_nice=nice)
    logs.configure(settings.log_level)
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    if not async_database_url(settings.database_url).startswith("postgresql"):
        typer.echo(
            "error: `campaignd worker` needs PostgreSQL (CAMPAIGND_DATABASE_URL=postgresql://"
            f"...); {settings.database_url} is SQLite, which allows one engine: run "
            "`campaignd serve` alone instead.",
            err=True,
        )
        raise typer.Exit(2)
    _event_loop_runner()(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from campaignd.logs import log_event
    from campaignd.services import Services

    svc = Services.build(settings, role="worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await svc.start()
    gc.freeze()  # as `serve` does (create_app): full collections skip the start-up heap
    log_event("worker.started", node=svc.node.name if svc.node else None)
    try:
        await stop.wait()
    finally:
        await svc.stop()
        log_event("worker.stopped")


@app.command()
def migrate(
    database_url: str = typer.Option(None, help="Database URL (env CAMPAIGND_DATABASE_URL)."),
) -> None:
    """Create or upgrade the database schema."""
    settings = _settings(database_url=database_url)

    async def _run() -> None:
        db = Database(settings.database_url)
        await db.migrate()
        await db.close()

    asyncio.run(_run())
    typer.echo(f"database ready: {settings.database_url}")


@traffic_app.command("run")
def traffic_run(
    scenario: Path = typer.Argument(..., help="Scenario YAML (see examples/scenario.yaml)."),
    json_out: Path = typer.Option(None, "--json", help="Write summary and series as JSON."),
    csv_out: Path = typer.Option(None, "--csv", help="Write the per-second series as CSV."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress bar."),
) -> None:
    """Run one scenario headless (no server, no database).

    Exit codes: 0 all thresholds hold, 1 a threshold failed, 2 bad scenario or target,
    3 generation failed.
    """
    from rich.console import Console

    from campaignd.traffic import headless
    from campaignd.traffic.scenario import ScenarioError, load_scenario

    err = Console(stderr=True)
    out = Console()
    try:
        loaded = load_scenario(scenario)
        asyncio.run(headless.check_target(loaded, Settings()))
    except ScenarioError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    live = None if quiet else headless.LiveProgress(err, loaded.duration_seconds)

    async def _run() -> headless.RunResult:
        if live is None:
            return await headless.run_scenario(loaded)
        with live.progress:
            return await headless.run_scenario(loaded, on_window=live.update)

    try:
        result = _event_loop_runner()(_run())
    except Exception as exc:
        err.print(f"[red]generation failed:[/] {exc}", highlight=False)
        raise typer.Exit(3) from None
    out.print(headless.summary_table(result))
    if json_out is not None:
        headless.export_json(result, json_out)
    if csv_out is not None:
        headless.export_csv(result, csv_out)
    if not result.passed:
        failed = [v.threshold.text for v in result.verdicts if not v.passed]
        err.print(f"[red]thresholds failed:[/] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)


@traffic_app.command("import-har")
def traffic_import_har(
    har_file: Path = typer.Argument(..., help="A HAR recording (browser dev tools: Save as HAR)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Scenario YAML to write (default: the HAR's name, .yaml)."
    ),
    include_host: list[str] = typer.Option(
        None, "--include-host", help="Keep requests to this host only (repeatable)."
    ),
    include_static: bool = typer.Option(
        False, "--include-static", help="Keep scripts, styles, images, fonts and media too."
    ),
    users: int = typer.Option(10, help="Virtual users in the scenario."),
    rpm: float = typer.Option(600.0, help="Requests per minute in the scenario."),
    duration_minutes: float = typer.Option(1.0, help="Duration in the scenario."),
) -> None:
    """Write a journey scenario with one step per recorded request (exit 2 on a bad file)."""
    import yaml

    from campaignd.traffic.har import HarError, har_to_scenario, read_har

    try:
        scenario, notes = har_to_scenario(
            read_har(har_file),
            include_hosts=include_host or None,
            include_static=include_static,
            name=har_file.stem or "recording",
            users=users,
            rpm=rpm,
            duration_minutes=duration_minutes,
        )
    except HarError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    target = output or har_file.with_suffix(".yaml")
    target.write_text(yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True))
    steps = len(scenario["profiles"][0]["steps"])
    typer.echo(f"wrote {target}: {steps} steps against {scenario['target']}")
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def _event_loop_runner():  # type: ignore[no-untyped-def]
    """uvloop where installed: the in-process worker shares this loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    return uvloop.run


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
