"""Message delivery throughput: campaignd vs a plain asyncio sender, to a local webhook sink.

    .venv/bin/python bench/messages.py [--contacts 100000] [--db sqlite|postgres|both]
                                       [--profile]

A fast aiohttp sink runs in its own process on 127.0.0.1 and counts deliveries. For each
database, the real `campaignd serve` imports the contacts, then one campaign sends to all of
them with no rate limit, with tracked links on (the message carries a link, rewritten to a
signed redirect per recipient) and the delivery log written as always; we time start →
completed and sample the server's peak RSS.

The peers, measured in the same run against the same sink:
- the plain sender: asyncio + aiohttp (uvloop, like the server), the same concurrency
  (CAMPAIGND_SEND_CONCURRENCY, 64) and the same JSON body, with no ledger, no pacing and no
  durability: what this machine can do without keeping any promise. Target: campaignd at
  >= 0.7x of it on each database.
- the seed's loop: every sent id in a Python set, one POST after another.

--profile samples the server with py-spy while it sends and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.databases import create_postgres_database, drop_postgres_database
from support.net import free_port
from support.service import ServiceProcess

IMPORT_CHUNK = 10_000
CONCURRENCY = 64  # campaignd's default CAMPAIGND_SEND_CONCURRENCY
LINK = "https://shop.example/spring-sale?utm_source=campaignd"
MESSAGE = "Hello {{ name }}, our spring sale is on: " + LINK


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
            await asyncio.sleep(0.01)
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


class Timeline:
    """When the sink saw the first and the last of `expected` deliveries (polled every 5 ms)."""

    def __init__(self, counter: Any, expected: int) -> None:
        self.counter = counter
        self.base = counter.value
        self.expected = expected
        self.started = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while time.monotonic() - self.started < 600:
            seen = self.counter.value - self.base
            now = time.monotonic() - self.started
            if seen and self.first is None:
                self.first = now
            if seen >= self.expected:
                self.last = now
                return
            time.sleep(0.005)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += sum(psutil.Process(pid).cpu_times()[:2])
    return total


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process here (other work on the server is counted too)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


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


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy): no profile")
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Where a sample's time goes, by the first frame (innermost first) that names a part.
PARTS = [
    ("ledger: SQL (driver, SQLAlchemy)", ("sqlalchemy", "aiosqlite", "asyncpg", "sqlite3")),
    ("webhook channel: POST client (build, write, parse)", ("channels/http_post.py",)),
    ("webhook channel: payload (JSON), signature, retries", ("channels/webhook.py",)),
    ("tracked links (find, store, sign)", ("domain/links.py", "link_tracking.py", "hmac")),
    ("templates (render)", ("jinja2", "domain/templates.py")),
    ("JSON", ("json/",)),
    ("the API answering the bench's status polls", ("api/routers", "starlette/routing")),
    ("sender loop (queue, pacing, settle)", ("messaging/sender.py", "asyncio/queues")),
    ("event loop, callbacks, I/O (uvloop, C)", ("uvloop", "asyncio/", "selectors", "uvicorn")),
]


def summarize_profile(raw: Path) -> None:
    own: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for name, needles in PARTS:
            if any(any(needle in frame for needle in needles) for frame in frames):
                parts[name] += n
                break
        else:
            parts["other"] += n
    if not total:
        print("no profile samples")
        return
    print(
        f"\nwhere the server's time went ({total} samples; each sample counted once, under"
        " the first part listed that appears on its stack)"
    )
    for name, n in parts.most_common():
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("top functions by own time:")
    for frame, n in own.most_common(12):
        print(f"  {100 * n / total:5.1f} %  {frame[:110]}")


def run_campaignd(
    db: str,
    contacts: int,
    sink_url: str,
    tmp: Path,
    counter: Any,
    sink_pid: int,
    profile: bool = False,
    links: bool = True,
) -> dict[str, float]:
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
                "message": MESSAGE,
                "limit": contacts,
                "track_links": links,
            },
        ).json()["id"]
        pid = service.process.pid  # type: ignore[union-attr]
        rss = PeakRss(pid)
        raw = tmp / f"profile-{db}.txt"
        spy = _profile(pid, 600, raw) if profile else None
        process = psutil.Process(pid)
        cpu_before = sum(process.cpu_times()[:2])
        others = [sink_pid, *postgres_pids()]
        others_before = cpu_seconds(others)
        started = time.monotonic()
        timeline = Timeline(counter, contacts)
        client.post(f"/api/campaigns/{campaign}/start").raise_for_status()
        while True:
            view = client.get(f"/api/campaigns/{campaign}").json()
            if view["status"] == "completed" and not view["sending"]:
                break
            # Every 0.2 s while sending (a view counts the ledger: polling must not load the
            # server it measures), every 20 ms once the sink has everything.
            time.sleep(0.02 if timeline.last is not None else 0.2)
        elapsed = time.monotonic() - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        others_cpu = cpu_seconds(others) - others_before
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            spy.wait(30)
            print(f"\ncampaignd on {db}:", end="")
            summarize_profile(raw)
        stored = client.get(f"/api/campaigns/{campaign}/report").json()["links"]
        assert [entry["url"] for entry in stored] == ([LINK] if links else []), stored
        return {
            "sent": view["sent_count"],
            "failed": view["failed_count"],
            "per_second": view["sent_count"] / elapsed,
            "seconds": elapsed,
            "peak_rss_mb": rss.stop(),
            "cpu_us": cpu / max(1, view["sent_count"]) * 1e6,
            "first": timeline.first or 0.0,
            "cores": cpu / elapsed,
            "other_cores": others_cpu / elapsed,
            "last": timeline.last or 0.0,
            "import_per_second": contacts / imported,
        }
    finally:
        service.stop()
        if db == "postgres":
            drop_postgres_database(url)


async def _plain_sender(sink_url: str, contacts: int) -> tuple[float, float]:
    """What the machine does without a ledger: CONCURRENCY workers POST the same bodies."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(contacts):
        queue.put_nowait(i)
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while not queue.empty():
            i = queue.get_nowait()
            body = json.dumps(
                {
                    "campaign_id": 0,
                    "recipient": {"external_id": f"p{i}", "address": f"p{i}@bench.test"},
                    "message": MESSAGE.replace("{{ name }}", f"N{i}"),
                },
                separators=(",", ":"),
            ).encode()
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"0:p{i}"}
            async with session.post(sink_url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    sent += 1

    started = time.monotonic()
    cpu_before = time.process_time()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    assert sent == contacts, (sent, contacts)
    return contacts / elapsed, cpu / contacts * 1e6


def run_plain_sender(sink_url: str, contacts: int) -> tuple[float, float]:
    try:
        import uvloop

        return uvloop.run(_plain_sender(sink_url, contacts))
    except ImportError:
        return asyncio.run(_plain_sender(sink_url, contacts))


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


def plain_run(
    sink_url: str, contacts: int, sink_pid: int, cores: list[tuple[float, float]]
) -> tuple[float, float]:
    """The plain sender, noting the cores it and the sink kept busy."""
    sink_before = cpu_seconds([sink_pid])
    rate, cpu = run_plain_sender(sink_url, contacts)
    elapsed = contacts / rate
    sink_cores = (cpu_seconds([sink_pid]) - sink_before) / elapsed
    cores.append((cpu * contacts / 1e6 / elapsed, sink_cores))
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--peer-contacts", type=int, default=10_000, help="the seed loop is slow")
    parser.add_argument("--profile", action="store_true", help="py-spy the server while it sends")
    parser.add_argument(
        "--no-track-links", action="store_true", help="send the link as it is (no redirect)"
    )
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
        plain: list[float] = []
        plain_cpu: list[float] = []
        plain_cores: list[tuple[float, float]] = []
        for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
            # The plain sender runs right before each campaignd run, so both meet the same
            # machine (other load on it changes over minutes).
            rate, cpu = plain_run(sink_url, args.contacts, sink.pid or 0, plain_cores)
            plain.append(rate)
            plain_cpu.append(cpu)
            results[db] = run_campaignd(
                db,
                args.contacts,
                sink_url,
                tmp,
                counter,
                sink.pid or 0,
                args.profile,
                not args.no_track_links,
            )
        rate, cpu = plain_run(sink_url, args.contacts, sink.pid or 0, plain_cores)
        plain.append(rate)
        plain_cpu.append(cpu)
    finally:
        sink.terminate()

    best = max(plain)
    print(f"\nmessage delivery to a loopback webhook sink, {args.contacts} contacts\n")
    print(f"{'sender':<40}{'deliveries/s':>14}{'x plain':>9}{'x seed':>8}{'peak RSS MB':>13}")
    print(f"{'seed loop (set of ids, 1 by 1)':<40}{peer:>14.0f}{peer / best:>9.2f}{1.0:>8.1f}")
    runs = ", ".join(f"{p:.0f}" for p in plain)
    print(
        f"{'plain asyncio+aiohttp, 64, no ledger':<40}{best:>14.0f}{1.0:>9.2f}"
        f"{best / peer:>8.1f}   (best of {runs})"
    )
    label = " (log)" if args.no_track_links else " (links, log)"
    for db, r in results.items():
        print(
            f"{'campaignd on ' + db + label:<40}{r['per_second']:>14.0f}"
            f"{r['per_second'] / best:>9.2f}{r['per_second'] / peer:>8.1f}{r['peak_rss_mb']:>13.0f}"
        )
    print("target: campaignd >= 0.70x the plain sender on each database")
    # CPU per delivery is steadier than wall time on a shared machine: the same ratio, by cost.
    cheapest = min(plain_cpu)
    fastest = plain.index(best)
    print(
        f"cores busy during the fastest plain run: sender {plain_cores[fastest][0]:.2f},"
        f" sink {plain_cores[fastest][1]:.2f}"
    )
    print(f"CPU per delivery: plain sender {cheapest:.0f} us (least of the runs)", end="")
    for db, r in results.items():
        print(f"; campaignd on {db} {r['cpu_us']:.0f} us ({cheapest / r['cpu_us']:.2f}x)", end="")
    print()
    for db, r in results.items():
        print(
            f"  {db}: sent {r['sent']:.0f}, failed {r['failed']:.0f} in {r['seconds']:.2f} s"
            f" (at the sink: first after {r['first']:.2f} s, last at {r['last']:.2f} s); "
            f"contacts imported at {r['import_per_second']:.0f}/s; cores busy: campaignd"
            f" {r['cores']:.2f}, sink + PostgreSQL {r['other_cores']:.2f}"
        )


if __name__ == "__main__":
    main()
