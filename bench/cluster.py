"""Cluster benchmark: deliveries/s by node count, and the API's latency with the engine out.

    .venv/bin/python bench/cluster.py [--contacts 20000] [--seconds 60] [--clients 8]
                                      [--skip-deliveries] [--skip-api] [--setup serve|no-engine]
                                      [--by-route] [--worker-nice N] [--route-cpu N]

On one fresh PostgreSQL database per run, with a loopback webhook sink in its own process:

1. message deliveries/s of one unpaced campaign to `--contacts` recipients, three ways:
   the embedded engine (`serve`), `serve --no-engine` + 1 `worker`, and + 2 `worker`s
   (the campaign split into 2 shards); counted at the sink, start to last delivery;
2. API latency (p50/p99) and requests/s with `--clients` closed-loop clients for
   `--seconds` while 100 campaigns run (50 traffic, 50 message, 60/min each, as in
   bench/control_plane.py), engine in the API process (`serve`) vs `serve --no-engine` + 2
   workers.

`--route-cpu N` instead measures each route's API CPU per request (one client, N requests
each, 100 campaigns running, the API's idle CPU taken off).

Everything stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_plane import (
    _hammer,
    _message_campaigns,
    _percentile,
    _serve_target,
    _traffic_campaigns,
)
from messages import cpu_seconds, postgres_pids

from support.databases import create_postgres_database, drop_postgres_database
from support.net import free_port
from support.service import ServiceProcess


class Sink:
    """The control-plane benchmark's counting server, in its own process."""

    def __enter__(self) -> Sink:
        self.manager = multiprocessing.Manager()
        self.counts = self.manager.dict()
        ready = multiprocessing.Event()
        self.port = free_port()
        self.process = multiprocessing.Process(
            target=_serve_target, args=(self.port, self.counts, ready), daemon=True
        )
        self.process.start()
        ready.wait(10)
        return self

    def total(self, prefix: str = "") -> int:
        return sum(v for k, v in dict(self.counts).items() if k.startswith(prefix))

    def __exit__(self, *_: Any) -> None:
        self.process.terminate()
        self.manager.shutdown()


WORKER_NICE = 0  # --worker-nice: CAMPAIGND_WORKER_NICE for the workers


def start_nodes(
    url: str, tmp: Path, workers: int, engine_in_api: bool, nodes: list[ServiceProcess]
) -> None:
    """Start the API node and the workers into `nodes` (so a failed start is cleaned up)."""
    env = {"CAMPAIGND_LOG_LEVEL": "WARNING"}
    api_args: tuple[str, ...] = () if engine_in_api else ("--no-engine",)
    api = ServiceProcess(url, tmp / "api.log", args=api_args, name="api", **env)
    nodes.append(api)
    api.start()
    for i in range(workers):
        # INFO: the support's readiness check waits for the worker's "node.started" line.
        worker_env = {"CAMPAIGND_LOG_LEVEL": "INFO", "CAMPAIGND_WORKER_NICE": str(WORKER_NICE)}
        node = ServiceProcess(url, tmp / f"w{i}.log", command="worker", name=f"w{i}", **worker_env)
        nodes.append(node)
        node.start()


def with_cluster(
    workers: int,
    engine_in_api: bool,
    body: Callable[[httpx.Client, Sink], Any],
    nodes: list[ServiceProcess] | None = None,
) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="campaignd-cluster-bench-"))
    url = create_postgres_database()
    nodes = [] if nodes is None else nodes
    try:
        with Sink() as sink:
            start_nodes(url, tmp, workers, engine_in_api, nodes)
            with httpx.Client(base_url=nodes[0].url, timeout=60) as client:
                return body(client, sink)
    finally:
        for node in nodes:
            node.stop()
        drop_postgres_database(url)


def deliveries_per_second(contacts: int, workers: int, engine_in_api: bool) -> float:
    def body(client: httpx.Client, sink: Sink) -> float:
        audience = client.post("/api/audiences", json={"name": "bench"}).json()["id"]
        for start in range(0, contacts, 5000):
            rows = [
                {"external_id": f"u{i}", "address": f"u{i}@bench.test"}
                for i in range(start, min(contacts, start + 5000))
            ]
            client.post(f"/api/audiences/{audience}/contacts", json={"contacts": rows})
        account = client.post(
            "/api/accounts",
            json={
                "name": "hook",
                "channel": "webhook",
                "config": {"url": f"http://127.0.0.1:{sink.port}/hook"},
            },
        ).json()["id"]
        campaign = client.post(
            "/api/campaigns",
            json={
                "name": "bulk",
                "account_id": account,
                "audience_id": audience,
                "message": "Hi {{ external_id }}",
                "limit": contacts,
                "shards": max(1, workers),
            },
        ).json()["id"]
        started = time.monotonic()
        client.post(f"/api/campaigns/{campaign}/start")
        while sink.total("/hook") < contacts and time.monotonic() - started < 600:
            time.sleep(0.05)
        return contacts / (time.monotonic() - started)

    return float(with_cluster(workers, engine_in_api, body))


