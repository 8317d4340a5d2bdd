"""Message delivery throughput: campaignd vs the seed's send loop, to a local webhook sink.

    .venv/bin/python bench/messages.py [--contacts 100000] [--db sqlite|postgres|both]

A fast aiohttp sink runs in its own process on 127.0.0.1 and counts deliveries. For each
database, the real `campaignd serve` imports the contacts, then one campaign sends to all of
them with no rate limit; we time start → completed and sample the server's peak RSS. The
peer is the seed's approach, measured in the same run against the same sink: a loop that
keeps every sent id in a Python set and POSTs one recipient after another.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.databases import create_postgres_database, drop_postgres_database
from support.net import free_port
from support.service import ServiceProcess

IMPORT_CHUNK = 10_000


def _sink(
    port: int,
    counter: multiprocessing.sharedctypes.Synchronized,
    ready: multiprocessing.synchronize.Event,
) -> None:  # type: ignore[name-defined]
    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    local = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal local
        await request.read()
        local += 1
        return web.Response(text="ok")

    async def publish() -> None:
        nonlocal local
        while True:
            await asyncio.sleep(0.2)
            with counter.get_lock():
                counter.value += local
            local = 0

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        ready.set()
        await publish()

    asyncio.run(main())


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run_campaignd(db: str, contacts: int, sink_url: str, tmp: Path) -> dict[str, float]:
    url = (
        f"sqlite:///{tmp / f'bench-{time.time_ns()}.db'}"
        if db == "sqlite"
        else create_postgres_database()
    )
    service = ServiceProcess(url, tmp / f"service-{db}.log", CAMPAIGND_LOG_LEVEL="WARNING").start()
    try:
        client = httpx.Client(base_url=service.url, timeout=120)
        account = client.post(
            "/api/accounts",
            json={"name": "sink", "channel": "webhook", "config": {"url": sink_url}},
        ).json()["id"]
        audience = client.post("/api/audiences", json={"name": "bench"}).json()["id"]
        started = time.monotonic()
        for first in range(0, contacts, IMPORT_CHUNK):
            rows = [
                {
                    "external_id": f"c{i}",
                    "address": f"c{i}@bench.test",
                    "attributes": {"name": f"N{i}"},
                }
                for i in range(first, min(contacts, first + IMPORT_CHUNK))
            ]
            client.post(
                f"/api/audiences/{audience}/contacts", json={"contacts": rows}
            ).raise_for_status()
        imported = time.monotonic() - started
        campaign = client.post(
            "/api/campaigns",
            json={
                "name": "bench",
                "account_id": account,
                "audience_id": audience,
                "message": "Hello {{ name }}",
                "limit": contacts,
            },
        ).json()["id"]
        rss = PeakRss(service.process.pid)  # type: ignore[union-attr]
        started = time.monotonic()
        client.post(f"/api/campaigns/{campaign}/start").raise_for_status()
        while True:
            view = client.get(f"/api/campaigns/{campaign}").json()
            if view["status"] == "completed" and not view["sending"]:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        return {
            "sent": view["sent_count"],
            "failed": view["failed_count"],
            "per_second": view["sent_count"] / elapsed,
            "seconds": elapsed,
            "peak_rss_mb": rss.stop(),
            "import_per_second": contacts / imported,
        }
    finally:
        service.stop()
        if db == "postgres":
            drop_postgres_database(url)


async def _seed_loop(sink_url: str, contacts: int) -> float:
    """The seed's approach: every sent id in a set, one POST after another."""
    sent: set[str] = set()
    recipients = [(f"s{i}", f"s{i}@bench.test") for i in range(contacts)]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for external_id, address in recipients:
            if external_id in sent:
                continue
            async with session.post(
                sink_url,
                json={
                    "campaign_id": 0,
                    "recipient": {"external_id": external_id, "address": address},
                    "message": f"Hello {external_id}",
                },
            ) as response:
                await response.read()
            sent.add(external_id)
    return contacts / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--peer-contacts", type=int, default=10_000, help="the seed loop is slow")
    args = parser.parse_args()

    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    port = free_port()
    sink = multiprocessing.Process(target=_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    ready.wait(10)
    sink_url = f"http://127.0.0.1:{port}/hook"
    tmp = Path(tempfile.mkdtemp(prefix="campaignd-bench-"))
    try:
        peer = asyncio.run(_seed_loop(sink_url, args.peer_contacts))
        results = {}
        for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
            results[db] = run_campaignd(db, args.contacts, sink_url, tmp)
    finally:
        sink.terminate()

    print(f"\nmessage delivery to a loopback webhook sink, {args.contacts} contacts\n")
    print(f"{'sender':<34}{'deliveries/s':>14}{'x seed':>9}{'peak RSS MB':>13}{'target/s':>10}")
    print(f"{'seed loop (set of ids, 1 by 1)':<34}{peer:>14.0f}{1.0:>9.1f}{'':>13}{'':>10}")
    targets = {"sqlite": 2000, "postgres": 5000}
    for db, r in results.items():
        print(
            f"{'campaignd on ' + db:<34}{r['per_second']:>14.0f}{r['per_second'] / peer:>9.1f}"
            f"{r['peak_rss_mb']:>13.0f}{targets[db]:>10}"
        )
    for db, r in results.items():
        print(
            f"  {db}: sent {r['sent']:.0f}, failed {r['failed']:.0f} in {r['seconds']:.1f} s; "
            f"contacts imported at {r['import_per_second']:.0f}/s"
        )


if __name__ == "__main__":
    main()
