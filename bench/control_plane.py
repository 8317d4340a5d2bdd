"""Control-plane load: many campaigns generating and sending at once while clients hammer the API.

    .venv/bin/python bench/control_plane.py [--campaigns 100] [--messages 50] [--minutes 10]
                                            [--db sqlite|postgres]

Starts the real `campaignd serve` and a loopback target (which is also the webhook sink) in
separate processes, runs `--campaigns` campaigns at `--rpm` each (`--messages` of them are
message campaigns sending to a webhook, the rest traffic campaigns), and meanwhile has
`--clients` API clients read and edit campaigns as fast as they can. Prints API latency
percentiles (target: p99 under 100 ms), each campaign's rate as counted at the target, and the
server's memory over time (target: flat during the soak). Everything stays on 127.0.0.1 and
stops by itself.
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

import aiohttp
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
    url: str,
    ids: list[int],
    message_ids: list[int],
    until: float,
    latencies: list[float],
    errors: Counter[str],
    by_route: dict[str, list[float]],
) -> None:
    """One closed-loop client. aiohttp, not httpx: httpx spends ~1.8 ms of CPU per request,
    which on a 2-core machine is taken from the server being measured."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as client:
        while time.monotonic() < until:
            kind = random.random()
            json_body: dict[str, str] | None = None
            if message_ids and random.random() < len(message_ids) / (len(ids) + len(message_ids)):
                campaign = random.choice(message_ids)
                if kind < 0.5:
                    method, path, route = "GET", f"/api/campaigns/{campaign}", "/api/campaigns/{id}"
                elif kind < 0.7:
                    method, path, route = "GET", "/api/campaigns", "/api/campaigns"
                elif kind < 0.9:
                    method, path, route = "GET", f"/campaign_data/{campaign}", "/campaign_data/{id}"
                else:
                    method, path = "PATCH", f"/api/campaigns/{campaign}"
                    route = "/api/campaigns/{id}"
                    json_body = {"message": f"Hi {{{{ name }}}} {kind}"}
            else:
                campaign = random.choice(ids)
                if kind < 0.4:
                    method, path = "GET", f"/api/traffic/campaigns/{campaign}/info"
                    route = "/api/traffic/campaigns/{id}/info"
                elif kind < 0.7:
                    method, path, route = "GET", "/api/traffic/campaigns", "/api/traffic/campaigns"
                elif kind < 0.9:
                    method, path = "GET", f"/api/traffic/campaigns/{campaign}"
                    route = "/api/traffic/campaigns/{id}"
                else:
                    method, path = "PATCH", f"/api/traffic/campaigns/{campaign}"
                    route = "/api/traffic/campaigns/{id}"
                    json_body = {"name": f"edited-{kind}"}
            started = time.perf_counter()
            async with client.request(method, path, json=json_body) as response:
                await response.read()
                status = response.status
            elapsed = (time.perf_counter() - started) * 1000
            latencies.append(elapsed)
            by_route.setdefault(f"{method} {route}", []).append(elapsed)
            if status >= 400:
                errors[str(status)] += 1


def _message_campaigns(
    client: httpx.Client, target_port: int, args: argparse.Namespace
) -> list[int]:
    """`--messages` campaigns, each to its own webhook path, over one audience big enough."""
    if not args.messages:
        return []
    audience = client.post("/api/audiences", json={"name": "bench"}).json()["id"]
    size = int(args.rpm * (args.minutes + 1)) + 10
    for start in range(0, size, 5000):
        contacts = [
            {"external_id": f"u{i}", "address": f"u{i}@bench.test", "attributes": {"name": f"N{i}"}}
            for i in range(start, min(size, start + 5000))
        ]
        client.post(f"/api/audiences/{audience}/contacts", json={"contacts": contacts})
    ids = []
    for i in range(args.messages):
        account = client.post(
            "/api/accounts",
            json={
                "name": f"hook{i}",
                "channel": "webhook",
                "config": {"url": f"http://127.0.0.1:{target_port}/m/{i}"},
            },
        ).json()["id"]
        campaign = client.post(
            "/api/campaigns",
            json={
                "name": f"m{i}",
                "account_id": account,
                "audience_id": audience,
                "message": "Hi {{ name }}",
                "limit": size,
                "rate_per_minute": args.rpm,
            },
        ).json()["id"]
        ids.append(campaign)
    return ids


