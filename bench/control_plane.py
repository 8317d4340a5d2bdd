"""Control-plane load: many campaigns generating at once while clients hammer the API.

    .venv/bin/python bench/control_plane.py [--campaigns 100] [--minutes 10] [--db sqlite|postgres]

Starts the real `campaignd serve` and a loopback target in separate processes, runs
`--campaigns` traffic campaigns at `--rpm` each, and meanwhile has `--clients` API clients
read and edit campaigns as fast as they can. Prints API latency percentiles (target: p99 under
100 ms), each campaign's rate as counted at the target, and the server's memory over time
(target: flat during the soak). Everything stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.databases import create_postgres_database, drop_postgres_database
from support.net import free_port
from support.service import ServiceProcess


def _serve_target(
    port: int, counts: dict[str, int], ready: multiprocessing.synchronize.Event
) -> None:
    from aiohttp import web

    local: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        local[request.path] += 1
        return web.Response(text="ok")

    async def publish() -> None:
        while True:
            await asyncio.sleep(0.5)
            counts.update(local)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        ready.set()
        await publish()

    asyncio.run(main())


async def _hammer(
    url: str, ids: list[int], until: float, latencies: list[float], errors: Counter[str]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            campaign = random.choice(ids)
            kind = random.random()
            started = time.perf_counter()
            if kind < 0.4:
                response = await client.get(f"/api/traffic/campaigns/{campaign}/info")
            elif kind < 0.7:
                response = await client.get("/api/traffic/campaigns")
            elif kind < 0.9:
                response = await client.get(f"/api/traffic/campaigns/{campaign}")
            else:
                response = await client.patch(
                    f"/api/traffic/campaigns/{campaign}", json={"name": f"edited-{started}"}
                )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code >= 400:
                errors[str(response.status_code)] += 1


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="campaignd-bench-"))
    db_url = f"sqlite:///{tmp / 'bench.db'}" if args.db == "sqlite" else create_postgres_database()
    manager = multiprocessing.Manager()
    counts = manager.dict()
    ready = multiprocessing.Event()
    target_port = free_port()
    target = multiprocessing.Process(
        target=_serve_target, args=(target_port, counts, ready), daemon=True
    )
    target.start()
    ready.wait(10)
    service = ServiceProcess(db_url, tmp / "service.log").start()
    server = psutil.Process(service.process.pid)  # type: ignore[union-attr]
    try:
        client = httpx.Client(base_url=service.url, timeout=30)
        ids = []
        for i in range(args.campaigns):
            profile = client.post(
                "/api/traffic/profiles",
                json={"name": f"p{i}", "requests": [{"method": "GET", "path": f"/c/{i}"}]},
            ).json()["id"]
            campaign = client.post(
                "/api/traffic/campaigns",
                json={
                    "name": f"c{i}",
                    "target_url": f"http://127.0.0.1:{target_port}",
                    "user_profile_ids": [profile],
                    "requests_per_minute": args.rpm,
                    "duration_minutes": args.minutes + 1,
                    "total_users": 5,
                },
            ).json()["id"]
            ids.append(campaign)
        for campaign in ids:
            client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
            client.post("/api/traffic/generate", json={"campaign_id": campaign})
        started = time.monotonic()
        baseline = dict(counts)
        until = started + args.minutes * 60
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        rss: list[tuple[float, float]] = []

        async def sample_memory() -> None:
            while time.monotonic() < until:
                rss.append((time.monotonic() - started, server.memory_info().rss / 2**20))
                await asyncio.sleep(5)

        async def main() -> None:
            await asyncio.gather(
                sample_memory(),
                *(_hammer(service.url, ids, until, latencies, errors) for _ in range(args.clients)),
            )

        asyncio.run(main())
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        final = dict(counts)
        for campaign in ids:
            client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
    finally:
        service.stop()
        target.terminate()
        if args.db == "postgres":
            drop_postgres_database(db_url)

    expected = args.rpm / 60 * elapsed
    deviations = [
        (final.get(f"/c/{i}", 0) - baseline.get(f"/c/{i}", 0) - expected) / expected * 100
        for i in range(args.campaigns)
    ]
    first_minute = [m for t, m in rss if t <= 60] or [rss[0][1]]
    last_minute = [m for t, m in rss if t >= rss[-1][0] - 60]
    print(
        f"\ncontrol plane: {args.campaigns} traffic campaigns x {args.rpm} rpm, "
        f"{args.clients} API clients, {elapsed:.0f} s, {args.db}"
    )
    print(f"{'figure':<38}{'measured':>14}{'target':>14}")
    rows = [
        ("API requests", f"{len(latencies)}", ""),
        ("API requests/s", f"{len(latencies) / elapsed:.0f}", ""),
        ("API p50 ms", f"{_percentile(latencies, 50):.1f}", ""),
        ("API p99 ms", f"{_percentile(latencies, 99):.1f}", "< 100"),
        ("API max ms", f"{max(latencies):.1f}", ""),
        ("API errors", f"{sum(errors.values())} {dict(errors) or ''}", "0"),
        ("campaign rate error, mean %", f"{statistics.mean(deviations):+.2f}", ""),
        ("campaign rate error, worst %", f"{max(deviations, key=abs):+.2f}", "within 5"),
        ("server RSS first minute MB", f"{statistics.mean(first_minute):.0f}", ""),
        ("server RSS last minute MB", f"{statistics.mean(last_minute):.0f}", "flat"),
        ("server RSS max MB", f"{max(m for _, m in rss):.0f}", ""),
    ]
    for name, value, goal in rows:
        print(f"{name:<38}{value:>14}{goal:>14}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--rpm", type=float, default=60.0, help="each campaign's rate")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length")
    parser.add_argument("--clients", type=int, default=8, help="concurrent API clients")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    os.environ.setdefault("CAMPAIGND_LOG_LEVEL", "WARNING")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