def start_100_campaigns(
    client: httpx.Client, sink: Sink, seconds: float
) -> tuple[list[int], list[int]]:
    """50 traffic and 50 message campaigns at 60/min each, running; their ids."""
    args = argparse.Namespace(messages=50, rpm=60.0, minutes=seconds / 60 + 1)
    message_ids = _message_campaigns(client, sink.port, args)
    ids = _traffic_campaigns(client, sink.port, 50, 60.0, seconds / 60)
    for campaign in ids:
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
        client.post("/api/traffic/generate", json={"campaign_id": campaign})
    for campaign in message_ids:
        client.post(f"/api/campaigns/{campaign}/start")
    time.sleep(3.0)  # every campaign taken by a node
    return ids, message_ids


def api_under_load(
    seconds: float, clients: int, workers: int, engine_in_api: bool
) -> dict[str, Any]:
    nodes: list[ServiceProcess] = []

    def body(client: httpx.Client, sink: Sink) -> dict[str, Any]:
        ids, message_ids = start_100_campaigns(client, sink, seconds)
        pids = ", ".join(f"{n.name} {n.process.pid}" for n in nodes if n.process)
        print(f"    load starts ({pids})", flush=True)
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        by_route: dict[str, list[float]] = {}
        groups = {
            "API": [n.process.pid for n in nodes[:1] if n.process],
            "workers": [n.process.pid for n in nodes[1:] if n.process],
            "PostgreSQL": postgres_pids(),
            "sink": [sink.process.pid] if sink.process.pid else [],
            "clients": [os.getpid()],
        }
        cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        started = time.monotonic()
        before = sink.total()
        until = started + seconds

        async def main() -> None:
            await asyncio.gather(
                *(
                    _hammer(
                        str(client.base_url), ids, message_ids, until, latencies, errors, by_route
                    )
                    for _ in range(clients)
                )
            )

        asyncio.run(main())
        elapsed = time.monotonic() - started
        delivered = sink.total() - before
        busy = {
            name: (cpu_seconds(pids) - cpu_before[name]) / elapsed for name, pids in groups.items()
        }
        api_cpu_ms = busy["API"] * elapsed / max(1, len(latencies)) * 1000
        return {
            "cores busy": ", ".join(f"{name} {value:.2f}" for name, value in busy.items()),
            "API CPU per request (ms)": api_cpu_ms,
            "requests/s": len(latencies) / elapsed,
            "p50": _percentile(latencies, 50),
            "p99": _percentile(latencies, 99),
            "errors": sum(errors.values()),
            "campaign rate at sink (req/s, asked 100)": delivered / elapsed,
            "by_route": {
                route: (len(values), _percentile(values, 50), _percentile(values, 99))
                for route, values in sorted(by_route.items())
            },
        }

    return dict(with_cluster(workers, engine_in_api, body, nodes))