def _traffic_campaigns(
    client: httpx.Client, target_port: int, count: int, rpm: float, minutes: float
) -> list[int]:
    """`count` traffic campaigns (drafts), each with its own profile and path on the target."""
    ids = []
    for i in range(count):
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
                "requests_per_minute": rpm,
                "duration_minutes": minutes + 1,
                "total_users": 5,
            },
        ).json()["id"]
        ids.append(campaign)
    return ids


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
        message_ids = _message_campaigns(client, target_port, args)
        ids = _traffic_campaigns(
            client, target_port, args.campaigns - args.messages, args.rpm, args.minutes
        )
        for campaign in ids:
            client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
            client.post("/api/traffic/generate", json={"campaign_id": campaign})
        for campaign in message_ids:
            client.post(f"/api/campaigns/{campaign}/start")
        started = time.monotonic()
        baseline = dict(counts)
        until = started + args.minutes * 60
        latencies: list[float] = []
        by_route: dict[str, list[float]] = {}
        errors: Counter[str] = Counter()
        rss: list[tuple[float, float]] = []

        async def sample_memory() -> None:
            while time.monotonic() < until:
                rss.append((time.monotonic() - started, server.memory_info().rss / 2**20))
                await asyncio.sleep(5)

        async def main() -> None:
            await asyncio.gather(
                sample_memory(),
                *(
                    _hammer(service.url, ids, message_ids, until, latencies, errors, by_route)
                    for _ in range(args.clients)
                ),
            )

        asyncio.run(main())
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        final = dict(counts)
        for campaign in ids:
            client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
        for campaign in message_ids:
            client.post(f"/api/campaigns/{campaign}/stop")
    finally:
        service.stop()
        target.terminate()
        if args.db == "postgres":
            drop_postgres_database(db_url)

    expected = args.rpm / 60 * elapsed
    paths = [f"/c/{i}" for i in range(len(ids))] + [f"/m/{i}" for i in range(len(message_ids))]
    deviations = {
        path: (final.get(path, 0) - baseline.get(path, 0) - expected) / expected * 100
        for path in paths
    }
    traffic_dev = [deviations[p] for p in paths if p.startswith("/c/")]
    message_dev = [deviations[p] for p in paths if p.startswith("/m/")]
    first_minute = [m for t, m in rss if t <= 60] or [rss[0][1]]
    last_minute = [m for t, m in rss if t >= rss[-1][0] - 60]
    print(
        f"\ncontrol plane: {len(ids)} traffic + {len(message_ids)} message campaigns"
        f" x {args.rpm} rpm, "
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
        *(
            (f"{label} rate error, mean %", f"{statistics.mean(values):+.2f}", "")
            for label, values in (("traffic", traffic_dev), ("message", message_dev))
            if values
        ),
        *(
            (f"{label} rate error, worst %", f"{max(values, key=abs):+.2f}", "within 5")
            for label, values in (("traffic", traffic_dev), ("message", message_dev))
            if values
        ),
        ("server RSS first minute MB", f"{statistics.mean(first_minute):.0f}", ""),
        ("server RSS last minute MB", f"{statistics.mean(last_minute):.0f}", "flat"),
        ("server RSS max MB", f"{max(m for _, m in rss):.0f}", ""),
    ]
    for name, value, goal in rows:
        print(f"{name:<38}{value:>14}{goal:>14}")
    per_minute = [
        statistics.mean([m for t, m in rss if minute * 60 <= t < (minute + 1) * 60] or [0.0])
        for minute in range(int(rss[-1][0] // 60) + 1)
    ]
    print("server RSS by minute MB: " + " ".join(f"{m:.0f}" for m in per_minute if m))
    print(f"\n{'route':<44}{'calls':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for route, values in sorted(by_route.items()):
        print(
            f"{route:<44}{len(values):>8}{_percentile(values, 50):>10.1f}"
            f"{_percentile(values, 99):>10.1f}"
        )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--messages", type=int, default=50, help="how many are message campaigns")
    parser.add_argument("--rpm", type=float, default=60.0, help="each campaign's rate")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length")
    parser.add_argument(
        "--clients", type=int, default=1, help="concurrent API clients, each as fast as it can"
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    os.environ.setdefault("CAMPAIGND_LOG_LEVEL", "WARNING")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
