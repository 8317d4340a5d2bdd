"""The delivery log's CSV export streams in flat memory: the real server's RSS at 1,000,000 rows.

    .venv/bin/python bench/delivery_export.py [--rows 1000000]

A real `campaignd serve` on SQLite gets one campaign whose ledger holds --rows deliveries
(written straight into the database file while the server is down, as a finished campaign
would leave them). Then `GET /api/campaigns/{id}/deliveries?format=csv` is streamed twice
(a tenth of the rows through `?q=`, then all of them) while the server's RSS is sampled
every 50 ms. Flat memory: the peak while streaming everything is about the peak for a tenth.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.service import ServiceProcess

CHUNK = 50_000


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start_rss = self.process.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.start_rss / 2**20, self.peak / 2**20


def seed(path: Path, audience: int, campaign: int, rows: int) -> None:
    db = sqlite3.connect(path)
    now = "2026-01-01 00:00:00.000000"
    with db:
        for first in range(1, rows + 1, CHUNK):
            ids = range(first, min(rows, first + CHUNK - 1) + 1)
            db.executemany(
                "INSERT INTO contacts (id, audience_id, external_id, address, attributes,"
                " created_at) VALUES (?, ?, ?, ?, '{}', ?)",
                [(i, audience, f"user-{i}", f"user-{i}@bench.test", now) for i in ids],
            )
            db.executemany(
                "INSERT INTO deliveries (campaign_id, contact_id, state, attempts, variant,"
                " claimed_at, finished_at, last_error) VALUES (?, ?, ?, 1, NULL, ?, ?, ?)",
                [
                    (
                        campaign,
                        i,
                        "failed" if i % 50 == 0 else "sent",
                        now,
                        now,
                        "HTTP 500 after 1 attempt(s)" if i % 50 == 0 else None,
                    )
                    for i in ids
                ],
            )
    db.close()


def stream(client: httpx.Client, path: str, params: dict[str, str], pid: int) -> dict[str, float]:
    sampler = RssSampler(pid)
    started = time.monotonic()
    lines = 0
    size = 0
    with client.stream("GET", path, params={"format": "csv", **params}) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.monotonic() - started
    start_mb, peak_mb = sampler.stop()
    return {
        "rows": lines - 1,
        "seconds": seconds,
        "rows_per_second": (lines - 1) / seconds,
        "mb": size / 2**20,
        "rss_start_mb": start_mb,
        "rss_peak_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="campaignd-export-"))
    path = tmp / "export.db"
    service = ServiceProcess(
        f"sqlite:///{path}", tmp / "service.log", CAMPAIGND_LOG_LEVEL="WARNING"
    )
    service.start()
    with service.client() as client:
        account = client.post(
            "/api/accounts", json={"name": "l", "channel": "log", "config": {"path": "x.log"}}
        ).json()["id"]
        audience = client.post("/api/audiences", json={"name": "bench"}).json()["id"]
        campaign = client.post(
            "/api/campaigns",
            json={
                "name": "export",
                "account_id": account,
                "audience_id": audience,
                "message": "m",
                "limit": args.rows,
            },
        ).json()["id"]
    service.stop()
    started = time.monotonic()
    seed(path, audience, campaign, args.rows)
    print(f"seeded {args.rows:,} deliveries in {time.monotonic() - started:.1f} s")
    service.start()
    try:
        with httpx.Client(base_url=service.url, timeout=600) as client:
            route = f"/api/campaigns/{campaign}/deliveries"
            pid = service.process.pid  # type: ignore[union-attr]
            tenth = stream(client, route, {"q": "user-1"}, pid)  # user-1, user-1x, ...: ~11 %
            everything = stream(client, route, {}, pid)
    finally:
        service.stop()
    print("\nstreamed CSV export of the delivery log, real server on SQLite\n")
    print(
        f"{'export':<22}{'rows':>11}{'s':>8}{'rows/s':>10}{'MB sent':>9}"
        f"{'RSS before':>12}{'RSS peak':>10}"
    )
    for name, r in (("q=user-1 (~1/9)", tenth), ("all rows", everything)):
        print(
            f"{name:<22}{r['rows']:>11,.0f}{r['seconds']:>8.1f}{r['rows_per_second']:>10,.0f}"
            f"{r['mb']:>9.0f}{r['rss_start_mb']:>12.0f}{r['rss_peak_mb']:>10.0f}"
        )
    growth = everything["rss_peak_mb"] - everything["rss_start_mb"]
    print(
        f"\nRSS growth while streaming {everything['rows']:,.0f} rows "
        f"({everything['mb']:.0f} MB of CSV): {growth:.1f} MB"
    )


if __name__ == "__main__":
    main()