def api_cpu_by_route(requests: int, workers: int) -> dict[str, tuple[float, float]]:
    """With 100 campaigns running, each route's API CPU per request and its p50, asked by one
    client `requests` times in a row; the API's idle CPU over the same time is taken off."""
    nodes: list[ServiceProcess] = []

    def body(client: httpx.Client, sink: Sink) -> dict[str, tuple[float, float]]:
        ids, message_ids = start_100_campaigns(client, sink, 60.0 + requests / 20)
        api = [nodes[0].process.pid] if nodes[0].process else []
        idle_started, idle_cpu = time.monotonic(), cpu_seconds(api)
        time.sleep(3.0)
        idle = (cpu_seconds(api) - idle_cpu) / (time.monotonic() - idle_started)
        routes: list[tuple[str, Callable[[int], str], list[int], dict[str, str] | None]] = [
            ("GET /api/campaigns/{id}", lambda c: f"/api/campaigns/{c}", message_ids, None),
            ("GET /api/campaigns", lambda c: "/api/campaigns", message_ids, None),
            ("GET /campaign_data/{id}", lambda c: f"/campaign_data/{c}", message_ids, None),
            (
                "PATCH /api/campaigns/{id}",
                lambda c: f"/api/campaigns/{c}",
                message_ids,
                {"message": "Hi {{ name }} again"},
            ),
            (
                "GET /api/traffic/campaigns/{id}/info",
                lambda c: f"/api/traffic/campaigns/{c}/info",
                ids,
                None,
            ),
            ("GET /api/traffic/campaigns", lambda c: "/api/traffic/campaigns", ids, None),
            ("GET /api/traffic/campaigns/{id}", lambda c: f"/api/traffic/campaigns/{c}", ids, None),
            (
                "PATCH /api/traffic/campaigns/{id}",
                lambda c: f"/api/traffic/campaigns/{c}",
                ids,
                {"name": "edited"},
            ),
        ]
        figures: dict[str, tuple[float, float]] = {}

        async def ask(
            route: str,
            path: Callable[[int], str],
            campaigns: list[int],
            json_body: dict[str, str] | None,
        ) -> None:
            method = route.split()[0]
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(base_url=str(client.base_url), timeout=timeout) as s:
                latencies = []
                started, cpu = time.monotonic(), cpu_seconds(api)
                for i in range(requests):
                    asked = time.perf_counter()
                    async with s.request(
                        method, path(campaigns[i % len(campaigns)]), json=json_body
                    ) as response:
                        await response.read()
                    latencies.append((time.perf_counter() - asked) * 1000)
                spent = cpu_seconds(api) - cpu - idle * (time.monotonic() - started)
                figures[route] = (spent / requests * 1000, _percentile(latencies, 50))

        for route in routes:
            asyncio.run(ask(*route))
        return figures

    return dict(with_cluster(workers, False, body, nodes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-deliveries", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument(
        "--setup",
        choices=("both", "serve", "no-engine"),
        default="both",
        help="Which API set-up(s) to measure: the engine in the API process, or out of it.",
    )
    parser.add_argument(
        "--by-route", action="store_true", help="Also print each route's count, p50 and p99."
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="Start the workers with CAMPAIGND_WORKER_NICE=N (they yield the CPU to the API).",
    )
    parser.add_argument(
        "--route-cpu",
        type=int,
        default=0,
        metavar="N",
        help="Instead: each route's API CPU per request, asked N times by one client.",
    )
    args = parser.parse_args()
    global WORKER_NICE
    WORKER_NICE = args.worker_nice
    nice = f", workers at nice +{args.worker_nice}" if args.worker_nice else ""
    print(f"cluster bench on PostgreSQL, {os.cpu_count()} cores{nice}")
    if args.route_cpu:
        print(f"\nAPI CPU per request by route, one client, {args.route_cpu} requests each")
        for route, (cpu_ms, p50) in api_cpu_by_route(args.route_cpu, 2).items():
            print(f"  {route:<44}CPU {cpu_ms:5.2f} ms  p50 {p50:6.2f} ms", flush=True)
        return
    if not args.skip_deliveries:
        print(f"\nmessage deliveries/s, one unpaced campaign of {args.contacts} to a webhook")
        for label, workers, embedded in (
            ("embedded engine (serve)", 0, True),
            ("serve --no-engine + 1 worker", 1, False),
            ("serve --no-engine + 2 workers, 2 shards", 2, False),
        ):
            rate = deliveries_per_second(args.contacts, workers, embedded)
            print(f"  {label:<44}{rate:>10.0f} /s", flush=True)
    if not args.skip_api:
        print(f"\nAPI with {args.clients} clients for {args.seconds:.0f} s while 100 campaigns run")
        for label, workers, embedded in (
            ("engine in the API process (serve)", 0, True),
            ("serve --no-engine + 2 workers", 2, False),
        ):
            if args.setup != "both" and (args.setup == "serve") != embedded:
                continue
            figures = api_under_load(args.seconds, args.clients, workers, embedded)
            routes = figures.pop("by_route")
            shown = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
            )
            print(f"  {label:<36} {shown}", flush=True)
            if args.by_route:
                for route, (count, p50, p99) in routes.items():
                    print(f"      {route:<44}{count:>7}  p50 {p50:7.1f}  p99 {p99:7.1f}")


if __name__ == "__main__":
    main()
