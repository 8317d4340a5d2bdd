"""API latency while the service is attacked: bad templates, a black-hole target, slow clients.

    .venv/bin/python bench/hardening.py [--phase-seconds 20] [--users 12000] [--slow 2000]
                                        [--db sqlite|postgres]

Starts the real `campaignd serve` and, in its own process, a "black hole" that accepts TCP
connections and never answers. A prober reads `GET /healthz` and `GET /api/campaigns` every
50 ms through the whole run and prints, per phase, p50/p99/max and failures beside the quiet
phase (the peer: the same server unattacked, measured in the same run):

1. quiet: nothing else happens;
2. templates: four clients post templates that used to freeze the loop
   (`{{ 7**10000000 > 1 }}`, `{{ lipsum(n=20000) }}`, nested ranges, `'x'|center(10**9)`);
3. black hole: a traffic campaign with `--users` virtual users against the black hole, then
   stop (the stop's own latency is printed);
4. slow clients: `--slow` connections that send half a request head and `--slow` that send a
   head announcing a body and then trickle it; the count the server closed is printed.

Everything stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.databases import create_postgres_database, drop_postgres_database
from support.net import free_port
from support.service import ServiceProcess

BAD_TEMPLATES = [
    "{{ 7**10000000 > 1 }}",
    "{{ lipsum(n=20000) }}",
    "{% for a in range(3000) %}{% for b in range(3000) %}{% endfor %}{% endfor %}",
    "{{ 'x'|center(10**9) }}",
]


def _black_hole(port: int, ready: multiprocessing.synchronize.Event) -> None:
    """Accept every connection, read what comes, never answer."""

    async def main() -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass
            writer.close()

        server = await asyncio.start_server(hold, "127.0.0.1", port, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Prober(threading.Thread):
    """Reads two cheap routes every 50 ms and files each latency under the current phase."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.phase = "quiet"
        self.latencies: dict[str, list[float]] = {}
        self.failures: Counter[str] = Counter()
        self._done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._done.is_set():
                for path in ("/healthz", "/api/campaigns"):
                    started = time.perf_counter()
                    try:
                        ok = client.get(path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    elapsed = (time.perf_counter() - started) * 1000
                    self.latencies.setdefault(self.phase, []).append(elapsed)
                    if not ok:
                        self.failures[self.phase] += 1
                self._done.wait(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


async def _post_bad_templates(url: str, until: float, answers: Counter[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        i = 0
        while time.monotonic() < until:
            template = BAD_TEMPLATES[i % len(BAD_TEMPLATES)]
            i += 1
            try:
                response = await client.post("/api/campaigns/preview", json={"message": template})
                answers[response.status_code] += 1
            except httpx.HTTPError:
                answers[0] += 1


def templates_phase(url: str, seconds: float) -> str:
    answers: Counter[int] = Counter()
    until = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(*(_post_bad_templates(url, until, answers) for _ in range(4)))

    asyncio.run(main())
    return f"template answers by status: {dict(answers)}"


def black_hole_phase(client: httpx.Client, port: int, users: int, seconds: float) -> str:
    profile = client.post(
        "/api/traffic/profiles", json={"name": "hole", "requests": [{"path": "/"}]}
    ).json()["id"]
    created = client.post(
        "/api/traffic/campaigns",
        json={
            "name": "black hole",
            "target_url": f"http://127.0.0.1:{port}",
            "user_profile_ids": [profile],
            "requests_per_minute": 600_000,
            "duration_minutes": 60,
            "total_users": users,
            "request_timeout_seconds": 30,
        },
    )
    campaign = created.json()["id"]
    client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "running"})
    generate = client.post("/api/traffic/generate", json={"campaign_id": campaign})
    if generate.status_code != 200:
        return f"generate answered {generate.status_code}: {generate.text[:300]}"
    time.sleep(seconds)
    started = time.perf_counter()
    stop = client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
    stop_ms = (time.perf_counter() - started) * 1000
    stats = client.get(f"/api/traffic/campaigns/{campaign}/info").json()["stats"]
    return (
        f"stop answered {stop.status_code} in {stop_ms:.0f} ms; requests_total "
        f"{stats['requests_total']}, dropped {stats['requests_dropped']}, "
        f"errors {stats['errors']}"
    )


def slow_clients_phase(port: int, count: int, seconds: float) -> str:
    sockets: list[socket.socket] = []
    refused = 0
    for i in range(2 * count):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
            if i % 2 == 0:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            else:
                sock.sendall(
                    b"POST /api/audiences HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
                )
        except OSError:
            refused += 1
            sock.close()
            continue
        sock.setblocking(False)
        sockets.append(sock)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(b" ")  # a byte a second: a slow client, not an idle one
        time.sleep(1)
    answers: Counter[str] = Counter()
    for sock in sockets:
        try:
            head = sock.recv(65536)
            answers[head.split(b"\r\n", 1)[0].decode() if head else "closed"] += 1
        except BlockingIOError:
            answers["still open"] += 1
        except OSError:
            answers["reset"] += 1
        sock.close()
    return (
        f"{2 * count} slow connections: {refused} refused at connect; after {seconds:.0f} s: "
        f"{dict(answers)}"
    )


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="campaignd-hardening-"))
    db_url = f"sqlite:///{tmp / 'bench.db'}" if args.db == "sqlite" else create_postgres_database()
    hole_port = free_port()
    ready = multiprocessing.Event()
    hole = multiprocessing.Process(target=_black_hole, args=(hole_port, ready), daemon=True)
    hole.start()
    ready.wait(10)
    service = ServiceProcess(db_url, tmp / "service.log").start()
    prober = Prober(service.url)
    notes: dict[str, str] = {}
    try:
        client = httpx.Client(base_url=service.url, timeout=30)
        prober.start()
        time.sleep(args.phase_seconds)
        prober.phase = "templates"
        notes["templates"] = templates_phase(service.url, args.phase_seconds)
        prober.phase = "black hole"
        notes["black hole"] = black_hole_phase(client, hole_port, args.users, args.phase_seconds)
        prober.phase = "slow clients"
        notes["slow clients"] = slow_clients_phase(service.port, args.slow, args.phase_seconds)
        prober.phase = "after"
        time.sleep(3)
    finally:
        prober.stop()
        service.stop()
        hole.terminate()
        hole.join(5)
        if args.db == "postgres":
            drop_postgres_database(db_url)
    print(f"API latency while attacked ({args.db}; /healthz and /api/campaigns every 50 ms)")
    print(f"{'phase':<14}{'probes':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'failed':>8}")
    for phase, values in prober.latencies.items():
        print(
            f"{phase:<14}{len(values):>8}{_percentile(values, 50):>10.1f}"
            f"{_percentile(values, 99):>10.1f}{max(values):>10.1f}{prober.failures[phase]:>8}"
        )
    for phase, note in notes.items():
        print(f"{phase}: {note}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=12_000)
    parser.add_argument("--slow", type=int, default=2_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
