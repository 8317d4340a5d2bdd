"""The cluster with real processes: `serve --no-engine` and `worker`s on one PostgreSQL.

Every assertion is made at the far end: what the target or the webhook sink received, what
each node's log channel file holds, what the database says through the API.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.messaging_flow import delivered, make_account, make_audience, make_campaign
from support.service import CAMPAIGND, ServiceProcess
from support.target import CountingTarget
from support.traffic_flow import info, make_profile
from support.traffic_flow import make_campaign as make_traffic_campaign
from support.traffic_flow import start as start_traffic

pytestmark = pytest.mark.slow

# The kill -9 tests wait for a dead node's leases to expire: 6 s instead of the default 15 s
# (a live node renews every second and trusts a lease for 4.8 s of it).
LEASE_SECONDS = 6.0
SHORT_LEASE = {"CAMPAIGND_LEASE_SECONDS": str(LEASE_SECONDS)}


def wait_until(predicate: Any, timeout: float, what: str = "condition") -> float:
    """Poll until `predicate()` holds; return when it did (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def holders(client: httpx.Client, kind: str, campaign: int) -> dict[int, str]:
    """shard -> node name, from GET /api/nodes."""
    out = {}
    for node in client.get("/api/nodes").json():
        for held in node["holding"]:
            if held["kind"] == kind and held["campaign_id"] == campaign:
                out[held["shard"]] = node["name"]
    return out


def stats_of(client: httpx.Client, campaign: int) -> dict[str, Any]:
    return dict(info(client, campaign)["stats"])


def start_cluster(
    factory: Any, url: str, workers: int, **env: str
) -> tuple[ServiceProcess, dict[str, ServiceProcess]]:
    """The API first (it migrates the database), then every worker at once."""
    api = factory(url, args=("--no-engine",), name="api", **env)
    nodes = {
        f"w{i}": factory(url, command="worker", name=f"w{i}", ready=False, **env)
        for i in range(workers)
    }
    for node in nodes.values():
        node.wait_ready()
    with api.client() as client:
        wait_until(
            lambda: (
                sum(n["alive"] and n["engine"] for n in client.get("/api/nodes").json()) == workers
            ),
            20,
            "every worker alive",
        )
    return api, nodes


def test_worker_refuses_sqlite(tmp_path: Path) -> None:
    result = subprocess.run(
        [CAMPAIGND, "worker", "--database-url", f"sqlite:///{tmp_path / 'c.db'}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "PostgreSQL" in result.stderr


def test_a_second_engine_on_one_sqlite_file_is_refused(service_factory, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    service_factory(url)
    second = subprocess.run(
        [CAMPAIGND, "serve", "--port", "1"],
        env={"CAMPAIGND_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert "one engine" in second.stderr and "PostgreSQL" in second.stderr
    api_only: ServiceProcess = service_factory(url, args=("--no-engine",))
    with api_only.client() as client:  # an API without an engine may share the file
        assert client.get("/api/nodes").status_code == 200


def test_two_plain_serves_on_one_database_never_double_send(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    """The reported bug: a second `serve` started mid-campaign sent 655 messages for 400."""
    target.delay_for["/hook"] = 0.05
    first: ServiceProcess = service_factory(postgres_url)
    with first.client() as client:
        campaign = make_campaign(
            client,
            make_account(client, target),
            make_audience(client, 400),
            limit=400,
            rate_per_minute=3000,
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: target.total >= 50, 20, "sending under way")
    second: ServiceProcess = service_factory(postgres_url)
    with second.client() as client:
        wait_until(
            lambda: client.get(f"/api/campaigns/{campaign}").json()["status"] == "completed",
            40,
            "completed",
        )
    per_recipient = Counter(d["recipient"]["external_id"] for d in delivered(target))
    assert len(per_recipient) == 400
    assert max(per_recipient.values()) == 1, "nobody twice"


def test_kill_9_a_worker_during_a_sharded_traffic_campaign(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    api, workers = start_cluster(service_factory, postgres_url, 3, **SHORT_LEASE)
    rate = 1200  # per minute: 20/s over 3 shards
    with api.client() as client:
        campaign = make_traffic_campaign(
            client,
            target.url,
            make_profile(client),
            requests_per_minute=rate,
            duration_minutes=5,
            total_users=30,
            shards=3,
        )
        start_traffic(client, campaign)
        wait_until(lambda: len(holders(client, "traffic", campaign)) == 3, 15, "3 shards held")
        placed = holders(client, "traffic", campaign)
        assert len(set(placed.values())) == 3, f"one shard per node: {placed}"
        info = client.get(f"/api/traffic/campaigns/{campaign}/info").json()
        assert sorted(n["shard"] for n in info["nodes"]) == [0, 1, 2]
        time.sleep(2.0)  # let every shard send for a while before the kill
        victim = placed[1]
        workers[victim].kill()
        killed_at = time.monotonic()
        back = wait_until(
            lambda: (
                len(holders(client, "traffic", campaign)) == 3
                and victim not in holders(client, "traffic", campaign).values()
            ),
            LEASE_SECONDS + 10,
            "the dead node's shard taken over",
        )
        # Its lease expires LEASE_SECONDS after its last renewal; the next look claims it.
        assert back - killed_at < LEASE_SECONDS + 6, "taken over within a tick of the expiry"
        time.sleep(1.5)  # the new runner's first second
        window_start = time.monotonic()
        time.sleep(3.0)
        measured = target.count_between(window_start, time.monotonic()) / (
            time.monotonic() - window_start
        )
        assert abs(measured - rate / 60) <= 0.1 * rate / 60, f"{measured:.1f}/s after takeover"
        assert time.monotonic() - killed_at < LEASE_SECONDS + 15
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
        sent = target.total
        time.sleep(1.0)
        assert target.total == sent, "nothing after the stop"
        stats = client.get(f"/api/traffic/campaigns/{campaign}/info").json()["stats"]
    # The killed node's last unwritten windows (at most ~1.5 s of its shard) are lost; every
    # other request is counted once, from every shard's merged windows.
    lost_at_most = math.ceil(1.6 * rate / 60 / 3) + 2
    assert sent - lost_at_most <= stats["requests_total"] <= sent
    assert stats["latency_ms"]["p99"] <= stats["latency_ms"]["max"]


def test_kill_9_a_worker_during_a_sharded_message_campaign(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    target.delay_for["/hook"] = 0.05
    api, workers = start_cluster(service_factory, postgres_url, 3, **SHORT_LEASE)
    rate = 1200  # per minute, for the whole cluster
    with api.client() as client:
        campaign = make_campaign(
            client,
            make_account(client, target),
            make_audience(client, 240),
            limit=240,
            rate_per_minute=rate,
            shards=3,
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: len(holders(client, "message", campaign)) == 3, 15, "3 shards held")
        wait_until(lambda: target.total >= 40, 20, "sending under way")
        victim = holders(client, "message", campaign)[0]
        workers[victim].kill()
        killed_at = time.monotonic()
        wait_until(
            lambda: client.get(f"/api/campaigns/{campaign}").json()["status"] == "completed",
            45,
            "completed",
        )
    received = delivered(target)
    per_recipient = Counter(d["recipient"]["external_id"] for d in received)
    assert len(per_recipient) == 240, "everyone messaged"
    for d in received:
        assert d["key"] == f"{campaign}:{d['recipient']['external_id']}"
    first_seen: dict[str, float] = {}
    for (_, body, _), at in zip(target.bodies, target.times, strict=False):
        first_seen.setdefault(json.loads(body)["recipient"]["external_id"], at)
    repeated = [r for r, n in per_recipient.items() if n > 1]
    # Only the dead node's in-flight sends repeat: each one had reached the sink by the kill.
    assert all(first_seen[r] <= killed_at + 0.5 for r in repeated), repeated
    assert max(per_recipient.values()) <= 2
    per_second = Counter(int(t - target.times[0]) for t in target.times)
    busiest = max(per_second.values())
    assert busiest <= 1.2 * rate / 60, f"{busiest} in one second (asked {rate / 60}/s)"


def test_sigterm_hands_a_shard_over_within_two_seconds(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    api, workers = start_cluster(service_factory, postgres_url, 2)
    with api.client() as client:
        campaign = make_traffic_campaign(
            client, target.url, make_profile(client), duration_minutes=5, total_users=10
        )
        start_traffic(client, campaign)
        wait_until(lambda: len(holders(client, "traffic", campaign)) == 1, 15, "held")
        holder = holders(client, "traffic", campaign)[0]
        time.sleep(1.0)
        workers[holder].send(signal.SIGTERM)
        sent_at = time.monotonic()
        taken = wait_until(
            lambda: holders(client, "traffic", campaign).get(0) not in (None, holder),
            10,
            "handed over",
        )
        assert taken - sent_at < 2.0, f"handed over in {taken - sent_at:.2f} s"
        assert workers[holder].process is not None
        assert workers[holder].process.wait(timeout=15) == 0
        before = target.total
        wait_until(lambda: target.total > before + 10, 5, "generation goes on")
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})


def test_a_paused_node_loses_its_lease_and_sends_nothing_for_the_old_epoch(
    service_factory, postgres_url: str, tmp_path: Path
) -> None:
    dirs = {name: tmp_path / name for name in ("api", "w0", "w1")}
    for path in dirs.values():
        path.mkdir()
    api = service_factory(
        postgres_url,
        args=("--no-engine",),
        name="api",
        CAMPAIGND_LOG_CHANNEL_DIR=str(dirs["api"]),
        CAMPAIGND_LEASE_SECONDS="5",
    )
    workers = {
        name: service_factory(
            postgres_url,
            command="worker",
            name=name,
            ready=False,
            CAMPAIGND_LOG_CHANNEL_DIR=str(dirs[name]),
            CAMPAIGND_LEASE_SECONDS="5",
        )
        for name in ("w0", "w1")
    }
    for worker in workers.values():
        worker.wait_ready()

    def lines(name: str) -> list[dict[str, Any]]:
        path = dirs[name] / "out.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    with api.client() as client:
        account = client.post(
            "/api/accounts",
            json={"name": "log", "channel": "log", "config": {"path": "out.jsonl"}},
        ).json()["id"]
        campaign = make_campaign(
            client, account, make_audience(client, 150), limit=150, rate_per_minute=1200
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: len(holders(client, "message", campaign)) == 1, 15, "held")
        paused = holders(client, "message", campaign)[0]
        other = "w1" if paused == "w0" else "w0"
        wait_until(lambda: len(lines(paused)) >= 20, 15, "sending under way")
        workers[paused].send(signal.SIGSTOP)
        wait_until(lambda: holders(client, "message", campaign).get(0) == other, 20, "taken over")
        wait_until(lambda: len(lines(other)) >= 10, 15, "the new holder sends")
        at_cont = len(lines(paused))
        workers[paused].send(signal.SIGCONT)
        wait_until(
            lambda: client.get(f"/api/campaigns/{campaign}").json()["status"] == "completed",
            40,
            "completed",
        )
        time.sleep(1.0)
    assert len(lines(paused)) == at_cont, "nothing sent for the lost epoch after SIGCONT"
    assert '"node.lease_lost"' in workers[paused].log
    ids = Counter(x["external_id"] for x in lines(paused) + lines(other))
    assert len(ids) == 150, "everyone messaged"
    # A send written but not yet settled when the node froze is in doubt for the new holder
    # and goes again with the same key; nothing else repeats.
    before_pause = {x["external_id"] for x in lines(paused)}
    repeated = {r for r, n in ids.items() if n > 1}
    assert repeated <= before_pause and max(ids.values()) <= 2
    assert len(repeated) <= 20
    for x in lines(paused) + lines(other):
        assert x["idempotency_key"] == f"{campaign}:{x['external_id']}"


def test_a_joining_node_takes_a_shard_and_the_rate_holds(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    api, workers = start_cluster(service_factory, postgres_url, 1)
    rate = 1200  # per minute: 20/s over 2 shards
    with api.client() as client:
        campaign = make_traffic_campaign(
            client,
            target.url,
            make_profile(client),
            requests_per_minute=rate,
            duration_minutes=5,
            total_users=20,
            shards=2,
        )
        start_traffic(client, campaign)
        wait_until(lambda: holders(client, "traffic", campaign) == {0: "w0", 1: "w0"}, 15, "w0")
        workers["w1"] = service_factory(postgres_url, command="worker", name="w1")
        joined = time.monotonic()
        spread = wait_until(
            lambda: set(holders(client, "traffic", campaign).values()) == {"w0", "w1"},
            30,
            "one shard handed to the node that joined",
        )
        assert spread - joined < 25
        time.sleep(1.5)  # the moved shard's first second
        window_start = time.monotonic()
        time.sleep(3.0)
        measured = target.count_between(window_start, time.monotonic()) / (
            time.monotonic() - window_start
        )
        assert abs(measured - rate / 60) <= 0.1 * rate / 60, f"{measured:.1f}/s after the join"

        # The gauge adds up both shards' latest windows (each had a request in flight).
        wait_until(lambda: stats_of(client, campaign)["busy_users"] >= 2, 10, "both shards busy")
        client.put(f"/api/traffic/campaigns/{campaign}/status", json={"status": "stopped"})
        wait_until(
            lambda: stats_of(client, campaign)["requests_total"] == target.total,
            10,
            "every request the target counted is in the merged stats (a hand-over loses none)",
        )


def test_a_lowered_limit_holds_for_every_shard_together(
    service_factory, postgres_url: str, target: CountingTarget
) -> None:
    api, _ = start_cluster(service_factory, postgres_url, 2)
    with api.client() as client:
        campaign = make_campaign(
            client,
            make_account(client, target),
            make_audience(client, 400),
            limit=400,
            rate_per_minute=1800,
            shards=2,
        )
        client.post(f"/api/campaigns/{campaign}/start")
        wait_until(lambda: len(holders(client, "message", campaign)) == 2, 15, "2 shards held")
        wait_until(lambda: target.total >= 40, 20, "sending under way")
        edited = client.patch(f"/api/campaigns/{campaign}", json={"limit": 100})
        assert edited.status_code == 200, edited.text
        assert target.total < 90, "the edit lands well before the new limit"
        wait_until(
            lambda: client.get(f"/api/campaigns/{campaign}").json()["status"] == "completed",
            30,
            "completed at the lowered limit",
        )
        view = client.get(f"/api/campaigns/{campaign}").json()
    per_recipient = Counter(d["recipient"]["external_id"] for d in delivered(target))
    assert len(per_recipient) == 100 and max(per_recipient.values()) == 1
    assert view["sent_count"] == 100 and view["sending_count"] == 0


@pytest.mark.postgres
def test_a_worker_can_leave_the_cpu_to_the_api(service_factory, postgres_url: str) -> None:
    """`worker --nice N` (or CAMPAIGND_WORKER_NICE) raises the worker's nice value by N."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    by_option: ServiceProcess = service_factory(
        postgres_url, command="worker", args=("--nice", "5"), ready=False
    )
    by_env: ServiceProcess = service_factory(
        postgres_url, command="worker", CAMPAIGND_WORKER_NICE="3", ready=False
    )
    plain: ServiceProcess = service_factory(postgres_url, command="worker", ready=False)
    for worker in (by_option, by_env, plain):
        worker.wait_ready()
    assert by_option.process is not None and by_env.process is not None
    assert plain.process is not None
    assert os.getpriority(os.PRIO_PROCESS, by_option.process.pid) == min(19, base + 5)
    assert os.getpriority(os.PRIO_PROCESS, by_env.process.pid) == min(19, base + 3)
    assert os.getpriority(os.PRIO_PROCESS, plain.process.pid) == base
